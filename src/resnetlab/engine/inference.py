"""Trained models for use: from a resnetlab checkpoint alone, or a foreign one with --model/--weights."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.transforms import v2

from resnetlab.data import Normalization
from resnetlab.data.folders import decode
from resnetlab.engine.checkpoint import load_checkpoint
from resnetlab.errors import UserError
from resnetlab.models import create_model, is_cifar, load_weights, read_checkpoint


@dataclass
class LoadedModel:
    model: nn.Module
    name: str
    classes: list[str] | None
    normalization: Normalization
    input: dict  # {"size": crop, "resize": shorter side before the crop}
    checkpoint: dict | None = None
    source: Path | None = None  # the file the weights were read from


def load_model(checkpoint: str | None = None, model: str | None = None, weights: str | None = None,
               num_classes: int | None = None, weights_dir: str | None = None) -> LoadedModel:
    """Either --checkpoint (a resnetlab run's last.pt/best.pt), or --model with --weights: a file, or the
    name of published weights (`resnetlab models --weights`), which carry their class names."""
    if checkpoint:
        if model or weights:
            raise UserError("give either --checkpoint, or --model with --weights, not both")
        ckpt = load_checkpoint(checkpoint)
        net = create_model(ckpt["model_name"], **ckpt["model_options"])
        net.load_state_dict(ckpt["model"])
        return LoadedModel(net.eval(), ckpt["model_name"], ckpt["classes"],
                           Normalization.from_dict(ckpt["normalization"]), ckpt["input"], ckpt, Path(checkpoint))
    if not (model and weights):
        raise UserError("give --checkpoint RUN/best.pt, or --model NAME with --weights FILE")
    cifar = is_cifar(model)
    size = {"size": 32, "resize": 32} if cifar else {"size": 224, "resize": 256}
    if not Path(weights).exists() and "/" not in weights and not weights.endswith((".pt", ".pth", ".th")):
        from resnetlab.models import pretrained

        w = pretrained.lookup(model, weights)
        net = create_model(model, weights=weights, weights_dir=weights_dir)
        return LoadedModel(net.eval(), model, list(w.classes), Normalization.imagenet(), size,
                           source=pretrained.weights_dir(weights_dir) / w.filename)
    net = create_model(model, **({"num_classes": num_classes} if num_classes else {}))
    if not Path(weights).exists():
        raise UserError(f"--weights {weights}: no such file")
    load_weights(net, weights)
    trained_as = weights_network(weights)
    if trained_as and trained_as != model:
        # Option-A nets have no shortcut parameters: a ResNet's tensors fit the plain net of its depth.
        warnings.warn(f"--weights {weights} were trained as {trained_as} but are loaded into {model}: the tensors "
                      "have the same names and shapes, the networks differ", stacklevel=2)
    # Foreign CIFAR and ImageNet weights (akamaster's, torchvision's) expect ImageNet's mean/std.
    return LoadedModel(net.eval(), model, None, Normalization.imagenet(), size, source=Path(weights))


def weights_network(path: str) -> str | None:
    """The network a weights file was trained as, where the file says: resnetlab checkpoints name it,
    akamaster's CIFAR files (keys `linear.*`) are always ResNets."""
    obj = read_checkpoint(path)
    if isinstance(obj.get("model_name"), str):
        return obj["model_name"]
    state = obj.get("state_dict", obj)
    if isinstance(state, dict) and any(str(k).replace("module.", "").startswith("linear.") for k in state):
        n = sum(1 for k in state if str(k).endswith("conv1.weight")) - 1  # blocks; the stem has one too
        return f"cifar_resnet{2 * n + 2}" if n > 0 else None
    return None


def preprocess(path: Path, loaded: LoadedModel) -> Tensor:
    """One image file as the model's normalized input (3, size, size)."""
    img = decode(path)
    size, resize = loaded.input["size"], loaded.input["resize"]
    if img.shape[1:] != (size, size):
        img = v2.CenterCrop(size)(v2.Resize(resize, antialias=True)(img))
    return loaded.normalization(img)


@torch.no_grad()
def predict(loaded: LoadedModel, paths: list[Path], topk: int = 5) -> list[dict]:
    x = torch.stack([preprocess(p, loaded) for p in paths])
    probs = F.softmax(loaded.model(x), dim=1)
    k = min(topk, probs.shape[1])
    values, indices = probs.topk(k, dim=1)
    names = loaded.classes or [str(i) for i in range(probs.shape[1])]
    return [{"file": str(p), "top": [{"class": names[i], "index": int(i), "probability": float(v)}
                                     for v, i in zip(vs.tolist(), idx.tolist())]}
            for p, vs, idx in zip(paths, values, indices)]
