"""Reading a weights or checkpoint file without running it: torch.load(weights_only=True), a bounded archive, and the
model's tensors under our names whichever format (resnetlab, torchvision, akamaster, DDP, compiled) holds them."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch
from torch import Tensor

from resnetlab.errors import UserError
from resnetlab.models import safetensors_files


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
    """A safetensors file or model folder (models/safetensors_files.py), else torch.load with weights_only=True:
    tensors and plain containers only, never arbitrary objects."""
    path = Path(path)
    if safetensors_files.is_model_folder(path):
        return safetensors_files.read_model_folder(path)
    if path.is_dir():
        hint = (f" (did you mean {path / 'last.pt'}?)" if (path / "last.pt").is_file() else
                f" (did you mean {path / 'final.safetensors'}?)" if (path / "final.safetensors").is_file() else
                " (its pytorch_model.bin can be given as the weights file itself)"
                if (path / "pytorch_model.bin").is_file() else "")
        raise UserError(f"checkpoint {path} is a folder, not a checkpoint file or a model folder (config.json + "
                        f"model.safetensors){hint}")
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    if safetensors_files.looks_like_safetensors(path):
        return safetensors_files.read_safetensors(path)
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
