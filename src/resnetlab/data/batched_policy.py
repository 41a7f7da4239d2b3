"""torchvision's v2 policies (TrivialAugmentWide, the `cifar-modern` recipe's; RandAugment; AutoAugment) on a
whole uint8 batch at once.

Written here, not taken from torchvision, because it is measurably faster: torchvision runs a policy one image at
a time (a transform call, its pytree handling and a generator swap per image: 19 ms of a ResNet-20 step's
~200-250 on one AMX core); here each image's draws are still its own, but the images that drew one op go through
it together (tests/data/test_batched_policy.py prints both times; on the AVX2-only EPYC the cifar-modern run's
data wait fell from 12% to 5%). What each op does stays torchvision's:
- the ops and magnitudes are drawn exactly as the policy's forward draws them (one function each, `DRAWS`), from
  the image's own seed, over torchvision's own table of ops and magnitudes (`_AUGMENTATION_SPACE`), and applied
  in its order: a policy of two ops runs two rounds;
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

import numpy as np
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
    "Invert": lambda x, m: F.invert(x),
}
GEOMETRIC_OPS = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")


Table = dict[str, tuple[list[float] | None, bool]]  # op -> (its magnitudes as Python floats, or None; signed)


def as_compared(p: float) -> float:
    """p as torchvision's `torch.rand(...) <= p` (or `>= p`) sees it: the comparison runs in the draw's float32. A
    float32 draw read as a Python float compares with this exactly as the tensors do, in a third of the time."""
    return float(np.float32(p))


def _at_most(p: float, g: torch.Generator) -> bool:
    return torch.rand((), generator=g).item() <= as_compared(p)


def _op(table: Table, g: torch.Generator) -> tuple[str, list[float] | None, bool]:
    """One op, drawn as torchvision's `_get_random_item` draws it: its name, magnitudes (or None) and sign flag."""
    name = list(table)[int(torch.randint(len(table), (), generator=g))]
    return name, *table[name]


def _magnitude(magnitudes: list[float] | None, signed: bool, index: int | None, g: torch.Generator) -> float:
    """The op's magnitude at `index`, negated on a draw where the op is signed; 0.0 for an op without any."""
    if magnitudes is None:
        return 0.0
    return -magnitudes[index] if signed and _at_most(0.5, g) else magnitudes[index]


def _trivial_draws(policy: v2.TrivialAugmentWide, table: Table, g: torch.Generator) -> list[tuple[str, float]]:
    """One op, one of its magnitudes (v2.TrivialAugmentWide.forward's draws, in its order)."""
    name, magnitudes, signed = _op(table, g)
    index = None if magnitudes is None else int(torch.randint(len(magnitudes), (), generator=g))
    return [(name, _magnitude(magnitudes, signed, index, g))]


def _rand_draws(policy: v2.RandAugment, table: Table, g: torch.Generator) -> list[tuple[str, float]]:
    """num_ops ops, each at the policy's one magnitude (v2.RandAugment.forward's draws)."""
    ops = []
    for _ in range(policy.num_ops):
        name, magnitudes, signed = _op(table, g)
        ops.append((name, _magnitude(magnitudes, signed, policy.magnitude, g)))
    return ops


def _auto_draws(policy: v2.AutoAugment, table: Table, g: torch.Generator) -> list[tuple[str, float]]:
    """One sub-policy, each of its two ops taken with its probability (v2.AutoAugment.forward's draws)."""
    ops = []
    for name, probability, index in policy._policies[int(torch.randint(len(policy._policies), (), generator=g))]:
        if _at_most(probability, g):
            ops.append((name, _magnitude(*table[name], index, g)))
    return ops


# policy class -> (its draws, its magnitude bins): the policies whose forward these draws repeat.
DRAWS = {
    v2.TrivialAugmentWide: (_trivial_draws, lambda p: p.num_magnitude_bins),
    v2.RandAugment: (_rand_draws, lambda p: p.num_magnitude_bins),
    v2.AutoAugment: (_auto_draws, lambda p: 10),  # AutoAugment's forward fixes 10 bins
}


class BatchedPolicy:
    """One of torchvision's v2 policies (`DRAWS`; nearest interpolation, fill 0), on a batch: each image's ops
    drawn from its seed as the policy draws them, then applied in rounds (an image's first op, its second...),
    the images that drew one op in a round going through it together."""

    def __init__(self, policy: v2.TrivialAugmentWide | v2.RandAugment | v2.AutoAugment) -> None:
        if type(policy) not in DRAWS:
            raise NotImplementedError(f"no batched form of {type(policy).__name__}")
        self.policy, (self._draws, self._bins) = policy, DRAWS[type(policy)]
        self.space = policy._AUGMENTATION_SPACE
        unknown = set(self.space) - set(PIXEL_OPS) - set(GEOMETRIC_OPS)
        nearest = str(getattr(policy.interpolation, "value", policy.interpolation)) == "nearest"  # enum or str
        if unknown or not nearest or any(v not in (None, 0) for v in policy._fill.values()):
            raise NotImplementedError(f"{type(policy).__name__}: ops not batched here ({sorted(unknown)}), "
                                      "or not the nearest interpolation and fill 0 that _move assumes")
        self.tables: dict[tuple[int, int], Table] = {}
        self.maps: dict[tuple[str, float, int, int], Tensor] = {}
        self.generator = torch.Generator()
        for seed in range(8):  # a torchvision whose policy keeps its draws elsewhere fails here, not mid-run
            self.draw(seed, 32, 32)

    def draw(self, seed: int, height: int, width: int) -> list[tuple[str, float]]:
        """The ops and magnitudes the policy draws under torch.manual_seed(seed), in the order it applies them."""
        return self._draws(self.policy, self._table(height, width), self.generator.manual_seed(seed))

    def __call__(self, images: Tensor, seeds: list[int]) -> Tensor:
        """uint8 (N, C, H, W) -> the same, image i under seeds[i]."""
        height, width = images.shape[-2:]
        draws = [self.draw(s, height, width) for s in seeds]
        out = images.clone()
        for step in range(max(map(len, draws), default=0)):
            ops = [d[step] if step < len(d) else None for d in draws]
            for name in dict.fromkeys(op[0] for op in ops if op):  # disjoint rows: an op reads none another wrote
                rows = torch.tensor([i for i, op in enumerate(ops) if op and op[0] == name], device=images.device)
                magnitudes = [op[1] for op in ops if op and op[0] == name]
                if name in GEOMETRIC_OPS:
                    out[rows] = self._move(out[rows], name, magnitudes)
                else:
                    m = torch.tensor(magnitudes, dtype=torch.float64, device=images.device)
                    out[rows] = PIXEL_OPS[name](out[rows], m)
        return out

    def _table(self, height: int, width: int) -> Table:
        """torchvision's ops in its order, each with its magnitudes as Python floats (as its draw converts them)."""
        if (height, width) not in self.tables:
            bins = self._bins(self.policy)
            self.tables[height, width] = {
                name: (None if (values := fn(bins, height, width)) is None else [float(v) for v in values], signed)
                for name, (fn, signed) in self.space.items()}
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


def batched(policy: object) -> BatchedPolicy | None:
    """The batched form of a built policy where one exists and torchvision's op table is one it knows."""
    try:
        return BatchedPolicy(policy)
    except (NotImplementedError, AttributeError, KeyError, IndexError, TypeError):
        return None
