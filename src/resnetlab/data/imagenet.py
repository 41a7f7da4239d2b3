"""The ImageNet pipeline (Sec. 3.4): image files decoded by Pillow in DataLoader workers, then scale
augmentation (shorter side in [256, 480]), random 224 crop, flip, AlexNet's PCA lighting, mean/std
normalization, each image's draws seeded by (seed, epoch, index); evaluation on the 256-resized centre
224 crop or the paper's 10 crops."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from resnetlab.data.image_policies import ImageAugment
from resnetlab.data.batch import Batch
from resnetlab.data.device_loader import crop_boxes, epoch_generator
from resnetlab.data.folders import FolderIndex, decode
from resnetlab.data.normalization import MEAN, STD

# Eigen-decomposition of ImageNet's RGB covariance, as published with AlexNet (Krizhevsky et al. 2012).
EIGVAL = torch.tensor([0.2175, 0.0188, 0.0045])
EIGVEC = torch.tensor([[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]])


def lighting(x: Tensor, alpha: Tensor) -> Tensor:
    """AlexNet's colour augmentation on a [0, 1] image: add eigvec @ (alpha * eigval) to every pixel."""
    return x + (EIGVEC @ (alpha * EIGVAL)).view(3, 1, 1)


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The generator of one training image's random choices, a function of (seed, epoch, index) alone: a
    resumed run, any number of workers and any rank draw the same scale, crop, flip and lighting."""
    state = np.random.SeedSequence([seed, epoch, index]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) >> 1)  # 63 bits: what a generator's seed holds


class TrainTransform:
    """Sec. 3.4: shorter side resized to a random length in [256, 480], a random 224 crop or its mirror,
    AlexNet's PCA lighting (std 0.1), then mean/std normalization. Every draw comes from `g`."""

    def __init__(self, crop: int = 224, scale: tuple[int, int] = (256, 480), lighting_std: float = 0.1,
                 mean: Tensor | None = None, std: Tensor | None = None, augment: ImageAugment | None = None) -> None:
        self.crop, self.scale, self.lighting_std, self.augment = crop, scale, lighting_std, augment
        self.min_side = scale[1]  # the largest shorter side the scale jitter resizes to: more is thrown away
        self.mean = torch.tensor(MEAN).view(3, 1, 1) if mean is None else mean
        self.std = torch.tensor(STD).view(3, 1, 1) if std is None else std

    def draw_short(self, g: torch.Generator) -> int:
        return int(torch.randint(self.scale[0], self.scale[1] + 1, (1,), generator=g))

    def decode_side(self, g: torch.Generator) -> int:
        """The shorter side this image's draw will resize to, `g` left as it was: a JPEG need not be decoded larger
        (a 3-megapixel photo drawn to 300 px decodes at 1/4 instead of 1/2: measured below, bench --what folders)."""
        state = g.get_state()
        short = self.draw_short(g)
        g.set_state(state)
        return short

    def __call__(self, img: Tensor, g: torch.Generator) -> Tensor:
        short = self.draw_short(g)
        img = v2.functional.resize(img, [short], antialias=True)
        h, w = img.shape[1:]
        top = int(torch.randint(0, h - self.crop + 1, (1,), generator=g))
        left = int(torch.randint(0, w - self.crop + 1, (1,), generator=g))
        img = img[:, top:top + self.crop, left:left + self.crop]
        if bool(torch.rand(1, generator=g) < 0.5):
            img = img.flip(-1)
        alpha = torch.randn(3, generator=g) * self.lighting_std
        finish = lambda crop: (lighting(crop.float() / 255, alpha) - self.mean) / self.std  # noqa: E731
        return self.augment.one_image(img, g, finish) if self.augment else finish(img)


