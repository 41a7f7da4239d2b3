"""What every dataset format is read into: a `Dataset` of named splits, each either images in memory
(`ArrayDataset`: uint8 arrays, trained on the device pipeline) or files streamed from disk (`FolderIndex`:
paths and labels, decoded by a DataLoader). A reader (data/readers.py) returns one; nothing downstream asks
which format it came from."""

from __future__ import annotations

from dataclasses import dataclass, field

from resnetlab.data import folders
from resnetlab.data.arrays import ArrayDataset

SMALL_IMAGE = 64  # images up to this size are decoded into memory once; larger ones stay files
Split = ArrayDataset | folders.FolderIndex


@dataclass
class Dataset:
    source: str
    format: str
    classes: list[str]
    splits: dict[str, Split]
    ignored: int = 0  # non-image files passed over
    skipped: int = 0  # corrupt images passed over with skip_corrupt
    notes: list[str] = field(default_factory=list)
    flat: bool = False  # class folders directly under the root, no train/val/test: one split, "all" to evaluate

    def __post_init__(self) -> None:
        for name, split in self.splits.items():
            if isinstance(split, ArrayDataset):
                split.split = name

    @property
    def in_memory(self) -> bool:
        return isinstance(self.splits["train"], ArrayDataset)

    def image_size(self) -> tuple[int, int] | None:
        train = self.splits["train"]
        if isinstance(train, ArrayDataset):
            return int(train.images.shape[1]), int(train.images.shape[2])
        return None
