"""The value loaders yield and the training step, the self-check and the bench take."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class Batch(NamedTuple):
    """One step's images (N, C, H, W) and their hard labels (N,), and the soft targets (N, classes) a batch
    transform makes (mixup, cutmix: augment/batch_transforms.py); None: the labels are the targets.

    `labels` stay the label of each image's larger share, which the training error counts; the loss reads
    `targets` where there are any (training/step.py: batch_loss)."""

    images: Tensor
    labels: Tensor
    targets: Tensor | None = None

    def to(self, device, memory_format=None) -> "Batch":
        images = self.images.to(device, non_blocking=True)
        if memory_format is not None:
            images = images.contiguous(memory_format=memory_format)
        targets = None if self.targets is None else self.targets.to(device, non_blocking=True)
        return Batch(images, self.labels.to(device, non_blocking=True), targets)
