"""Weights as safetensors (a JSON header and raw tensors: nothing in the file can run) and model folders laid out
as the Hugging Face Hub's and timm's: `config.json` + `model.safetensors` (+ README.md).

resnetlab's own files carry what a checkpoint's model entries carry (network, options, classes, normalization,
input, what they were trained from) as one JSON string under the header's metadata key "resnetlab"; a file
without it (timm's, the Hub's) is a bare state dict, and a folder's config.json in timm's form (architecture,
pretrained_cfg) says its network, classes and normalization."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save
from torch import Tensor

from resnetlab.data.normalization import MEAN
from resnetlab.errors import UserError
from resnetlab.files import atomic_write

SUFFIX = ".safetensors"
WEIGHTS_FILE, CONFIG_FILE = "model.safetensors", "config.json"  # a model folder, as the Hub names them
FORMAT = "resnetlab-safetensors-v1"  # the `format` entry read_safetensors gives a resnetlab file's contents
META_KEY = "resnetlab"
TIMM_RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")  # torchvision's v1.5 = timm's


def looks_like_safetensors(path: Path) -> bool:
    """By name, or by content: an 8-byte little-endian header length, then the header's opening brace."""
    if path.name.endswith(SUFFIX):
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] < path.stat().st_size


def read_safetensors(path: Path) -> dict:
    """The file's tensors as a checkpoint's "model" entry, with its resnetlab record where it has one. A file
    that is not safetensors (a renamed pickle, a header lying about sizes, a truncated file) is one UserError,
    read by safetensors' own parser, which runs nothing."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        why = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise UserError(f"cannot read {path}: not a valid safetensors file ({why}); nothing in it was run") from None
    record = meta.get(META_KEY)
    if record is None:
        return {"model": tensors}
    try:
        info = json.loads(record)
        normalization = info.pop("normalization", None)
        if normalization is not None:
            normalization = {"kind": normalization["kind"], "mean": _tensor(normalization, "mean"),
                             "std": _tensor(normalization, "std")}
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"cannot read {path}: its resnetlab metadata is damaged ({type(e).__name__})") from None
    return {"format": FORMAT, "model": tensors, **info, **({"normalization": normalization} if normalization else {})}


def _tensor(normalization: dict, key: str) -> Tensor:
    return torch.tensor(normalization[key], dtype=torch.float32).reshape(normalization[f"{key}_shape"])


def write_safetensors(path: Path, state: dict[str, Tensor], info: dict) -> None:
    """`state` (fp32, contiguous, unshared) with `info` (model_name, model_options, classes, normalization
    as a Normalization.to_dict(), input, trained) in the header; atomically."""
    record = dict(info)
    norm = record.pop("normalization", None)
    if norm is not None:
        record["normalization"] = {"kind": norm["kind"], "mean": norm["mean"].flatten().tolist(),
                                   "mean_shape": list(norm["mean"].shape), "std": norm["std"].flatten().tolist(),
                                   "std_shape": list(norm["std"].shape)}
    tensors = {k: v.detach().contiguous().clone() for k, v in state.items()}
    header = {"format": "pt", META_KEY: json.dumps(record, default=str)}
    # Serialized in memory and written by Python into atomic_write's file: save_file writes a file of its own
    # with mode 0600, whatever the umask.
    data = _deterministic(save(tensors, metadata=header))
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def _deterministic(data: bytes) -> bytes:
    """The same file for the same weights: safetensors writes its metadata in a hash map's order, which varies
    from process to process (and with it the sha256 named weights are checked by); here its keys are sorted.
    The tensors' offsets count from the end of the header, so re-padding it (to 8 bytes, as the format wants)
    moves nothing."""
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data[8 + n:]


def is_model_folder(path: Path) -> bool:
    return path.is_dir() and (path / WEIGHTS_FILE).is_file()


def read_model_folder(path: Path) -> dict:
    """A folder's model.safetensors; where the file has no resnetlab record, its config.json in timm's form
    (architecture, num_classes, label_names, pretrained_cfg) gives the network and its input."""
    contents = read_safetensors(path / WEIGHTS_FILE)
    if "model_name" in contents or not (path / CONFIG_FILE).is_file():
        return contents
    try:
        config = json.loads((path / CONFIG_FILE).read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read {path / CONFIG_FILE}: {type(e).__name__}") from None
    return {**contents, **from_timm_config(config, path)}


def from_timm_config(config: dict, path: Path) -> dict:
    """A timm config.json's network and input as resnetlab's checkpoint entries (timm's ResNet-18..152 are
    torchvision's v1.5: style "torchvision")."""
    arch = str(config.get("architecture", "")).split(".")[0]
    if arch not in TIMM_RESNETS:
        return {}  # not a network resnetlab has: the caller's --model and --style decide
    cfg = config.get("pretrained_cfg") or {}
    classes = config.get("label_names") or [str(i) for i in range(int(config.get("num_classes", 1000)))]
    size = int((cfg.get("input_size") or [3, 224, 224])[-1])
    out = {"model_name": arch, "model_options": {"style": "torchvision", "num_classes": len(classes)},
           "classes": list(classes), "input": {"size": size, "resize": round(size / float(cfg.get("crop_pct", 0.875)))}}
    if "mean" in cfg and "std" in cfg:
        out["normalization"] = {"kind": "imagenet" if tuple(cfg["mean"]) == MEAN else "channel",
                                "mean": torch.tensor(cfg["mean"], dtype=torch.float32).reshape(3, 1, 1),
                                "std": torch.tensor(cfg["std"], dtype=torch.float32).reshape(3, 1, 1)}
    return {"format": FORMAT, **out}


def timm_config(name: str, options: dict, classes: list[str], normalization, input: dict) -> dict | None:
    """timm's config.json for a network timm has (torchvision-style ResNet-18..152), else None: the paper's
    bottleneck nets put the stride elsewhere, and its CIFAR nets and option-A shortcuts are not timm's."""
    if name not in TIMM_RESNETS or options.get("style", "paper") != "torchvision" or normalization.mean.numel() != 3:
        return None
    size = int(input["size"])
    return {"architecture": name, "num_classes": len(classes), "num_features": 512 if name in TIMM_RESNETS[:2] else 2048,
            "global_pool": "avg", "label_names": list(classes),
            "pretrained_cfg": {"input_size": [3, size, size], "interpolation": "bilinear",
                               "crop_pct": round(size / int(input["resize"]), 4), "crop_mode": "center",
                               "mean": normalization.mean.flatten().tolist(), "std": normalization.std.flatten().tolist(),
                               "num_classes": len(classes), "pool_size": [size // 32, size // 32],
                               "first_conv": "conv1", "classifier": "fc"}}
