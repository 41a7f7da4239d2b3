"""Loading weights: resnetlab checkpoints, plain state dicts (torchvision's), akamaster's CIFAR files."""

from __future__ import annotations

import pickle
import warnings
import zipfile
from pathlib import Path

import torch
from torch import Tensor, nn

from resnetlab.errors import UserError
from resnetlab.models import pretrained


def _check_declared_size(path: Path) -> None:
    """Refuse a zip-format checkpoint whose members inflate far beyond the file: torch.save stores tensors
    uncompressed, so a real checkpoint declares about its own size, while a crafted 8.7 MB archive declaring
    2 GB would be inflated whole before torch could refuse it. Read from the archive's directory alone."""
    if not zipfile.is_zipfile(path):
        return  # the legacy (pre-1.6) format: read as before
    try:
        with zipfile.ZipFile(path) as archive:
            declared = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # damaged: torch.load names it below
    size = path.stat().st_size
    if declared > 2 * size + (1 << 20):
        raise UserError(f"cannot read checkpoint {path}: its {size / 1e6:.1f} MB archive declares "
                        f"{declared / 1e9:.2f} GB uncompressed, which no PyTorch checkpoint does; refused unread")


def read_checkpoint(path: str | Path) -> dict:
    """torch.load with weights_only=True: tensors and plain containers only, never arbitrary objects."""
    path = Path(path)
    if path.is_dir():
        hint = f" (did you mean {path / 'last.pt'}?)" if (path / "last.pt").is_file() else ""
        raise UserError(f"checkpoint {path} is a folder, not a checkpoint file{hint}")
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    _check_declared_size(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's own text suggests weights_only=False, which would run the file's code: never say that.
        what = ("it holds Python objects other than tensors and plain containers"
                if "Unsupported global" in str(e) or "GLOBAL" in str(e) else "it is not a PyTorch checkpoint")
        raise UserError(f"cannot read checkpoint {path}: {what}; resnetlab refuses it (nothing in it was run)") from None
    except Exception as e:  # noqa: BLE001 - random bytes make the unpickler fail in any way (IndexError, ...)
        raise UserError(f"cannot read checkpoint {path}: the file is damaged or not a PyTorch checkpoint "
                        f"({type(e).__name__})") from None
    if not isinstance(obj, dict):
        raise UserError(f"checkpoint {path} holds a {type(obj).__name__}, not a dict of tensors")
    return obj


def extract_state_dict(obj: dict) -> dict[str, Tensor]:
    """The model's tensors, whichever of the formats we know the file is in, under our names."""
    for key in ("model", "state_dict"):
        if isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    state = {}
    for k, v in obj.items():
        if not isinstance(v, Tensor):
            continue
        for prefix in ("module.", "_orig_mod."):  # DataParallel / DDP, torch.compile
            if k.startswith(prefix):
                k = k[len(prefix):]
        if k.startswith("linear."):  # akamaster's classifier is `linear`, ours (and torchvision's) `fc`
            k = "fc." + k[len("linear."):]
        state[k] = v
    return state


def load_weights(model: nn.Module, path: str | Path, style: str | None = None) -> nn.Module:
    """Load a checkpoint into `model` strictly; a mismatch names the first offending key and shapes.

    Tensors that fit can still belong to another network: a torchvision ResNet-50 file fits the paper-style
    ResNet-50 (only a stride differs) and an akamaster ResNet file the plain net of its depth (option A has no
    shortcut tensors). So the file's network is checked where it can be known (a resnetlab checkpoint names it,
    a published file is known by its sha256, akamaster's format is always a ResNet), and for a bottleneck net
    whose file cannot say, `style` ("paper" or "torchvision") must say what it was trained as."""
    obj = read_checkpoint(path)
    _check_trained_as(model, obj, path, style)
    state = extract_state_dict(obj)
    own = model.state_dict()
    for k, v in own.items():
        if k not in state and k.endswith("num_batches_tracked"):
            state[k] = v  # a counter that older torch versions did not save; it does not affect outputs
        if k not in state:
            raise UserError(f"checkpoint {path} does not fit this network: it has no {k!r} (shape {tuple(v.shape)})")
        if state[k].shape != v.shape:
            raise UserError(
                f"checkpoint {path} does not fit this network: {k!r} has shape {tuple(state[k].shape)} "
                f"in the checkpoint but {tuple(v.shape)} in the model"
            )
    extra = [k for k in state if k not in own]
    if extra:
        raise UserError(f"checkpoint {path} does not fit this network: unexpected key {extra[0]!r}")
    model.load_state_dict(state, strict=True)
    return model


def trained_as(obj: dict, path: str | Path) -> tuple[str | None, str | None]:
    """(the network, its style) a weights file was trained as, where the file can say: a resnetlab checkpoint
    names both, a published file is known by its sha256, akamaster's CIFAR files (keys `linear.*`) are ResNets."""
    if isinstance(obj.get("model_name"), str):
        options = obj.get("model_options") if isinstance(obj.get("model_options"), dict) else {}
        return obj["model_name"], options.get("style", "paper")
    known = pretrained.identify(path)
    if known is not None:
        return known.model, known.options.get("style", "paper")
    state = obj.get("state_dict", obj)
    if isinstance(state, dict) and any(str(k).replace("module.", "").startswith("linear.") for k in state):
        n = sum(1 for k in state if str(k).endswith("conv1.weight")) - 1  # blocks; the stem has one too
        return (f"cifar_resnet{2 * n + 2}" if n > 0 else None), "paper"
    return None, None


def _check_trained_as(model: nn.Module, obj: dict, path: str | Path, style: str | None) -> None:
    network, file_style = trained_as(obj, path)
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
