"""Training throughput of resnetlab against the standard PyTorch loop, measured in the same run.

train:    resnetlab's trainer step and device pipeline, on the fast path `train` would choose for a run of the
          paper's length and eager, vs the loop CIFAR reproductions write (torchvision transforms on PIL images,
          DataLoader with workers, fp32 eager, SGD); compile time apart.
pipeline: the input pipelines alone (batched tensor ops on the device vs per-sample transforms).
imagenet: ResNet-50 at 224x224, batch 256, synthetic input: resnetlab's step vs torchvision's model in eager
          bf16 channels_last.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from resnetlab.data import DeviceLoader, Normalization, open_dataset
from resnetlab.models import create_model
from resnetlab.training import fastpath, seed_configs
from resnetlab.training.config import configure
from resnetlab.training.loop import prepare


@dataclass(frozen=True)
class Options:
    """What to measure, as plain values (the CLI's flags)."""
    what: str = "train"  # train, pipeline or imagenet
    model: str = "cifar_resnet20"
    data: str = "../shared/data/cifar10-jpeg"
    steps: int = 30
    workers: int = 2
    amp: str = "auto"
    channels_last: str = "on"
    fast: str = "auto"
    compile: str = "default"
    seeds: int = 1


class PILImages(Dataset):
    """The baseline's per-sample pipeline: a PIL image, torchvision transforms, one sample at a time."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images, labels
        self.transform = v2.Compose([v2.PILToTensor(), v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(),
                                     v2.ToDtype(torch.float32, scale=True),
                                     v2.Normalize((0.49, 0.48, 0.45), (0.25, 0.24, 0.26))])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def rate(fn: Callable[[int], object], steps: int, images_per_step: int, device: torch.device, warmup: int = 3) -> float:
    """Images per second over `steps` calls of fn(i), after `warmup` untimed calls."""
    for i in range(warmup):
        fn(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(warmup, warmup + steps):
        fn(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * images_per_step / (time.perf_counter() - start)


def baseline_batches(images: np.ndarray, labels: np.ndarray, batch: int, workers: int):
    loader = DataLoader(PILImages(images, labels), batch_size=batch, shuffle=True, num_workers=workers,
                        drop_last=True, persistent_workers=workers > 0)
    while True:
        yield from loader


def baseline_step(model: torch.nn.Module, batches, device: torch.device) -> Callable[[int], None]:
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)

    def step(_i: int) -> None:
        x, y = next(batches)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()  # the usual per-step logging sync

    return step


def trainer_rate(opts: Options, device: torch.device, fast: str) -> dict:
    """The trainer's own data path and step (one run, or --seeds K together), without its bookkeeping, on
    the fast path `fast` would choose for a run of the paper's length; the first step (which compiles,
    where the step is compiled) is timed apart."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = configure("cifar-paper", model=opts.model, data=opts.data, out=tmp, device=device.type, val="none",
                        amp=opts.amp, channels_last=opts.channels_last, compile=opts.compile, fast=fast)
        runs, train_step = prepare(seed_configs(cfg, opts.seeds) if opts.seeds > 1 else [cfg])
        train_step.net.train()

        def step(i: int) -> None:
            train_step([r.data.batch(i) for r in runs], [0.1] * len(runs))

        start = time.perf_counter()
        step(0)
        if device.type == "cuda":
            torch.cuda.synchronize()
        first = time.perf_counter() - start
        images_per_s = rate(step, opts.steps, cfg.batch_size * len(runs), device, warmup=2)
        for r in runs:
            r.run_dir.release()
        # The step compiles in prepare when the self-check ran it, else at the first step.
        compile_seconds = runs[0].state.compile_seconds + (first if train_step.path.compiled else 0.0)
        return {"images_per_s": images_per_s, "compile_seconds": compile_seconds, "path": train_step.path.why,
                "precision": train_step.path.precision, "mode": train_step.path.mode, "self_check": train_step.self_check}


def bench_cifar(opts: Options, device: torch.device) -> dict:
    train = open_dataset(opts.data).splits["train"]
    batches = baseline_batches(train.images, train.labels, 128, opts.workers)
    if opts.what == "pipeline":
        ours = DeviceLoader(train.images, train.labels, 128, device, Normalization.fit("channel", train.images[:5000]),
                            augment=True)
        return {"baseline_images_per_s": rate(lambda i: [t.to(device) for t in next(batches)], opts.steps, 128, device),
                "resnetlab_images_per_s": rate(ours.batch, opts.steps, 128, device)}
    base = rate(baseline_step(create_model(opts.model).to(device), batches, device), opts.steps, 128, device)
    eager = trainer_rate(opts, device, "off")
    chosen = trainer_rate(opts, device, opts.fast)
    return {"baseline_images_per_s": base, "eager_images_per_s": eager["images_per_s"],
            "resnetlab_images_per_s": chosen["images_per_s"], "compile_seconds": chosen["compile_seconds"],
            "fast_path": chosen["path"], "eager_path": eager["path"], "self_check": chosen["self_check"]}


def bench_imagenet(opts: Options, device: torch.device) -> dict:
    batch = 256
    x = torch.randn(batch, 3, 224, 224, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=device)
    dtype = torch.bfloat16

    def step_fn(model: torch.nn.Module) -> Callable[[int], None]:
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)

        def step(_i: int) -> None:
            with torch.autocast(device.type, dtype=dtype):
                loss = F.cross_entropy(model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return step

    tv = torchvision.models.resnet50().to(device, memory_format=torch.channels_last)
    ours = create_model("resnet50", style="torchvision").to(device, memory_format=torch.channels_last)
    path = fastpath.choose(configure("imagenet-paper", fast=opts.fast, compile=opts.compile), device)
    if path.compiled:
        ours = torch.compile(ours, mode=None if path.compile_mode == "default" else path.compile_mode)
    return {"baseline_images_per_s": rate(step_fn(tv), opts.steps, batch, device),
            "resnetlab_images_per_s": rate(step_fn(ours), opts.steps, batch, device)}


def throughput(opts: Options, device: torch.device) -> dict:
    """images/s of resnetlab and of the baseline (and resnetlab eager, for --what train), measured in one run."""
    result = bench_imagenet(opts, device) if opts.what == "imagenet" else bench_cifar(opts, device)
    result["ratio"] = result["resnetlab_images_per_s"] / result["baseline_images_per_s"]
    if "eager_images_per_s" in result:
        result["eager_ratio"] = result["eager_images_per_s"] / result["baseline_images_per_s"]
    return result
