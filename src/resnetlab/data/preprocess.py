"""A model's own input, from any image: the counterpart of torchvision's `weights.transforms()`.

Every use of a trained model (predict, evaluate on folders, the Python API, named weights) goes through
`Preprocess`, so an image is seen the same way everywhere: shorter side resized to `resize`, the centre
`size` x `size` crop, then the model's normalization (ImageNet mean/std, or a run's per-pixel mean).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision.transforms import v2

from resnetlab.data.folders import decode, elongated, rgb8
from resnetlab.data.normalization import Normalization


class Preprocess:
    """image -> normalized float (3, size, size). An image is a file path, a PIL image, a uint8 tensor
    (3, H, W), or a float tensor (3, H, W) with values in [0, 1]."""

    def __init__(self, size: int, resize: int, normalization: Normalization) -> None:
        self.size, self.resize, self.normalization = size, resize, normalization

    def __call__(self, image: str | Path | Image.Image | Tensor) -> Tensor:
        x = pixels(image)
        if x.shape[1:] != (self.size, self.size):  # an image already at the input size is used as it is
            x = v2.functional.center_crop(v2.functional.resize(x, [self.resize], antialias=True), [self.size])
        return self.normalization(x)

    def __repr__(self) -> str:
        return (f"Preprocess(resize={self.resize}, center_crop={self.size}, "
                f"normalization={self.normalization.kind!r})")


def pixels(image: str | Path | Image.Image | Tensor) -> Tensor:
    """Any image as RGB (3, H, W) on the 0-255 scale: uint8, or float for float input (not rounded: a float
    image is not made coarser); a wrong type or shape is a TypeError/ValueError that says which."""
    if isinstance(image, (str, Path)):
        return decode(Path(image))  # bounded: refuses decompression bombs and absurd aspect ratios
    if isinstance(image, Image.Image):
        if min(image.size) < 1:
            raise ValueError(f"an image of {image.size[0]}x{image.size[1]} pixels has nothing to classify")
        check_aspect(*image.size)
        return torch.from_numpy(np.array(rgb8(image))).permute(2, 0, 1)
    if not isinstance(image, Tensor):
        raise TypeError(f"an image is a file path, a PIL image or a (3, H, W) tensor, not {type(image).__name__}")
    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"an image tensor is (3, H, W) or (1, H, W), not {tuple(image.shape)}")
    if min(image.shape[1:]) < 1:
        raise ValueError(f"an image tensor of shape {tuple(image.shape)} has no pixels")
    check_aspect(image.shape[2], image.shape[1])
    if image.dtype != torch.uint8:
        if not image.is_floating_point():
            raise ValueError(f"an image tensor is uint8 (0-255) or float in [0, 1], not {image.dtype}")
        image = image.detach().float()
        if not bool(torch.isfinite(image).all()):
            raise ValueError("an image tensor holds NaN or infinite values; give pixels in [0, 1]")
        if image.numel() and (image.min() < 0 or image.max() > 1):  # e.g. an already normalized tensor
            raise ValueError(f"a float image tensor has values in [0, 1], not [{image.min():.3g}, {image.max():.3g}]; "
                             "give the image before normalization (the model's preprocessing normalizes it)")
        image = image * 255
    return image.expand(3, -1, -1).cpu().contiguous()  # a copy: normalization works in place


def check_aspect(width: int, height: int) -> None:
    """The bound decode() puts on files (folders.elongated), for images given in memory."""
    if elongated(width, height):
        raise ValueError(f"an image of {width}x{height}: {elongated(width, height)}")
