"""TrivialAugmentWide (torchvision's v2 policy, the `cifar-modern` recipe's) on a whole uint8 batch at once.

Written here, not taken from torchvision, because it is measurably faster: torchvision runs a policy one image at
a time (a transform call, its pytree handling and a generator swap per image: 19 ms of a ResNet-20 step's
~200-250 on one AMX core); here each image's draws are still its own, but the images that drew one op go through
it together (tests/data/test_batched_policy.py prints both times; on the AVX2-only EPYC the cifar-modern run's
data wait fell from 12% to 5%). What each op does stays torchvision's:
- the op and magnitude are drawn exactly as `v2.TrivialAugmentWide` draws them, from the image's own seed, over
  torchvision's own table of ops and magnitudes (`_AUGMENTATION_SPACE`);
- shears, translations and rotations (nearest neighbour) move pixels without changing them, so torchvision's own
  function is run once per (op, magnitude, size) on an image of pixel numbers, and its output, a map of where each
  pixel comes from, is cached and applied to every image that drew it: the same pixels as torchvision's;
- posterize, solarize, auto-contrast, equalize and brightness give torchvision's pixels (its functions on groups
  of images, or the same arithmetic with one factor per image); colour, contrast and sharpness blend with a factor
  per image, torchvision's formulas, computed in float64 and rounded once as a fused multiply-add does: within one
  intensity level of torchvision's on rare pixels, depending on whether its CPU kernel fuses.
A policy with an op this table lacks (a newer torchvision) is refused at construction and runs per image instead.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

BIT_DEPTH_MAX = 255.0  # uint8 images


def _blend(images: Tensor, other: Tensor, ratio: Tensor) -> Tensor:
    """torchvision's `_blend` with one ratio per image: images * r + other * (1 - r), clamped, truncated."""
    r32 = ratio.float().view(-1, 1, 1, 1)
    alpha = (1.0 - ratio).float().double().view(-1, 1, 1, 1)  # 1 - r in double, then float32, as Python computes it
    scaled = images.float().mul(r32)
    return (scaled.double() + other.double() * alpha).float().clamp_(0, BIT_DEPTH_MAX).to(torch.uint8)


def _grey_floor(images: Tensor) -> Tensor:
    return F.rgb_to_grayscale(images).float()  # uint8 truncation of the luma: torchvision's floor_() for uint8


def _brightness(images: Tensor, m: Tensor) -> Tensor:
    return images.float().mul((1.0 + m).float().view(-1, 1, 1, 1)).clamp_(0, BIT_DEPTH_MAX).to(torch.uint8)


def _colour(images: Tensor, m: Tensor) -> Tensor:
    if images.shape[-3] == 1:
        return images  # torchvision leaves a one-channel image as it is (as PIL does)
    return _blend(images, _grey_floor(images), 1.0 + m)


def _contrast(images: Tensor, m: Tensor) -> Tensor:
    return _blend(images, _grey_floor(images).mean(dim=(-3, -2, -1), keepdim=True), 1.0 + m)


def _sharpness(images: Tensor, m: Tensor) -> Tensor:
    # torchvision's degenerate image (3x3 blur, rounded; the border kept) is its sharpness at factor 0; its blend is
    # x + (1 - r)(blur - x), which is x itself on the border.
    blurred = F.adjust_sharpness(images, 0.0)
    alpha = (1.0 - (1.0 + m)).float().double().view(-1, 1, 1, 1)
    x = images.double()
    return (x + (blurred.double() - x) * alpha).float().clamp_(0, BIT_DEPTH_MAX).to(torch.uint8)


def _posterize(images: Tensor, m: Tensor) -> Tensor:
    out = torch.empty_like(images)
    for bits in m.unique().tolist():
        rows = m == bits
        out[rows] = F.posterize(images[rows], bits=int(bits))
    return out


def _solarize(images: Tensor, m: Tensor) -> Tensor:
    threshold = (BIT_DEPTH_MAX * m).float().view(-1, 1, 1, 1)  # torchvision compares in float32
    return torch.where(images >= threshold, F.invert(images), images)


# op name -> fn(images (n, C, H, W) uint8, magnitudes (n,) float64) -> images; torchvision's names.
PIXEL_OPS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "Identity": lambda x, m: x,
    "Brightness": _brightness, "Color": _colour, "Contrast": _contrast, "Sharpness": _sharpness,
    "Posterize": _posterize, "Solarize": _solarize,
    "AutoContrast": lambda x, m: F.autocontrast(x), "Equalize": lambda x, m: F.equalize(x),
}
GEOMETRIC_OPS = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")


