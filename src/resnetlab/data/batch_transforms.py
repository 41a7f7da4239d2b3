"""Batch transforms: a function of (batch, strength, classes, generator) returning a new Batch with soft
targets, registered in BATCH_TRANSFORMS by the name of the setting that switches it on (`--mixup-alpha`,
`--cutmix-alpha`: torchvision's references' names). A new one is one function and one registry line.

Written here rather than taken from torchvision's v2.MixUp/CutMix (whose formulas these are: the batch mixed
with itself rolled by one, lambda ~ Beta(alpha, alpha), cutmix's box of side sqrt(1 - lambda) and lambda
corrected to its clipped area): those draw from torch's global generator, and a step's draws must come from
the generator of (seed, step, rank) alone, so that a resumed run, K seeds trained together and any number
of workers draw the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from resnetlab.data.batch import Batch

STREAM = 0xB47C  # keeps these draws apart from every other stream seeded by (seed, step)


def step_generator(seed: int, step: int, rank: int = 0) -> np.random.Generator:
    """The generator of one step's batch transforms, a function of (seed, step, rank) alone."""
    return np.random.default_rng(np.random.SeedSequence([seed, step, rank, STREAM]))


def soft_targets(batch: Batch, classes: int) -> torch.Tensor:
    """The batch's targets as class probabilities (one-hot where no transform has mixed them yet)."""
    if batch.targets is not None:
        return batch.targets
    return F.one_hot(batch.labels, classes).float()


def _mixed(batch: Batch, images: torch.Tensor, lam: float, classes: int) -> Batch:
    """The batch with `images`, targets lam * own + (1 - lam) * those of the batch rolled by one."""
    targets = soft_targets(batch, classes)
    targets = targets * lam + targets.roll(1, 0) * (1 - lam)
    labels = batch.labels if lam >= 0.5 else batch.labels.roll(1, 0)
    return Batch(images, labels, targets)


def mixup(batch: Batch, alpha: float, classes: int, g: np.random.Generator) -> Batch:
    """Zhang et al. 2018: every image blended with its neighbour in the batch, lambda ~ Beta(alpha, alpha)."""
    lam = float(g.beta(alpha, alpha))
    images = batch.images * lam + batch.images.roll(1, 0) * (1 - lam)
    return _mixed(batch, images, lam, classes)


def cutmix(batch: Batch, alpha: float, classes: int, g: np.random.Generator) -> Batch:
    """Yun et al. 2019: a box of the neighbour's image pasted in, its area share 1 - lambda (clipped at the
    border, lambda then recomputed from the box pasted)."""
    lam = float(g.beta(alpha, alpha))
    h, w = batch.images.shape[-2:]
    cy, cx = int(g.integers(h)), int(g.integers(w))
    half_h, half_w = int(0.5 * h * np.sqrt(1 - lam)), int(0.5 * w * np.sqrt(1 - lam))
    top, bottom, left, right = max(cy - half_h, 0), min(cy + half_h, h), max(cx - half_w, 0), min(cx + half_w, w)
    images = batch.images.clone()
    images[..., top:bottom, left:right] = batch.images.roll(1, 0)[..., top:bottom, left:right]
    lam = 1.0 - (bottom - top) * (right - left) / (h * w)
    return _mixed(batch, images, lam, classes)


@dataclass(frozen=True)
class BatchTransform:
    apply: Callable[[Batch, float, int, np.random.Generator], Batch]
    help: str


# By the setting that holds the transform's strength (> 0 switches it on).
BATCH_TRANSFORMS: dict[str, BatchTransform] = {
    "mixup_alpha": BatchTransform(mixup, "mixup: blend each image with another, Beta(alpha, alpha) "
                                         "(torchvision's V2 recipe: 0.2; 0: off)"),
    "cutmix_alpha": BatchTransform(cutmix, "cutmix: paste a box of another image, Beta(alpha, alpha) "
                                           "(torchvision's V2 recipe: 1.0; 0: off)"),
}


class BatchTransforms:
    """The batch transforms a run's settings switch on. With several, each batch takes one of them, chosen
    with equal chance (torchvision's references: RandomChoice of mixup and cutmix)."""

    def __init__(self, cfg, classes: int, rank: int = 0) -> None:
        self.active = [(BATCH_TRANSFORMS[name], float(getattr(cfg, name))) for name in BATCH_TRANSFORMS
                       if getattr(cfg, name)]
        self.seed, self.classes, self.rank = cfg.seed, classes, rank

    def __bool__(self) -> bool:
        return bool(self.active)

    def __call__(self, batch: Batch, step: int) -> Batch:
        if not self.active:
            return batch
        g = step_generator(self.seed, step, self.rank)
        transform, strength = self.active[int(g.integers(len(self.active)))] if len(self.active) > 1 else self.active[0]
        return transform.apply(batch, strength, self.classes, g)
