"""A run's data: training batches, validation batches, and what a checkpoint must remember about them."""

from __future__ import annotations

from pathlib import Path

import PIL
import torch

from resnetlab.data import DeviceLoader, Normalization, open_dataset
from resnetlab.data.arrays import ArrayDataset
from resnetlab.data.imagenet import StreamLoader, eval_loader
from resnetlab.data.sources import split_for_training, validation_name
from resnetlab.errors import UserError
from resnetlab.runtime import distributed, messages
from resnetlab.training.config import TrainConfig

EVAL_BATCH_IN_MEMORY = 1000  # evaluation holds no gradients: large batches, fewer launches
EVAL_BATCH_STREAMED = 100  # decoded 224x224 crops: a batch a DataLoader worker fills quickly


def decoder() -> str:
    """Pillow, or Pillow-SIMD (a drop-in build with faster JPEG decoding and resizing) when installed."""
    simd = ".post" in PIL.__version__  # Pillow-SIMD's versions are Pillow's with a .postN suffix
    return f"Pillow-SIMD {PIL.__version__}" if simd else f"Pillow {PIL.__version__} (Pillow-SIMD, if installed, is faster)"


class Data:
    def __init__(self, cfg: TrainConfig, device: torch.device, dist: distributed.DistInfo, channels_last: bool,
                 weights_normalization: Normalization | None = None):
        """`weights_normalization`: what --normalization weights means (the --weights' own)."""
        with distributed.local_main_first(dist):  # one process per node downloads, extracts, decodes
            ds = open_dataset(cfg.data, skip_corrupt=cfg.skip_corrupt)
        self.classes = ds.classes
        train, val, self.split = split_for_training(ds, validation_name(ds, cfg.val, cfg.holdout), cfg.holdout)
        if self.split.get("holdout_rule") and dist.is_main:
            messages.say(f"note: {self.split['holdout_rule']}")
        if cfg.batch_size % dist.world_size:
            raise UserError(f"--batch-size {cfg.batch_size} does not split evenly over {dist.world_size} processes")
        if cfg.batch_size > len(train):
            raise UserError(f"--batch-size {cfg.batch_size} is larger than the {len(train):,} training images")
        if isinstance(train, ArrayDataset):
            self.normalization = (Normalization.imagenet() if cfg.normalization == "imagenet" else
                                  weights_normalization if cfg.normalization == "weights" else
                                  Normalization.fit(cfg.normalization, train.images))
            if tuple(self.normalization.mean.shape[1:]) not in ((1, 1), tuple(train.images.shape[1:3])):
                raise UserError(f"--weights' per-pixel mean is {tuple(self.normalization.mean.shape[1:])}, the images "
                                f"{tuple(train.images.shape[1:3])}: give --normalization pixel-mean or channel")
            self.input = {"size": int(train.images.shape[1]), "resize": int(train.images.shape[1])}
            self.train = DeviceLoader(train.images, train.labels, cfg.batch_size, device, self.normalization,
                                      augment=True, seed=cfg.seed, rank=dist.rank, world_size=dist.world_size,
                                      channels_last=channels_last)
            self.val = (DeviceLoader(val.images, val.labels, EVAL_BATCH_IN_MEMORY, device, self.normalization,
                                     augment=False) if val is not None else None)
        else:
            if cfg.normalization not in ("imagenet", "weights") or (
                    cfg.normalization == "weights" and weights_normalization.kind != "imagenet"):
                # The per-pixel mean of a folder of large images (Sec. 3.4) is not computed yet: refuse
                # rather than silently train with another normalization.
                raise UserError(f"--normalization {cfg.normalization} is supported for in-memory (small-image) "
                                "data only; image folders use --normalization imagenet (as --recipe imagenet-paper "
                                "does)")
            self.normalization = Normalization.imagenet()
            self.input = {"size": 224, "resize": 256}
            if dist.is_main:
                messages.say(f"image folders: {decoder()} decodes in {cfg.workers} DataLoader worker(s) per process; "
                             "the progress line's `data` share says when they cannot keep up")
            self.train = StreamLoader(train, cfg.batch_size, device, seed=cfg.seed, workers=cfg.workers,
                                      rank=dist.rank, world_size=dist.world_size, channels_last=channels_last)
            self.val = eval_loader(val, EVAL_BATCH_STREAMED, cfg.workers) if val is not None else None

    def check_same(self, ckpt: dict, given: str, run_dir: Path) -> None:
        """A resumed run reads the data it trained on, wherever that now lies: the same classes, split sizes,
        hold-out (by its digest) and images (by theirs)."""
        new = {k: v for k, v in self.split.items() if k != "val_indices"}
        old = ckpt.get("split") or {}
        keys = ("val", "train_images", "val_images", "holdout", "val_sha1", "data_sha1")
        differing = [k for k in keys if k in old and old[k] != new.get(k)]
        if ckpt.get("classes") not in (None, self.classes):
            differing.insert(0, "classes")
        if not differing:
            return
        key = differing[0]
        if key == "data_sha1":
            raise UserError(f"--data {given} has the classes and split sizes this run trained on but other images "
                            f"(their digest differs); give the dataset it trained on with --resume {run_dir} --data DATA")
        was, now = (ckpt["classes"], self.classes) if key == "classes" else (old[key], new.get(key))
        raise UserError(f"--data {given} is not the dataset this run trained on ({key}: {was} then, {now} here); "
                        f"give its folder with --resume {run_dir} --data DATA")