class BatchedTrivialAugmentWide:
    """`v2.TrivialAugmentWide()` with its defaults (31 bins, nearest, fill 0), one draw per image from its seed."""

    def __init__(self) -> None:
        self.policy = v2.TrivialAugmentWide()
        self.space = self.policy._AUGMENTATION_SPACE
        unknown = set(self.space) - set(PIXEL_OPS) - set(GEOMETRIC_OPS)
        if unknown:
            raise NotImplementedError(f"torchvision's TrivialAugmentWide has ops not batched here: {sorted(unknown)}")
        self.tables: dict[tuple[int, int], list[tuple[str, list[float] | None, bool]]] = {}
        self.maps: dict[tuple[str, float, int, int], Tensor] = {}
        self.generator = torch.Generator()

    def draw(self, seed: int, height: int, width: int) -> tuple[str, float]:
        """The op and magnitude `v2.TrivialAugmentWide` draws under torch.manual_seed(seed), in its order."""
        g = self.generator.manual_seed(seed)
        name, magnitudes, signed = self._table(height, width)[int(torch.randint(len(self.space), (), generator=g))]
        if magnitudes is None:
            return name, 0.0
        magnitude = magnitudes[int(torch.randint(len(magnitudes), (), generator=g))]
        if signed and torch.rand((), generator=g) <= 0.5:
            magnitude *= -1
        return name, magnitude

    def __call__(self, images: Tensor, seeds: list[int]) -> Tensor:
        """uint8 (N, C, H, W) -> the same, image i under seeds[i]."""
        height, width = images.shape[-2:]
        draws = [self.draw(s, height, width) for s in seeds]
        out = images.clone()
        for name in dict.fromkeys(n for n, _ in draws):  # disjoint rows: any order gives the same batch
            rows = torch.tensor([i for i, (n, _) in enumerate(draws) if n == name], device=images.device)
            magnitudes = [m for n, m in draws if n == name]
            if name in GEOMETRIC_OPS:
                out[rows] = self._move(images[rows], name, magnitudes)
            else:
                m = torch.tensor(magnitudes, dtype=torch.float64, device=images.device)
                out[rows] = PIXEL_OPS[name](images[rows], m)
        return out

    def _table(self, height: int, width: int) -> list[tuple[str, list[float] | None, bool]]:
        """torchvision's ops in its order, each with its magnitudes as Python floats (as its draw converts them)."""
        if (height, width) not in self.tables:
            bins = self.policy.num_magnitude_bins
            self.tables[height, width] = [
                (name, None if (values := fn(bins, height, width)) is None else [float(v) for v in values], signed)
                for name, (fn, signed) in self.space.items()]
        return self.tables[height, width]

    def _move(self, images: Tensor, name: str, magnitudes: list[float]) -> Tensor:
        """Each image's pixels gathered along its op's map; 0 where the map points outside (torchvision's fill)."""
        n, c, h, w = images.shape
        index = torch.stack([self._map(name, m, h, w) for m in magnitudes]).to(images.device)
        index = index.unsqueeze(1).expand(n, c, h * w)
        padded = torch.cat([images.new_zeros(n, c, 1), images.flatten(2)], dim=2)  # position 0: outside
        return padded.gather(2, index).view(n, c, h, w)

    def _map(self, name: str, magnitude: float, h: int, w: int) -> Tensor:
        """Where torchvision's op takes each output pixel from: 1 + its flat index, 0 for outside."""
        key = (name, magnitude, h, w)
        if key not in self.maps:
            if h * w >= 2**24:  # float32 counts exactly up to 2**24
                raise ValueError(f"images of {h}x{w} pixels are too large for a batched policy")
            numbers = torch.arange(1, h * w + 1, dtype=torch.float32).view(1, h, w)
            moved = self.policy._apply_image_or_video_transform(
                numbers, name, magnitude, interpolation=self.policy.interpolation, fill=self.policy._fill)
            self.maps[key] = moved.reshape(-1).round().long()
        return self.maps[key]


def batched(name: str) -> BatchedTrivialAugmentWide | None:
    """The batched form of policy `name` where one exists and torchvision's op table is one it knows."""
    if name != "trivialaugmentwide":
        return None
    try:
        return BatchedTrivialAugmentWide()
    except (NotImplementedError, AttributeError):
        return None
