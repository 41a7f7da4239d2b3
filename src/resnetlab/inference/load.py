"""Trained models for use: from a resnetlab checkpoint alone, or a foreign one with --model/--weights."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from resnetlab.data import Normalization
from resnetlab.data.preprocess import Preprocess
from resnetlab.errors import UserError
from resnetlab.models import create_model, hub, pretrained, weights_fetch
from resnetlab.models.safetensors_files import FORMAT as SAFETENSORS_FORMAT
from resnetlab.models.safetensors_files import is_model_folder, looks_like_safetensors
from resnetlab.models.weight_files import read_checkpoint
from resnetlab.models.weights import check_finite
from resnetlab.models.registry import STYLE_AMBIGUOUS, model_input
from resnetlab.runtime.checkpoint import load_checkpoint, with_averaged


@dataclass
class LoadedModel:
    model: nn.Module
    name: str
    classes: list[str] | None
    normalization: Normalization
    input: dict  # {"size": crop, "resize": shorter side before the crop}
    checkpoint: dict | None = None
    source: Path | None = None  # the file the weights were read from
    averaged: str | None = None  # the run's averager whose weights these are ("ema"), None: the trained weights

    def transforms(self) -> Preprocess:
        """image (path, PIL, tensor) -> this model's normalized input, as torchvision's weights.transforms()."""
        return Preprocess(self.input["size"], self.input["resize"], self.normalization)


def _from_checkpoint(checkpoint: str, style: str | None) -> LoadedModel:
    """A resnetlab checkpoint (or self-describing safetensors file or folder): network, classes, input, averages."""
    ckpt = load_checkpoint(checkpoint)
    net, normalization = _checked_contents(ckpt, checkpoint)
    trained_style = ckpt["model_options"].get("style", "paper")
    if style and style != trained_style:
        raise UserError(f"{checkpoint} was trained as style {trained_style!r}; --style {style} would compute "
                        "something else (drop it)")
    averaged = _load_averaged(net, ckpt, checkpoint)
    return LoadedModel(net.eval(), ckpt["model_name"], ckpt["classes"], normalization, ckpt["input"], ckpt,
                       Path(checkpoint), averaged)


def load_model(checkpoint: str | None = None, model: str | None = None, weights: str | None = None,
               num_classes: int | None = None, weights_dir: str | None = None, style: str | None = None) -> LoadedModel:
    """Either --checkpoint (a resnetlab run's last.pt/best.pt), or --model with --weights: a file, or the
    name of published weights (`resnetlab models --weights`), which carry their class names. A safetensors file
    or model folder (a path, or hf-hub:ORG/NAME) that records its network is read as a checkpoint is."""
    checkpoint, weights = hub.local(checkpoint), hub.local(weights)
    if weights and not checkpoint and (recorded := self_described(weights)) and model in (None, recorded):
        return load_model(str(weights), style=style)
    if checkpoint:
        if model or weights:
            raise UserError("give either --checkpoint, or --model with --weights, not both")
        return _from_checkpoint(checkpoint, style)
    if not (model and weights):
        raise UserError("give --checkpoint RUN/best.pt, or --model NAME with --weights FILE (a safetensors file or "
                        "model folder that records its network needs no --model)")
    size = model_input(model)
    # A published name (akamaster, torchvision) means those weights even where a file or folder in the working
    # directory bears the name; such a file is loaded as ./NAME. Other words that are not files are looked up.
    if pretrained.names_published_weights(weights):
        w = pretrained.lookup(model, weights)
        if w.bundled:  # resnetlab's own weights: a checkpoint carrying its classes, input and normalization
            return load_model(str(weights_fetch.fetch(w)), style=style)
        net = create_model(model, weights=weights, weights_dir=weights_dir, **({"style": style} if style else {}))
        return LoadedModel(net.eval(), model, list(w.classes), w.input_normalization(), dict(w.input),
                           source=weights_fetch.local_file(w, weights_dir))
    if not (Path(weights).is_file() or is_model_folder(Path(weights))):
        raise UserError(f"--weights {weights}: no such file or model folder")
    known = pretrained.identify(weights)
    if known is not None and known.model != model:
        known = None  # another network's file (a ResNet's into the plain net of its depth): warned about below
    if known is not None and known.bundled:  # resnetlab's own file: a checkpoint, read as the name branch reads it
        return load_model(str(weights), style=style)
    options: dict = {}
    if known is not None:
        if style and style != known.options.get("style", "paper"):
            raise UserError(f"--weights {weights} is {known.model}'s {known.name} weights, trained as style "
                            f"{known.options.get('style', 'paper')!r}: --style {style} would compute something else")
        options = dict(known.options)
    elif style:
        options["style"] = style
    elif model in STYLE_AMBIGUOUS:
        raise UserError(f"--weights {weights}: {model}'s two styles (paper: stride on the first 1x1 conv; torchvision "
                        "v1.5: on the 3x3) have the same tensors, so the file cannot say which it was trained as; "
                        "give --style paper or --style torchvision")
    net = create_model(model, weights=Path(weights), **options)  # its style and classes as the file says
    if num_classes and net.fc.out_features != num_classes:
        raise UserError(f"--weights {weights} has a {net.fc.out_features}-way classifier, the data {num_classes} "
                        "classes: evaluate it on data of its own classes, or fine-tune it first (train --weights)")
    if known is not None:
        return LoadedModel(net.eval(), model, list(known.classes), known.input_normalization(), dict(known.input),
                           source=Path(weights))
    # Foreign CIFAR and ImageNet weights (akamaster's, torchvision's) expect ImageNet's mean/std.
    return LoadedModel(net.eval(), model, None, Normalization.imagenet(), size, source=Path(weights))


def self_described(weights: str | Path) -> str | None:
    """The network a safetensors file or model folder records (resnetlab's, or a timm folder's config.json);
    None for anything else (those load as --model says)."""
    path = Path(weights)
    if not (is_model_folder(path) or (path.is_file() and looks_like_safetensors(path))):
        return None
    contents = read_checkpoint(path)
    return contents.get("model_name") if contents.get("format") == SAFETENSORS_FORMAT else None


def _load_averaged(net: nn.Module, ckpt: dict, path: str) -> str | None:
    """A run's averaged weights (--model-ema) in place of its trained ones, where it has them: they are what the
    run was trained to produce (torchvision's references evaluate and ship the EMA alike); returns its name."""
    averaged = ckpt.get("averaged")
    if not averaged:
        return None
    if not isinstance(averaged, dict) or not all(isinstance(v, dict) for v in averaged.values()):
        raise UserError(f"{path} is damaged or not a resnetlab checkpoint: its averaged entry is not state dicts")
    name, state = next(iter(averaged.items()))
    check_finite(state, path)
    try:
        net.load_state_dict(with_averaged(net.state_dict(), state))
    except (RuntimeError, TypeError, AttributeError):
        raise UserError(f"{path} is damaged or not a resnetlab checkpoint: its averaged weights do not fit "
                        f"{ckpt['model_name']}") from None
    return name


def _checked_contents(ckpt: dict, path: str) -> tuple[nn.Module, Normalization]:
    """The network and normalization a checkpoint describes, every entry checked: a damaged-but-readable file
    (hand-edited, truncated keys, another version) is one line naming the file and the entry, not a crash."""
    def damaged(what: str) -> UserError:
        return UserError(f"{path} is damaged or not a resnetlab checkpoint: {what}")

    name, options = ckpt["model_name"], ckpt["model_options"]
    if not isinstance(name, str) or not isinstance(options, dict):
        raise damaged("its model_name or model_options entry has the wrong type")
    try:
        net = create_model(name, **options)
    except (TypeError, ValueError, UserError) as e:
        raise damaged(f"it describes no buildable network ({str(e).splitlines()[0]})") from None
    if not isinstance(ckpt["model"], dict):
        raise damaged("its model entry is not a state dict")
    check_finite(ckpt["model"], path)
    try:
        net.load_state_dict(ckpt["model"])
    except (RuntimeError, TypeError, AttributeError) as e:
        first = str(e).splitlines()
        raise damaged(f"its weights do not fit {name} ({first[1].strip() if len(first) > 1 else first[0]})") from None
    outputs = net.fc.out_features if hasattr(net.fc, "out_features") else None
    classes = ckpt["classes"]
    if classes is not None and (not isinstance(classes, list) or not all(isinstance(c, str) for c in classes)
                                or (outputs is not None and len(classes) != outputs)):
        raise damaged(f"its classes entry is not {outputs} class names")
    size = ckpt["input"]
    if not (isinstance(size, dict) and all(isinstance(size.get(k), int) and 0 < size[k] <= 4096 for k in ("size", "resize"))
            and size["resize"] >= size["size"]):
        raise damaged("its input entry is not {'size': crop, 'resize': side >= crop}")
    norm = ckpt["normalization"]
    try:
        normalization = Normalization.from_dict(norm)
        ok = (isinstance(normalization.kind, str) and normalization.mean.dim() == 3 and normalization.std.dim() == 3
              and normalization.mean.shape[0] == 3 and bool((normalization.std > 0).all())
              and bool(torch.isfinite(normalization.mean).all())
              # a per-pixel mean is of the input's own size (a 24x24 mean for 32x32 images fails at predict)
              and tuple(normalization.mean.shape[1:]) in ((1, 1), (size["size"], size["size"])))
    except (KeyError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise damaged("its normalization entry is not a kind with a (3, H, W) mean of the input's size and a "
                      "positive std")
    return net, normalization

