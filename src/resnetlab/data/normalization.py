"""How pixels become a network's input: x -> (x / 255 - mean) / std, with the statistics of the training images
(the paper's per-pixel mean, or per channel) or ImageNet's fixed constants."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from resnetlab.errors import UserError

# ImageNet's per-channel mean and std (of x / 255), which torchvision's and akamaster's weights expect.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


@dataclass
class Normalization:
    """x -> (x / 255 - mean) / std, with mean/std of shape (3, 1, 1) (per channel) or (3, H, W) (per pixel)."""

    kind: str
    mean: Tensor
    std: Tensor

    @classmethod
    def fit(cls, kind: str, images: np.ndarray) -> "Normalization":
        """Statistics of the training images (uint8 NHWC): "pixel-mean" is the paper's per-pixel mean
        subtraction, "channel" the common per-channel mean/std."""
        x = torch.from_numpy(images).permute(0, 3, 1, 2)
        if kind == "pixel-mean":
            mean = torch.zeros(x.shape[1:], dtype=torch.float64)
            for chunk in x.split(4096):
                mean += chunk.double().sum(0)
            return cls(kind, (mean / len(x) / 255).float(), torch.ones(3, 1, 1))
        if kind == "channel":
            flat = x.transpose(0, 1).reshape(3, -1)
            mean = torch.stack([c.double().mean() for c in flat]) / 255
            std = torch.stack([c.double().std() for c in flat]) / 255
            if not (std > 0).all():
                flat_channel = "RGB"[int((std > 0).logical_not().nonzero()[0])]
                raise UserError(f"channel {flat_channel} of the training images has zero variance (every pixel the "
                                "same), so --normalization channel would divide by zero; use pixel-mean")
            return cls(kind, mean.float().view(3, 1, 1), std.float().view(3, 1, 1))
        raise ValueError(f"normalization must be 'pixel-mean' or 'channel', not {kind!r}")

    @classmethod
    def imagenet(cls) -> "Normalization":
        """The fixed ImageNet mean/std that torchvision's and akamaster's weights expect."""
        return cls("imagenet", torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1))

    @classmethod
    def from_dict(cls, d: dict) -> "Normalization":
        return cls(d["kind"], d["mean"].float(), d["std"].float())

    def to_dict(self) -> dict:
        return {"kind": self.kind, "mean": self.mean, "std": self.std}

    def __call__(self, x_uint8: Tensor) -> Tensor:
        mean, std = self.mean.to(x_uint8.device), self.std.to(x_uint8.device)
        return (x_uint8.float().div_(255) - mean).div_(std)