class ResizedCropTransform:
    """RandomResizedCrop (Szegedy et al. 2015; torchvision's and timm's default training crop): a box of an area
    share in [min_area, 1] and an aspect ratio in [3/4, 4/3] (log-uniform) resized to `crop`, mirrored with
    probability 1/2, normalized. Every draw comes from `g` (torchvision's own draws from the global generator)."""

    def __init__(self, crop: int, min_area: float, mean: Tensor, std: Tensor, augment: ImageAugment | None = None) -> None:
        self.crop, self.min_area, self.mean, self.std, self.augment = crop, min_area, mean, std, augment
        # The smallest box (area min_area, aspect 4/3 or 3/4) spans sqrt(0.75 min_area) of each side and must still
        # hold `crop` pixels: the shorter side a decode needs, whatever the draw.
        self.min_side = math.ceil(crop / math.sqrt(0.75 * min_area))

    def decode_side(self, g: torch.Generator) -> int:
        """The shorter side a decode needs (whatever this image's draw): the smallest box must hold `crop`."""
        return self.min_side

    def __call__(self, img: Tensor, g: torch.Generator) -> Tensor:
        h, w = img.shape[1:]
        half_w, half_h, cx, cy = crop_boxes(1, self.min_area, g)[0].tolist()
        box_w, box_h = max(1, round(half_w * w)), max(1, round(half_h * h))
        left, top = round((cx + 1) / 2 * w - box_w / 2), round((cy + 1) / 2 * h - box_h / 2)
        left, top = min(max(0, left), w - box_w), min(max(0, top), h - box_h)
        img = v2.functional.resized_crop(img, top, left, box_h, box_w, [self.crop, self.crop], antialias=True)
        if bool(torch.rand(1, generator=g) < 0.5):
            img = img.flip(-1)
        finish = lambda crop: (crop.float() / 255 - self.mean) / self.std  # noqa: E731
        return self.augment.one_image(img, g, finish) if self.augment else finish(img)


def train_transform(crop: int = 224, normalization=None, crop_scale: float = 0.0, augment: ImageAugment | None = None):
    """Sec. 3.4's augmentation for a `crop` input (the shorter side in [256, 480] scaled by crop / 224), or
    with `crop_scale` RandomResizedCrop of that smallest area share; then `augment`'s policy and erasing."""
    scale = (round(crop * 256 / 224), round(crop * 480 / 224))
    own = normalization is not None and normalization.kind != "imagenet"
    mean = normalization.mean.float() if own else torch.tensor(MEAN).view(3, 1, 1)
    std = normalization.std.float() if own else torch.tensor(STD).view(3, 1, 1)
    if crop_scale:
        return ResizedCropTransform(crop, crop_scale, mean, std, augment or None)
    return TrainTransform(crop, scale, mean=mean, std=std, augment=augment or None)


class TenCropStack(torch.nn.Module):
    """The paper's 10 crops (4 corners + center, and their flips) as one (10, C, H, W) tensor."""

    def __init__(self, crop: int) -> None:
        super().__init__()
        self.ten_crop = v2.TenCrop(crop)

    def forward(self, img: Tensor) -> Tensor:
        return torch.stack(list(self.ten_crop(img)))


def eval_transform(crop: int = 224, resize: int = 256, ten_crop: bool = False, normalize=None) -> v2.Compose:
    """Resize the shorter side, take the centre (or 10) crops, normalize: with ImageNet's mean/std, or with
    `normalize` (a uint8 image -> float input, e.g. a checkpoint's own Normalization)."""
    steps = [v2.Resize(resize, antialias=True), TenCropStack(crop) if ten_crop else v2.CenterCrop(crop)]
    if normalize is None:
        return v2.Compose([*steps, v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)])
    return v2.Compose([*steps, normalize])


# Table 4 / Sec. 3.4: the fully-convolutional test "at multiple scales (the shorter side in {224, 256, 384,
# 480, 640})", scores averaged.
MULTISCALE_SIDES = (224, 256, 384, 480, 640)


class MultiScaleViews:
    """The whole image, normalized, at every shorter side of MULTISCALE_SIDES (mirrors are added later)."""

    def __init__(self, sides: tuple[int, ...] = MULTISCALE_SIDES) -> None:
        self.sides = sides

    def __call__(self, img: Tensor) -> list[Tensor]:
        x = v2.functional.to_dtype(img, torch.float32, scale=True)
        return [v2.functional.normalize(v2.functional.resize(x, [s], antialias=True), MEAN, STD) for s in self.sides]


PROTOCOLS = ("center", "10-crop", "multiscale")


