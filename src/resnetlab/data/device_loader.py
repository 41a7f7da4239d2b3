"""The CIFAR pipeline on the training device (airbench-style): the whole split as uint8 on the device,
shuffled and augmented with batched tensor ops, no per-sample Python.

Every random choice of epoch e is drawn from a CPU generator seeded by (seed, e), so batch i is a pure
function of (seed, i): identical on CPU and GPU, and a resumed run needs no loader state at all.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from resnetlab.data.image_policies import ERASE_STREAM, POLICY_STREAM, ImageAugment, image_seeds
from resnetlab.data.batch import Batch
from resnetlab.data.normalization import Normalization

PAD = 4  # Sec. 4.2: "4 pixels are padded on each side"

# Epoch e of seed s draws from the stream s * EPOCH_STRIDE + e: a prime above any epoch count, so no two
# (seed, epoch) pairs of fewer than a million epochs share a stream; reduced to the 63 bits a seed holds.
EPOCH_STRIDE = 1_000_003


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of every random choice of one epoch: the same on every machine and after a resume."""
    return torch.Generator().manual_seed((seed * EPOCH_STRIDE + epoch) % 2**63)


class DeviceLoader:
    """Batches of one split, as normalized float tensors on `device`.

    augment=True: a random 32x32 crop of the 4-pixel zero-padded image, flipped with probability 1/2
    (Sec. 4.2); the epoch is shuffled and its last partial batch dropped so every step has one shape.
    augment=False: the images in order, unaugmented, the last batch possibly smaller (evaluation).
    With world_size > 1 each rank takes every world_size-th image of the same global batch.
    """

    def __init__(
        self, images: np.ndarray, labels: np.ndarray, batch_size: int, device: torch.device | str,
        normalization: Normalization, *, augment: bool, seed: int = 0, rank: int = 0, world_size: int = 1,
        channels_last: bool = False, crop_scale: float = 0.0, image_augment: ImageAugment | None = None,
    ) -> None:
        if len(labels) < batch_size and augment:
            raise ValueError(f"{len(labels)} training images are fewer than one batch of {batch_size}")
        self.device = torch.device(device)
        self.crop_scale = crop_scale if augment else 0.0  # > 0: RandomResizedCrop instead of Sec. 4.2's pad-and-crop
        self.image_augment = image_augment if augment and image_augment else None  # --auto-augment, --random-erase
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
        self.images = (F.pad(x, (PAD,) * 4) if augment and not self.crop_scale else x).contiguous().to(self.device)
        self.labels = torch.from_numpy(labels).to(self.device)
        self.size = int(images.shape[1])
        self.batch_size, self.augment, self.seed = batch_size, augment, seed
        self.rank, self.world_size = rank, world_size
        self.normalize = Normalization(normalization.kind, normalization.mean.to(self.device),
                                       normalization.std.to(self.device))
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self._epoch: int | None = None
        self._plan: tuple[Tensor, ...] = ()

    def __len__(self) -> int:
        """Steps per epoch."""
        n = len(self.labels)
        return n // self.batch_size if self.augment else -(-n // self.batch_size)

    def _epoch_plan(self, epoch: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        if self._epoch != epoch:
            g = epoch_generator(self.seed, epoch)
            n = len(self.labels)
            perm = torch.randperm(n, generator=g)
            if self.crop_scale:
                boxes = crop_boxes(n, self.crop_scale, g)
                flips = torch.rand(n, generator=g) < 0.5
                self._plan = tuple(t.to(self.device) for t in (perm, boxes, flips, flips))
            else:
                offsets = torch.randint(0, 2 * PAD + 1, (2, n), generator=g)
                flips = torch.rand(n, generator=g) < 0.5
                self._plan = tuple(t.to(self.device) for t in (perm, offsets[0], offsets[1], flips))
            self._epoch = epoch
        return self._plan  # type: ignore[return-value]

    def batch(self, step: int) -> Batch:
        """The batch of global step `step` (0-based) of this rank."""
        augment, epoch = self.image_augment, 0
        if not self.augment:
            idx = torch.arange(step * self.batch_size, min((step + 1) * self.batch_size, len(self.labels)),
                               device=self.device)
            x = self.images[idx]
        else:
            epoch, pos = divmod(step, len(self))
            perm, dy, dx, flip = self._epoch_plan(epoch)
            sl = slice(pos * self.batch_size + self.rank, (pos + 1) * self.batch_size, self.world_size)
            idx = perm[sl]
            if self.crop_scale:  # dy holds the boxes here
                x = resized_crops(self.images[idx], dy[sl], flip[sl])
            else:
                x = crop_flip(self.images[idx], dy[sl], dx[sl], flip[sl], self.size)
            if augment is not None and augment.policy is not None:  # the policy reads uint8 images
                x = augment.apply_policy(x.round().clamp(0, 255).to(torch.uint8) if x.is_floating_point() else x,
                                         image_seeds(self.seed, epoch, idx, POLICY_STREAM))
        x = self.normalize(x)
        if augment is not None and augment.erase is not None:  # on the normalized input: erased pixels are the mean
            x = augment.apply_erase(x, image_seeds(self.seed, epoch, idx, ERASE_STREAM))
        return Batch(x.contiguous(memory_format=self.memory_format), self.labels[idx])

    def __iter__(self):
        for step in range(len(self)):
            yield self.batch(step)


def crop_flip(padded: Tensor, dy: Tensor, dx: Tensor, flip: Tensor, size: int) -> Tensor:
    """Crop size x size windows at (dy, dx) from a padded uint8 batch, mirroring where `flip`, in one gather."""
    ar = torch.arange(size, device=padded.device)
    rows = dy[:, None] + ar
    cols = dx[:, None] + torch.where(flip[:, None], size - 1 - ar, ar)
    b = torch.arange(len(padded), device=padded.device)[:, None, None]
    # Advanced indexing puts the gathered dims first: (B, size, size, C); permute back to NCHW.
    return padded.permute(0, 2, 3, 1)[b, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


RATIO = (3 / 4, 4 / 3)  # RandomResizedCrop's aspect ratios (torchvision's and timm's)


def crop_boxes(n: int, min_area: float, g: torch.Generator) -> Tensor:
    """RandomResizedCrop's boxes, (n, 4): half width, half height, centre x, centre y, as fractions of the
    image in [-1, 1] coordinates: an area share uniform in [min_area, 1], a log-uniform aspect ratio, the box
    inside the image (sides over 1 clipped, as torchvision's fallback keeps the crop within the image)."""
    area = torch.empty(n).uniform_(min_area, 1.0, generator=g)
    ratio = torch.empty(n).uniform_(float(np.log(RATIO[0])), float(np.log(RATIO[1])), generator=g).exp()
    half_w, half_h = (area * ratio).sqrt().clamp(max=1.0), (area / ratio).sqrt().clamp(max=1.0)
    centre = (torch.rand(2, n, generator=g) * 2 - 1) * torch.stack([1 - half_w, 1 - half_h])
    return torch.stack([half_w, half_h, centre[0], centre[1]], dim=1)


def resized_crops(images: Tensor, boxes: Tensor, flip: Tensor) -> Tensor:
    """Each uint8 image's box resized to the image's own size (bilinear), mirrored where `flip`, in one batched
    grid_sample: the in-memory RandomResizedCrop (float output on the 0-255 scale, for the normalization)."""
    half_w = torch.where(flip, -boxes[:, 0], boxes[:, 0])
    zero = torch.zeros_like(half_w)
    theta = torch.stack([torch.stack([half_w, zero, boxes[:, 2]], 1), torch.stack([zero, boxes[:, 1], boxes[:, 3]], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
