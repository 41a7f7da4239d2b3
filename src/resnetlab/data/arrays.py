"""In-memory datasets: uint8 images (N, H, W, 3) with int64 labels, and the stratified hold-out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ArrayDataset:
    images: np.ndarray  # uint8, (N, H, W, 3)
    labels: np.ndarray  # int64, (N,)
    split: str = "train"  # the split of the source these images are from (named by Dataset)
    origin: np.ndarray | None = None  # their indices in that split; None: all of it, in order
    files: list | None = None  # the image file of each, for data decoded from a folder (None: CIFAR's arrays)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def index(self) -> np.ndarray:
        """Each image's index in its split: a prediction can be traced back to the image (the hold-out's
        images are train[i])."""
        return np.arange(len(self)) if self.origin is None else self.origin

    def subset(self, index: np.ndarray) -> "ArrayDataset":
        files = ([self.files[i] for i in np.arange(len(self))[index].tolist()] if self.files is not None
                 else None)  # index: indices, a mask or a slice, as numpy takes them
        return ArrayDataset(self.images[index], self.labels[index], self.split, self.index[index], files)

    def items(self) -> list[str]:
        """What each image is, for a predictions table: its file, else its split and index (train[17])."""
        return [str(f) for f in self.files] if self.files is not None else [f"{self.split}[{i}]" for i in self.index]


def holdout_split(labels: np.ndarray, size: int = 5000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train/validation indices: `size` images, the same number from every class.

    numpy's PCG64 stream is fixed across platforms and versions, so the split is identical everywhere.
    """
    classes = np.unique(labels)
    if size % len(classes):
        raise ValueError(f"a hold-out of {size} does not split evenly over {len(classes)} classes")
    per_class = size // len(classes)
    rng = np.random.Generator(np.random.PCG64(seed))
    val = []
    for c in classes:
        members = np.flatnonzero(labels == c)
        if len(members) <= per_class:
            raise ValueError(f"class {c} has {len(members)} images, too few to hold out {per_class}")
        val.append(np.sort(rng.permutation(members)[:per_class]))
    val_idx = np.sort(np.concatenate(val))
    train_idx = np.setdiff1d(np.arange(len(labels)), val_idx)
    return train_idx, val_idx
