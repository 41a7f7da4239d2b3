"""One entry point for every dataset a user has: `open_dataset(--data value)`, read by the format's reader
(data/readers.py's registry), and the rules of its splits: the hold-out, the split that validates and the one
`evaluate` reads. Small images (<= 64 px) are decoded into uint8 arrays once and cached; large ones stay files
and are streamed through a DataLoader.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from resnetlab.data import download, folders, readers
from resnetlab.data.arrays import ArrayDataset, holdout_split
from resnetlab.data.dataset import SMALL_IMAGE, Dataset
from resnetlab.errors import UserError

__all__ = ["Dataset", "SMALL_IMAGE", "open_dataset"]


def cache_root() -> Path:
    return download.default_root() / "cache"


def open_dataset(spec: str | Path, *, skip_corrupt: bool = False, cache_dir: Path | None = None,
                 size: int | None = None) -> Dataset:
    """The dataset `spec` names. `size`: the input size its images are wanted at (data/input_size.py's rule):
    up to SMALL_IMAGE they are decoded into arrays of that size (photos resized and centre-cropped, once,
    cached), larger they stay files streamed through a DataLoader; None: as they are (small images in arrays)."""
    ds = readers.read_dataset(str(spec), readers.ReadOptions(skip_corrupt, cache_dir or cache_root(), size))
    if size is not None and ds.in_memory and ds.image_size() != (size, size):
        if size > SMALL_IMAGE:
            raise UserError(f"--img-size {size}: {ds.source}'s images come as arrays ({ds.format}), which are "
                            f"trained in memory at up to {SMALL_IMAGE} px; give --img-size {SMALL_IMAGE} or less, "
                            "or the images as a class-per-folder tree")
        ds.splits = {name: resized(split, size) for name, split in ds.splits.items()}
        ds.notes.append(f"images resized from {ds.format}'s own size to {size}x{size} in memory")
    return ds


def resized(split: ArrayDataset, size: int) -> ArrayDataset:
    """In-memory images at size x size: the shorter side resized, the centre cropped (what evaluating a folder
    at that size does to each file)."""
    out = np.empty((len(split), size, size, 3), np.uint8)
    for start in range(0, len(split), 4096):
        chunk = torch.from_numpy(split.images[start:start + 4096]).permute(0, 3, 1, 2)
        chunk = folders.fit_to(chunk, size)
        out[start:start + len(chunk)] = chunk.permute(0, 2, 3, 1).numpy()
    return ArrayDataset(out, split.labels, split.split, split.origin, split.files)


# Sec. 4.2: "a 45k/5k train/val split" of CIFAR's 50k training images chose the schedule.
PAPER_HOLDOUT = 5000


def holdout_size(labels: np.ndarray, requested: int) -> tuple[int, str]:
    """The hold-out to use: `requested` when every class can give an equal share and keep images to train on.

    The paper's 5,000 is too many for a small folder; then 10% of the smallest class is held out of every
    class, and the returned note says so. Any other size that does not fit is refused.
    """
    _, counts = np.unique(labels, return_counts=True)
    k, smallest = len(counts), int(counts.min())
    if requested % k == 0 and 0 < requested // k < smallest:
        return requested, ""
    if requested != PAPER_HOLDOUT:
        why = (f"does not split evenly over {k} classes" if requested % k else
               f"would leave a class of {smallest} images nothing to train on")
        raise UserError(f"--holdout {requested} {why}; choose a multiple of {k} below {k * smallest}")
    per_class = smallest // 10
    if per_class == 0:
        raise UserError(f"the smallest class has {smallest} images, too few to hold any out (10% rounds to 0); "
                        "give a val/ folder, or --val none")
    size = per_class * k
    return size, (f"the paper's {PAPER_HOLDOUT:,}-image hold-out does not fit {len(labels):,} images in {k} classes; "
                  f"{size:,} held out instead (10% of the smallest class, {per_class} per class)")


def validation_name(ds: Dataset, requested: str, holdout: int = PAPER_HOLDOUT) -> str:
    """The split that validates training: "auto" is the data's test split, else its val/ folder, else the
    hold-out (none when --holdout is 0)."""
    if requested == "auto":
        return next((s for s in ("test", "val") if s in ds.splits), "holdout" if holdout else "none")
    if requested in ("test", "val") and requested not in ds.splits:
        raise UserError(f"--val {requested}: {ds.source} has no {requested} split (it has {', '.join(ds.splits)})")
    return requested


def evaluation_name(ds: Dataset, requested: str, recorded: str | None = None, trained_on_it: bool = False) -> str:
    """The split `evaluate` reads: the one asked for; for "auto" all of a folder of class folders alone that the
    model did not train on (a test folder of one's own), else the split the checkpoint's run validated on, else
    the data's test or val/ split, else train (foreign weights never saw this data's hold-out)."""
    if requested == "all" and not ds.flat:
        raise UserError(f"--split all is a folder of class folders alone; {ds.source} has splits "
                        f"({', '.join(ds.splits)}): name one")
    if requested != "auto":
        return requested
    if ds.flat and not trained_on_it:
        return "all"
    if recorded in ("holdout", "test", "val"):
        return recorded
    return next(s for s in ("test", "val", "train") if s in ds.splits)


def split_for_training(ds: Dataset, val: str, holdout: int) -> tuple[ArrayDataset | folders.FolderIndex,
                                                                    ArrayDataset | folders.FolderIndex | None, dict]:
    """(train, validation or None, what split.json records): the one place a run's splits are chosen."""
    train = ds.splits["train"]
    if len(ds.classes) < 2:
        raise UserError(f"{ds.source} has {len(ds.classes)} class: a classifier needs at least 2 "
                        "(one folder per class)")
    info: dict = {"val": val}
    if val == "holdout":
        train_idx, val_idx, size, note = _holdout(ds, holdout)
        info.update(holdout=size, holdout_seed=0, val_indices=val_idx.tolist(),
                    val_sha1=hashlib.sha1(val_idx.tobytes()).hexdigest())
        if note:
            info["holdout_rule"] = note
        train, validation = train.subset(train_idx), train.subset(val_idx)
    else:
        validation = ds.splits.get(val)
    info.update(train_images=len(train), val_images=len(validation) if validation is not None else 0,
                data_sha1=content_digest(ds.splits["train"]))
    return train, validation, info


def recorded_training_split(ds: Dataset, recorded: dict) -> ArrayDataset | folders.FolderIndex:
    """The images a run trained on, from what its split.json records (split_for_training's `info`): the training
    split less the hold-out it names; refused where the count differs from the one recorded (other data)."""
    train = ds.splits["train"]
    held_out = recorded.get("val_indices") if recorded.get("val") == "holdout" else None
    if held_out:
        keep = np.ones(len(train), dtype=bool)
        keep[np.asarray(held_out, dtype=np.int64)] = False
        train = train.subset(np.flatnonzero(keep))
    if recorded.get("train_images") not in (None, len(train)):
        raise UserError(f"{ds.source}: the run trained on {recorded['train_images']:,} images, this data gives "
                        f"{len(train):,}: not the data the run trained on")
    return train


def content_digest(split: ArrayDataset | folders.FolderIndex) -> str:
    """What a resumed run checks it reads the images it trained on: the pixels and labels of in-memory data
    (sha1 of 150 MB: 0.3 s), or each file's path under the root and size for a folder (reading ImageNet's
    140 GB at every start would cost more than a resume saves)."""
    h = hashlib.sha1()
    if isinstance(split, ArrayDataset):
        h.update(np.ascontiguousarray(split.images).data)
        h.update(np.ascontiguousarray(split.labels, dtype=np.int64).data)
    else:
        for rel, size, _ in split.stats or [(str(p.relative_to(split.root)), 0, 0) for p in split.paths]:
            h.update(f"{rel}\0{size}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def _holdout(ds: Dataset, requested: int) -> tuple[np.ndarray, np.ndarray, int, str]:
    """(train indices, hold-out indices, hold-out size, the rule's note): the same for training and evaluate."""
    train = ds.splits["train"]
    if not isinstance(train, ArrayDataset):
        raise UserError("the hold-out split needs in-memory (small-image) data; give a val/ folder")
    size, note = holdout_size(train.labels, requested)
    return (*holdout_split(train.labels, size, seed=0), size, note)


def select_split(ds: Dataset, split: str, holdout: int = PAPER_HOLDOUT) -> ArrayDataset | folders.FolderIndex:
    """A named split, or "holdout": the fixed stratified hold-out of train that training validates on."""
    if split == "holdout":
        held_out = _holdout(ds, holdout)[1]  # first: it refuses folder data, which has no subsets
        return ds.splits["train"].subset(held_out)
    if split == "all":
        return ds.splits["train"]  # a flat folder's one split, every image of it
    if split not in ds.splits:
        raise UserError(f"split {split!r}: {ds.source} has only {', '.join(ds.splits)}")
    return ds.splits[split]


def channel_stats(images: np.ndarray, limit: int = 10000) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images scaled to [0, 1], over an evenly strided sample of `limit`."""
    x = images[:: max(1, len(images) // limit)].reshape(-1, images.shape[-1]).astype(np.float64) / 255.0
    return x.mean(0).tolist(), x.std(0).tolist()
