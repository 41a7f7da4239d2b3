"""Augmentations beyond the paper's crops and flips, each registered by name: batch transforms that mix images
and their targets (mixup, cutmix) and per-image policies (TrivialAugment, RandAugment, AutoAugment, random
erasing). Every draw comes from a generator seeded by the run's seed and the step (or the image), so exact
resume, seeds trained together and torchrun hold by construction."""

from resnetlab.augment.batch_transforms import BATCH_TRANSFORMS, BatchTransforms
from resnetlab.augment.image_policies import POLICIES, ImageAugment

__all__ = ["BATCH_TRANSFORMS", "POLICIES", "BatchTransforms", "ImageAugment"]
