"""A run's data: training batches, validation batches, and what a checkpoint must remember about them."""

from __future__ import annotations

from pathlib import Path

import PIL
import torch

from resnetlab.data.batch_transforms import BatchTransforms
from resnetlab.data.image_policies import ImageAugment
from resnetlab.data import DeviceLoader, Normalization, open_dataset
from resnetlab.data.batch import Batch
from resnetlab.data.arrays import ArrayDataset
from resnetlab.data.imagenet import StreamLoader, eval_loader
from resnetlab.data.sources import SMALL_IMAGE, split_for_training, validation_name
from resnetlab.errors import UserError
from resnetlab.runtime import distributed, messages
from resnetlab.training.config import TrainConfig
from resnetlab.training.input_size import size_warning, stream_input, wanted_size
from resnetlab.training.schedules import SCHEDULES

# Measured on an Intel Xeon with AMX, 2 cores, fp32: ResNet-20 evaluates 2,735 images/s at batches of 250 and
# 1,387 at 1,000 (ResNet-56: 912 vs 601); 128 is as fast as 250. A batch of 1,000 holds 65 MB of first-stage
# activations, past the caches; fewer launches no longer pay beyond 250.
EVAL_BATCH_IN_MEMORY = 250
EVAL_BATCH_STREAMED = 100  # decoded 224x224 crops: a batch a DataLoader worker fills quickly


def decoder() -> str:
    """Pillow, or Pillow-SIMD (a drop-in build with faster JPEG decoding and resizing) when installed."""
    simd = ".post" in PIL.__version__  # Pillow-SIMD's versions are Pillow's with a .postN suffix
    return f"Pillow-SIMD {PIL.__version__}" if simd else f"Pillow {PIL.__version__} (Pillow-SIMD, if installed, is faster)"


class Data:
    def __init__(self, cfg: TrainConfig, device: torch.device, dist: distributed.DistInfo, channels_last: bool,
                 weights_normalization: Normalization | None = None):
        """`weights_normalization`: what --normalization weights means (the --weights' own)."""
        size = wanted_size(cfg.model, cfg.img_size)
        with distributed.local_main_first(dist):  # one process per node downloads, extracts, decodes
            ds = open_dataset(cfg.data, skip_corrupt=cfg.skip_corrupt, size=size)
        self.classes = ds.classes
        train, val, self.split = split_for_training(ds, validation_name(ds, cfg.val, cfg.holdout), cfg.holdout)
        if self.split.get("holdout_rule") and dist.is_main:
            messages.say(f"note: {self.split['holdout_rule']}")
        if cfg.batch_size % dist.world_size:
            raise UserError(f"--batch-size {cfg.batch_size} does not split evenly over {dist.world_size} processes")
        if cfg.batch_size > len(train):
            raise UserError(f"--batch-size {cfg.batch_size} is larger than the {len(train):,} training images")
        augment = ImageAugment(cfg.auto_augment, cfg.random_erase, small=isinstance(train, ArrayDataset)
                               and int(train.images.shape[1]) <= 64)
        self.transforms = BatchTransforms(cfg, len(ds.classes), dist.rank)  # --mixup-alpha, --cutmix-alpha
        if isinstance(train, ArrayDataset):
            self.normalization = (Normalization.imagenet() if cfg.normalization == "imagenet" else
                                  weights_normalization if cfg.normalization == "weights" else
                                  Normalization.fit(cfg.normalization, train.images))
            _check_mean_fits(self.normalization, int(train.images.shape[1]))
            self.input = {"size": int(train.images.shape[1]), "resize": int(train.images.shape[1])}
            self.train = DeviceLoader(train.images, train.labels, cfg.batch_size, device, self.normalization,
                                      augment=True, seed=cfg.seed, rank=dist.rank, world_size=dist.world_size,
                                      channels_last=channels_last, crop_scale=cfg.crop_scale,
                                      image_augment=augment)
            self.val = (DeviceLoader(val.images, val.labels, EVAL_BATCH_IN_MEMORY, device, self.normalization,
                                     augment=False) if val is not None else None)
        else:
            self.input = stream_input(size)
            self.normalization = self._streamed_normalization(cfg, weights_normalization)
            if dist.is_main:
                messages.say(f"image folders: {decoder()} decodes in {cfg.workers} DataLoader worker(s) per process; "
                             "the progress line's `data` share says when they cannot keep up")
            self.train = StreamLoader(train, cfg.batch_size, device, seed=cfg.seed, workers=cfg.workers,
                                      rank=dist.rank, world_size=dist.world_size, channels_last=channels_last,
                                      crop=self.input["size"], normalization=self.normalization,
                                      crop_scale=cfg.crop_scale, image_augment=augment)
            self.val = (eval_loader(val, EVAL_BATCH_STREAMED, cfg.workers, crop=self.input["size"],
                                    resize=self.input["resize"], normalize=self.normalization)
                        if val is not None else None)
        if SCHEDULES[cfg.schedule].plateau and self.val is None:
            raise UserError("--schedule plateau lowers the lr when the validation error stops improving, and this "
                            f"run has no validation split (--val {cfg.val}"
                            f"{', no val/ or test/ split and --holdout 0' if cfg.val == 'auto' else ''}): give it one "
                            "(--val holdout --holdout N, or a val/ folder), or use --schedule step --milestones ...")
        warning = size_warning(cfg.model, self.input["size"])
        if warning and dist.is_main:
            messages.say(warning)

    def batch(self, step: int) -> Batch:
        """The training batch of step `step`: the loader's, through the run's batch transforms."""
        return self.transforms(self.train.batch(step), step)

    def describe_input(self) -> str:
        size, resize = self.input["size"], self.input["resize"]
        how = "in memory" if isinstance(self.train, DeviceLoader) else f"cropped from photos resized to {resize} px"
        return f"input {size}x{size} ({how}; --img-size sets it)"

    def _streamed_normalization(self, cfg: TrainConfig, weights_normalization: Normalization | None) -> Normalization:
        """ImageNet's mean/std, or the --weights' own where it is per channel or fits the input size. The
        statistics of a folder of large images (Sec. 3.4's per-pixel mean) are not computed: refused rather than
        silently replaced."""
        if cfg.normalization == "weights":
            _check_mean_fits(weights_normalization, self.input["size"])
            return weights_normalization
        if cfg.normalization != "imagenet":
            raise UserError(f"--normalization {cfg.normalization} is computed for images up to {SMALL_IMAGE} px "
                            f"(decoded into memory); at --img-size {self.input['size']} the images are streamed: "
                            "give --normalization imagenet (as --recipe imagenet-paper does), or --img-size "
                            f"{SMALL_IMAGE} or less")
        return Normalization.imagenet()

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



def _check_mean_fits(normalization: Normalization, size: int) -> None:
    shape = tuple(normalization.mean.shape[1:])
    if shape not in ((1, 1), (size, size)):
        raise UserError(f"the --weights' per-pixel mean is {shape[0]}x{shape[1]}, the input {size}x{size}: give "
                        f"--img-size {shape[0]} (the size they were trained at), or --normalization imagenet or "
                        "channel")
