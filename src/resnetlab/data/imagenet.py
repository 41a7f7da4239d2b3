"""The ImageNet pipeline (Sec. 3.4): image files through a DataLoader with workers and torchvision's
decoding and transforms. Scale augmentation (shorter side in [256, 480]), random 224 crop, flip,
AlexNet's PCA lighting, mean/std normalization; evaluation on the 256-resized center 224 crop or the
paper's 10 crops."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from resnetlab.data.device_loader import epoch_generator
from resnetlab.data.folders import FolderIndex, decode

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
# Eigen-decomposition of ImageNet's RGB covariance, as published with AlexNet (Krizhevsky et al. 2012).
EIGVAL = torch.tensor([0.2175, 0.0188, 0.0045])
EIGVEC = torch.tensor([[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]])


class PCALighting(torch.nn.Module):
    """AlexNet's colour augmentation: add eigvec @ (alpha * eigval), alpha ~ N(0, std), to every pixel."""

    def __init__(self, std: float = 0.1) -> None:
        super().__init__()
        self.std = std

    def forward(self, img: Tensor) -> Tensor:
        alpha = torch.randn(3) * self.std
        return img + (EIGVEC @ (alpha * EIGVAL)).view(3, 1, 1)


def train_transform(crop: int = 224, scale: tuple[int, int] = (256, 480)) -> v2.Compose:
    return v2.Compose([
        v2.RandomShortestSize(min_size=list(range(scale[0], scale[1] + 1)), antialias=True),
        v2.RandomCrop(crop),
        v2.RandomHorizontalFlip(),
        v2.ToDtype(torch.float32, scale=True),
        PCALighting(),
        v2.Normalize(MEAN, STD),
    ])


class TenCropStack(torch.nn.Module):
    """The paper's 10 crops (4 corners + center, and their flips) as one (10, C, H, W) tensor."""

    def __init__(self, crop: int) -> None:
        super().__init__()
        self.ten_crop = v2.TenCrop(crop)

    def forward(self, img: Tensor) -> Tensor:
        return torch.stack(list(self.ten_crop(img)))


def eval_transform(crop: int = 224, resize: int = 256, ten_crop: bool = False) -> v2.Compose:
    return v2.Compose([v2.Resize(resize, antialias=True), TenCropStack(crop) if ten_crop else v2.CenterCrop(crop),
                       v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)])


class FolderImages(Dataset):
    def __init__(self, index: FolderIndex, transform: v2.Compose) -> None:
        self.index, self.transform = index, transform

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.transform(decode(self.index.paths[i])), int(self.index.labels[i])


class _EpochSampler(torch.utils.data.Sampler):
    """Indices of the epoch's seeded permutation from `start` on, this rank's share only."""

    def __init__(self, n: int, seed: int, epoch: int, start: int, rank: int, world_size: int) -> None:
        self.order = torch.randperm(n, generator=epoch_generator(seed, epoch))
        self.order = self.order[start:][rank::world_size]

    def __len__(self) -> int:
        return len(self.order)

    def __iter__(self):
        return iter(self.order.tolist())


class StreamLoader:
    """`batch(step)` over a folder dataset, like DeviceLoader: the order of epoch e is a seeded
    permutation, so a resumed run picks up at the same image. (The random crops inside the workers
    are seeded per epoch, not per image: a resume mid-epoch draws other crops.)"""

    def __init__(self, index: FolderIndex, batch_size: int, device: torch.device, *, seed: int, workers: int,
                 rank: int = 0, world_size: int = 1, channels_last: bool = False) -> None:
        self.data = FolderImages(index, train_transform())
        self.batch_size, self.device, self.seed, self.workers = batch_size, device, seed, workers
        self.rank, self.world_size = rank, world_size
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self._next_step: int | None = None
        self._it = None

    def __len__(self) -> int:
        return len(self.data) // self.batch_size

    def batch(self, step: int) -> tuple[Tensor, Tensor]:
        epoch, pos = divmod(step, len(self))
        if self._next_step != step or pos == 0:
            sampler = _EpochSampler(len(self.data), self.seed, epoch, pos * self.batch_size, self.rank,
                                    self.world_size)
            loader = DataLoader(self.data, batch_size=self.batch_size // self.world_size, sampler=sampler,
                                num_workers=self.workers, drop_last=True, pin_memory=self.device.type == "cuda",
                                generator=epoch_generator(self.seed, epoch),
                                persistent_workers=False)
            self._it = iter(loader)
        self._next_step = step + 1
        x, y = next(self._it)
        return (x.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format),
                y.to(self.device, non_blocking=True))


def eval_loader(index: FolderIndex, batch_size: int, workers: int, ten_crop: bool = False) -> DataLoader:
    return DataLoader(FolderImages(index, eval_transform(ten_crop=ten_crop)), batch_size=batch_size,
                      num_workers=workers, shuffle=False)
