"""Predicting with a loaded model: image files, folders, PIL images or tensors in, each one's top-k classes out,
in batches that fit the machine's memory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from resnetlab.data.folders import IMAGE_SUFFIXES
from resnetlab.errors import UserError
from resnetlab.inference.load import LoadedModel

ImageLike = Union[str, Path, Image.Image, Tensor]  # a file, a PIL image, a (3, H, W) tensor (data/preprocess.py)


def expand_folders(images: list[ImageLike]) -> list[ImageLike]:
    """Each folder in `images` replaced by every image file under it (sorted): predict on a folder."""
    out: list[ImageLike] = []
    for item in images:
        if isinstance(item, (str, Path)) and Path(item).is_dir():
            found = sorted(p for p in Path(item).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                raise UserError(f"{item}: the folder holds no images (.jpg, .jpeg or .png)")
            out += found
        elif isinstance(item, (str, Path)) and not Path(item).is_file():
            raise UserError(f"{item}: no such image file or folder")
        else:
            out.append(item)
    return out


# Peak memory of a no-grad ResNet forward per input byte: the stem's 64-channel map at half the input's side is
# 5.3x the input, two of them live at once, plus the input and its normalized copy (measured peak RSS growth of
# ResNet-50 at 224: ~13x the batch's float input).
ACTIVATION_FACTOR = 16


def available_memory() -> int | None:
    """Bytes the machine can still give (Linux: MemAvailable, which counts reclaimable cache), or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not POSIX: cannot tell
        return None


def check_batch_memory(batch_size: int, size: int) -> None:
    """Refuse, before allocating, a batch the machine's free memory cannot hold, with the figure."""
    need = batch_size * 3 * size * size * 4 * ACTIVATION_FACTOR
    free = available_memory()
    if free is not None and need > free:
        fits = max(1, int(batch_size * free / need))
        raise UserError(f"--batch-size {batch_size} at {size}x{size} needs about {need / 2**30:.1f} GiB and "
                        f"{free / 2**30:.1f} GiB are free; use --batch-size {fits} or less")


@torch.no_grad()
def predict(loaded: LoadedModel, images: list[ImageLike], topk: int = 5, batch_size: int = 64) -> list[dict]:
    """Top-k classes of each image, `batch_size` images decoded at a time (memory stays bounded)."""
    transform = loaded.transforms()
    names = loaded.classes
    check_batch_memory(batch_size, loaded.input["size"])
    out = []
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        probs = F.softmax(loaded.model(torch.stack([transform(x) for x in chunk])).float(), dim=1)
        values, indices = probs.topk(min(topk, probs.shape[1]), dim=1)
        for n, (x, vs, idx) in enumerate(zip(chunk, values.tolist(), indices.tolist())):
            out.append({"file": str(x) if isinstance(x, (str, Path)) else None, "index": start + n,
                        "top": [{"class": names[i] if names else str(i), "index": int(i), "probability": float(v)}
                                for v, i in zip(vs, idx)]})
    return out