class FolderImages(Dataset):
    """Evaluation images by index; training images by (epoch, index), their randomness seeded by both."""

    def __init__(self, index: FolderIndex, transform, seed: int | None = None, min_side: int | None = None) -> None:
        self.index, self.transform, self.seed = index, transform, seed
        self.min_side = min_side or getattr(transform, "min_side", None)  # what decode may downscale JPEGs to

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Tensor, int]:
        if isinstance(key, tuple):
            epoch, i = key
            g = sample_generator(self.seed, epoch, i)
            x = self.transform(decode(self.index.paths[i], self.transform.decode_side(g)), g)
        else:
            i, x = key, self.transform(decode(self.index.paths[key], self.min_side))
        return x, int(self.index.labels[i])


class _StreamSampler(torch.utils.data.Sampler):
    """(epoch, index) keys from epoch `epoch`, image `start` of its seeded permutation on, one epoch after another,
    this rank's share only. Each epoch keeps its first len // batch_size global batches (drop_last's), so one
    DataLoader runs across epochs: its workers are not restarted at each epoch (measured: ~3 s lost per epoch on 2
    cores, ResNet-18 at 224 px) and its prefetching goes on over the boundary."""

    def __init__(self, n: int, seed: int, epoch: int, start: int, rank: int, world_size: int, batch_size: int) -> None:
        self.n, self.seed, self.epoch, self.start = n, seed, epoch, start
        self.rank, self.world_size, self.kept = rank, world_size, n // batch_size * batch_size

    def __iter__(self):
        epoch, start = self.epoch, self.start
        while True:
            order = torch.randperm(self.n, generator=epoch_generator(self.seed, epoch))[start:self.kept]
            yield from ((epoch, i) for i in order[self.rank::self.world_size].tolist())
            epoch, start = epoch + 1, 0


class StreamLoader:
    """`batch(step)` over a folder dataset, like DeviceLoader: the order of epoch e is a seeded permutation
    and every image's augmentation is seeded by (seed, epoch, index), so batch i is a pure function of
    (seed, i) and a resumed run draws exactly the batches an uninterrupted one does."""

    def __init__(self, index: FolderIndex, batch_size: int, device: torch.device, *, seed: int, workers: int,
                 rank: int = 0, world_size: int = 1, channels_last: bool = False, crop: int = 224,
                 normalization=None, crop_scale: float = 0.0, image_augment: ImageAugment | None = None) -> None:
        self.data = FolderImages(index, train_transform(crop, normalization, crop_scale, image_augment), seed)
        self.batch_size, self.device, self.seed, self.workers = batch_size, device, seed, workers
        self.rank, self.world_size = rank, world_size
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self._next_step: int | None = None
        self._it = None

    def __len__(self) -> int:
        return len(self.data) // self.batch_size

    def batch(self, step: int) -> Batch:
        if self._next_step != step:  # the first batch, or a jump (resume): the stream starts at this step
            epoch, pos = divmod(step, len(self))
            sampler = _StreamSampler(len(self.data), self.seed, epoch, pos * self.batch_size, self.rank,
                                     self.world_size, self.batch_size)
            loader = DataLoader(self.data, batch_size=self.batch_size // self.world_size, sampler=sampler,
                                num_workers=self.workers, pin_memory=self.device.type == "cuda")
            self._it = iter(loader)
        self._next_step = step + 1
        x, y = next(self._it)
        return Batch(x, y).to(self.device, self.memory_format)


def eval_loader(index: FolderIndex, batch_size: int, workers: int, protocol: str = "center", crop: int = 224,
                resize: int = 256, normalize=None) -> DataLoader:
    """Batches of one testing protocol: "center" (the `crop` centre crop of the image resized to `resize`),
    "10-crop", or "multiscale" (one image per batch: its views differ in size from the next image's).
    `normalize`: the model's own normalization of uint8 images, where it is not ImageNet's mean/std."""
    if protocol == "multiscale":
        return DataLoader(FolderImages(index, MultiScaleViews(), min_side=max(MULTISCALE_SIDES)), batch_size=1,
                          num_workers=workers, shuffle=False)
    if getattr(normalize, "kind", None) == "imagenet":
        normalize = None  # ImageNet's mean/std: eval_transform's own steps
    transform = eval_transform(crop, resize, ten_crop=protocol == "10-crop", normalize=normalize)
    return DataLoader(FolderImages(index, transform, min_side=resize), batch_size=batch_size, num_workers=workers,
                      shuffle=False)
