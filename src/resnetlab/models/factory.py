"""`create_model(name, weights=..., num_classes=K)` and `list_models()`: the networks of models/registry.py with
the named weights of models/pretrained.py loaded into them."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resnetlab.errors import UserError
from resnetlab.models import hub, weights_fetch
from resnetlab.models import pretrained as published  # not `pretrained`: create_model's flag of that name
from resnetlab.models.safetensors_files import is_model_folder
from resnetlab.models.registry import build, check_options, is_cifar, model_names
from resnetlab.models.resnet import ResNet
from resnetlab.models.weight_files import extract_state_dict, read_checkpoint
from resnetlab.models.weights import load_weights, style_of


def create_model(name: str, weights: str | Path | None = None, weights_dir: str | None = None,
                 pretrained: bool = False, **options: Any) -> ResNet:
    """Build a network by name; options: num_classes, shortcut, style, zero_init_residual. `weights` names
    published weights (models/pretrained.py: "akamaster" for the CIFAR ResNets, "torchvision" for
    ResNet-18..152), loaded and checked by sha256, or is a weights file (a path: torchvision's, timm's,
    akamaster's, a resnetlab checkpoint). `pretrained=True` is weights="DEFAULT" (the network's best published
    weights), as timm's create_model takes it. With num_classes other than the weights', the classifier is new."""
    check_options(name, options)
    if not isinstance(pretrained, bool):
        raise TypeError(f"create_model: pretrained must be True or False, not {pretrained!r}")
    if pretrained:
        if weights not in (None, "DEFAULT"):
            raise TypeError(f"create_model: pretrained=True loads the default weights; weights={weights!r} names "
                            "others: give one of the two")
        if (name, published.resolve_name(name, "DEFAULT")) not in published.REGISTRY:
            raise UserError(f"{name} has no default published weights for pretrained=True to load; `resnetlab "
                            "models --weights` lists the networks that have")
        weights = "DEFAULT"
    weights = hub.local(weights)  # hf-hub:ORG/NAME -> its model folder in the Hub's cache
    if isinstance(weights, Path) or (isinstance(weights, str) and not published.names_published_weights(weights)):
        return from_file(name, Path(weights), options)
    if weights is not None:
        w = published.lookup(name, weights)
        weights = w.name
        contradicting = sorted(k for k, v in options.items() if k in w.options and w.options[k] != v)
        if contradicting:
            key = contradicting[0]
            raise UserError(f"{name} weights {weights!r} were trained with {key}={w.options[key]!r}; "
                            f"{key}={options[key]!r} would build another network (drop the option)")
        classes = options.pop("num_classes", len(w.classes))
        model = create_model(name, **{**w.options, "num_classes": len(w.classes), **options})
        load_weights(model, weights_fetch.fetch(w, weights_dir))
        if w.normalization == "checkpoint":
            warn_on_foreign_input(model, w)
        return _with_classes(name, model, classes, w.name)
    return build(name, **options)


def from_file(name: str, path: Path, options: dict[str, Any]) -> ResNet:
    """`name` built as the weights file says where it can (its recorded options, its style from its record or
    for ResNet-18/34 its keys, its classes from its classifier), loaded strictly; options given win."""
    if not (path.is_file() or is_model_folder(path)):
        raise UserError(f"weights {path}: no such file" + ("" if path.exists() else
                        " (named weights: `resnetlab models --weights`)"))
    obj = read_checkpoint(path)
    recorded = obj.get("model_options") if isinstance(obj.get("model_options"), dict) else {}
    built = {k: v for k, v in recorded.items() if k in ("shortcut", "style", "zero_init_residual")}
    if is_cifar(name):
        built.pop("style", None)  # the CIFAR nets have one style
    built.update({k: v for k, v in options.items() if k != "num_classes"})
    if "style" not in built and not is_cifar(name):
        style = style_of(name, obj, path)
        if style is not None:
            built["style"] = style
    classifier = extract_state_dict(obj).get("fc.weight")
    classes = int(classifier.shape[0]) if classifier is not None and classifier.dim() == 2 else None
    model = build(name, **built, **({"num_classes": classes} if classes else {}))
    load_weights(model, path, style=built.get("style"), contents=obj)
    return _with_classes(name, model, options.get("num_classes", classes), str(path))


def _with_classes(name: str, model: ResNet, classes: int | None, source: str) -> ResNet:
    """timm's create_model(name, pretrained=True, num_classes=K): the backbone, a new classifier where K differs."""
    have = model.fc.out_features
    if classes is not None and classes != have:
        model.fc = nn.Linear(model.fc.in_features, classes)
        logging.getLogger("resnetlab").warning(
            "%s: %s's backbone with a new %d-way classifier (the weights have %d classes); train it before use",
            name, source, classes, have)
    return model


def list_models(pattern: str = "*", weights: bool = False) -> list[str]:
    """The registered names matching the shell-style `pattern` (as torchvision's and timm's list_models):
    the ImageNet nets, then the CIFAR nets of the paper; weights=True keeps those with named weights."""
    names = model_names(pattern)
    return [n for n in names if any(model == n for model, _ in published.REGISTRY)] if weights else names


def warn_on_foreign_input(model: nn.Module, w) -> None:
    """Once, at the first forward: warn when the input does not look normalized as `w` needs (resnetlab's own
    weights subtract their per-pixel mean from x/255 and divide by nothing, so their input has mean ~0 and std
    ~0.25; ImageNet's Normalize gives std ~1, raw x/255 mean ~0.47). 82% error, silently, is the alternative."""
    def check(module: nn.Module, args: tuple) -> None:
        handle.remove()
        x = args[0] if args else None
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.numel() == 0:
            return
        if torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            return
        mean, std = float(x.detach().float().mean()), float(x.detach().float().std()) if x.numel() > 1 else 0.0
        if abs(mean) > 0.2 or std > 0.6:
            warnings.warn(f"{w.model} weights {w.name!r} expect x/255 less their per-pixel mean (input mean ~0, std "
                          f"~0.25); this input has mean {mean:.2f}, std {std:.2f}. Use get_weights({w.model!r}, "
                          f"{w.name!r}).transforms() (torch.hub: the 'transforms' entry), not ImageNet's Normalize",
                          UserWarning, stacklevel=2)

    handle = model.register_forward_pre_hook(check)
