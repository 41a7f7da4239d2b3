"""Loading weights into a network, strictly and into the network they were trained as: resnetlab checkpoints,
plain state dicts (torchvision's), akamaster's CIFAR files."""

from __future__ import annotations

import warnings
from pathlib import Path

from torch import nn

from resnetlab.errors import UserError
from resnetlab.models import pretrained
from resnetlab.models.weight_files import extract_state_dict, read_checkpoint


def load_weights(model: nn.Module, path: str | Path, style: str | None = None, *, contents: dict | None = None,
                 digest: str | None = None) -> nn.Module:
    """Load a checkpoint into `model` strictly; a mismatch names the first offending key and shapes.

    Tensors that fit can still belong to another network: a torchvision ResNet-50 file fits the paper-style
    ResNet-50 (only a stride differs) and an akamaster ResNet file the plain net of its depth (option A has no
    shortcut tensors). So the file's network is checked where it can be known (a resnetlab checkpoint names it,
    a published file is known by its sha256, akamaster's format is always a ResNet), and for a bottleneck net
    whose file cannot say, `style` ("paper" or "torchvision") must say what it was trained as."""
    obj = read_checkpoint(path) if contents is None else contents  # contents, digest: the caller read it
    _check_trained_as(model, obj, path, style, digest)
    state = extract_state_dict(obj)
    own = model.state_dict()
    for k, v in own.items():
        if k not in state and k.endswith("num_batches_tracked"):
            state[k] = v  # a counter that older torch versions did not save; it does not affect outputs
        if k not in state:
            raise UserError(f"checkpoint {path} does not fit this network: it has no {k!r} (shape {tuple(v.shape)})"
                            + _style_hint(model, k))
        if state[k].shape != v.shape:
            raise UserError(
                f"checkpoint {path} does not fit this network: {k!r} has shape {tuple(state[k].shape)} "
                f"in the checkpoint but {tuple(v.shape)} in the model"
            )
    extra = [k for k in state if k not in own]
    if extra:
        raise UserError(f"checkpoint {path} does not fit this network: unexpected key {extra[0]!r}"
                        + _style_hint(model, extra[0]))
    check_finite(state, path)
    model.load_state_dict(state, strict=True)
    return model


def _style_hint(model: nn.Module, key: str) -> str:
    """What to pass when the mismatch is the shortcuts: torchvision's ResNet-18/34 project where the shape changes
    (downsample.*), the paper's option A pads with zeros (no tensors)."""
    if ".downsample." not in key or getattr(model, "style", None) is None:
        return ""
    other = "torchvision" if getattr(model, "style") == "paper" else "paper"
    return (f"; the file's shortcuts are {other}-style: give --style {other} (create_model(..., style={other!r}))")


def check_finite(state: dict, path: str | Path) -> None:
    """Refuse weights holding NaN or infinity (a NaN BatchNorm variance would train a chance-level network to
    exit 0 and copy the NaN into every checkpoint; predict would answer NaN), naming the tensor."""
    for k, v in state.items():
        if hasattr(v, "is_floating_point") and v.is_floating_point() and not bool(v.isfinite().all()):
            raise UserError(f"{path}: {k!r} holds NaN or infinite values; these weights cannot be used (a run "
                            "that diverged, or a damaged file)")


def trained_as(obj: dict, path: str | Path, digest: str | None = None) -> tuple[str | None, str | None]:
    """(the network, its style) a weights file was trained as, where the file can say: a resnetlab checkpoint
    names both, a published file is known by its sha256, akamaster's CIFAR files (keys `linear.*`) are ResNets."""
    if isinstance(obj.get("model_name"), str):
        options = obj.get("model_options") if isinstance(obj.get("model_options"), dict) else {}
        return obj["model_name"], options.get("style", "paper")
    known = pretrained.identify(path, digest)
    if known is not None:
        return known.model, known.options.get("style", "paper")
    state = obj.get("state_dict", obj)
    if isinstance(state, dict) and any(str(k).replace("module.", "").startswith("linear.") for k in state):
        n = sum(1 for k in state if str(k).endswith("conv1.weight")) - 1  # blocks; the stem has one too
        return (f"cifar_resnet{2 * n + 2}" if n > 0 else None), "paper"
    return None, None


def weights_style(model: str, given: str) -> str | None:
    """The style the weights `given` (named, or a file) were trained as, where they say; None where they do not
    or cannot be read (the run's start then says why, naming the file)."""
    if pretrained.names_published_weights(given):
        try:
            return pretrained.lookup(model, given).options.get("style")
        except UserError:
            return None
    path = Path(given)
    try:
        obj = read_checkpoint(path) if path.is_file() else None
    except (UserError, OSError):
        return None
    return None if obj is None else style_of(model, obj, path)


def style_of(model: str, obj: dict, path: str | Path) -> str | None:
    """The style of the weights file `path` (read as `obj`), where it can say: its own record, its sha256, or
    for ResNet-18/34 its keys."""
    style = trained_as(obj, path)[1]
    if style is None and model in ("resnet18", "resnet34"):
        # The keys tell: the paper's ResNet-18/34 have option-A shortcuts (no tensors), torchvision's have a
        # projection (downsample.0.weight) where the shape changes.
        style = "torchvision" if any(".downsample." in str(k) for k in extract_state_dict(obj)) else "paper"
    return style


def _check_trained_as(model: nn.Module, obj: dict, path: str | Path, style: str | None, digest: str | None) -> None:
    network, file_style = trained_as(obj, path, digest)
    residual = getattr(model, "residual", None)
    if network is not None and residual is not None and ("plain" not in network) != residual:
        # Option-A nets have no shortcut tensors: a ResNet's fit the plain net of its depth. Said, not refused:
        # starting a plain net from a ResNet's weights is a legitimate experiment.
        other = network.replace("resnet", "plain") if residual is False else network.replace("plain", "resnet")
        warnings.warn(f"{path} were trained as {network} but are loaded into {other}: the tensors have the same "
                      "names and shapes, the networks differ", UserWarning, stacklevel=3)
    own_style = getattr(model, "style", None)
    if own_style is None or not getattr(model, "bottleneck", False):
        return  # only the bottleneck nets' two styles share their tensors
    if style is not None and file_style is not None and style != file_style:
        raise UserError(f"{path} was trained as style {file_style!r}, not {style!r}")
    style = style or file_style
    if style is None:
        raise UserError(f"{path}: the paper-style and torchvision-style (v1.5) bottleneck nets have the same tensors, "
                        f"so the file cannot say which it was trained as; pass style='paper' or style='torchvision' "
                        f"(this network is {own_style!r})")
    if style != own_style:
        raise UserError(f"{path} was trained as style {style!r} but this network is style {own_style!r}: build it "
                        f"with create_model(..., style={style!r})")
