"""`resnetlab bench`: images/s of resnetlab against the standard PyTorch loop, measured in the same run.

--what train:    resnetlab's trainer step and device pipeline, on the fast path `train` would choose for a
                 run of the paper's length and eager, vs the loop CIFAR reproductions write (torchvision
                 transforms on PIL images, DataLoader with workers, fp32 eager, SGD); compile time apart.
--what pipeline: the input pipelines alone (batched tensor ops on the device vs per-sample transforms).
--what imagenet: ResNet-50 at 224x224, batch 256, synthetic input: resnetlab's step vs torchvision's model
                 in eager bf16 channels_last.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from resnetlab.cli.main import Parser
from resnetlab.cli.options import add_device
from resnetlab.data import DeviceLoader, Normalization, open_dataset
from resnetlab.engine import fastpath
from resnetlab.engine.config import CHOICES, resolve
from resnetlab.engine.devices import resolve_device
from resnetlab.engine.trainer import prepare, seed_configs
from resnetlab.errors import UserError
from resnetlab.models import create_model


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


def trainer_rate(args, device: torch.device, fast: str) -> dict:
    """The trainer's own data path and step (one run, or --seeds K together), without its bookkeeping, on
    the fast path `fast` would choose for a run of the paper's length; the first step (which compiles,
    where the step is compiled) is timed apart."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = resolve("cifar-paper", {}, {"model": args.model, "data": args.data, "out": tmp, "device": device.type,
                                           "val": "none", "amp": args.amp, "channels_last": args.channels_last,
                                           "compile": args.compile, "fast": fast})
        runs, stack = prepare(seed_configs(cfg, args.seeds) if args.seeds > 1 else [cfg])
        stack.net.train()

        def step(i: int) -> None:
            stack.step([r.data.train.batch(i) for r in runs], [0.1] * len(runs))

        start = time.perf_counter()
        step(0)
        if device.type == "cuda":
            torch.cuda.synchronize()
        first = time.perf_counter() - start
        images_per_s = rate(step, args.steps, cfg.batch_size * len(runs), device, warmup=2)
        for r in runs:
            r.run_dir.release()
        # The step compiles in prepare when the self-check ran it, else at the first step.
        compile_seconds = runs[0].state.compile_seconds + (first if stack.path.compiled else 0.0)
        return {"images_per_s": images_per_s, "compile_seconds": compile_seconds, "path": stack.path.why,
                "self_check": stack.self_check}


def bench_cifar(args, device: torch.device) -> dict:
    train = open_dataset(args.data).splits["train"]
    batches = baseline_batches(train.images, train.labels, 128, args.workers)
    if args.what == "pipeline":
        ours = DeviceLoader(train.images, train.labels, 128, device, Normalization.fit("channel", train.images[:5000]),
                            augment=True)
        return {"baseline_images_per_s": rate(lambda i: [t.to(device) for t in next(batches)], args.steps, 128, device),
                "resnetlab_images_per_s": rate(ours.batch, args.steps, 128, device)}
    base = rate(baseline_step(create_model(args.model).to(device), batches, device), args.steps, 128, device)
    eager = trainer_rate(args, device, "off")
    chosen = trainer_rate(args, device, args.fast)
    return {"baseline_images_per_s": base, "eager_images_per_s": eager["images_per_s"],
            "resnetlab_images_per_s": chosen["images_per_s"], "compile_seconds": chosen["compile_seconds"],
            "fast_path": chosen["path"], "eager_path": eager["path"], "self_check": chosen["self_check"]}


def bench_imagenet(args, device: torch.device) -> dict:
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
    path = fastpath.choose(resolve("imagenet-paper", {}, {"fast": args.fast, "compile": args.compile}), device)
    if path.compiled:
        ours = torch.compile(ours, mode=None if path.compile_mode == "default" else path.compile_mode)
    return {"baseline_images_per_s": rate(step_fn(tv), args.steps, batch, device),
            "resnetlab_images_per_s": rate(step_fn(ours), args.steps, batch, device)}


def build_parser() -> Parser:
    p = Parser(prog="resnetlab bench", description=__doc__.strip().splitlines()[0].split(": ", 1)[1],
               epilog=__doc__.strip().split("\n", 2)[2])
    p.add_argument("--what", choices=["train", "pipeline", "imagenet"], default="train")
    p.add_argument("--model", default="cifar_resnet20")
    p.add_argument("--data", default="../shared/data/cifar10-jpeg", help="CIFAR-style dataset")
    p.add_argument("--steps", type=int, default=30, help="timed steps (after 3 warm-up steps)")
    p.add_argument("--workers", type=int, default=2, help="baseline DataLoader workers")
    add_device(p)
    p.add_argument("--amp", default="auto", choices=CHOICES["amp"], help="resnetlab's precision")
    p.add_argument("--channels-last", default="on", choices=CHOICES["channels_last"])
    p.add_argument("--fast", default="auto", choices=CHOICES["fast"],
                   help="resnetlab's fast path, as `train --fast` chooses it for a run of the paper's length")
    p.add_argument("--compile", default="default", choices=CHOICES["compile"],
                   help="torch.compile mode when the fast path compiles (also for --what imagenet); off: never")
    p.add_argument("--seeds", type=int, default=1, help="train K seeds together (images/s counts all K)")
    p.add_argument("--save", metavar="DIR", help="append the result to DIR/<device name>.jsonl")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.steps <= 0 or args.seeds <= 0:
        raise UserError("--steps and --seeds must be positive")
    device = resolve_device(args.device)
    name = fastpath.device_name(device)
    result = {"what": args.what, "model": "resnet50" if args.what == "imagenet" else args.model, "seeds": args.seeds,
              "amp": args.amp, "channels_last": args.channels_last, "fast": args.fast, "compile": args.compile,
              "steps": args.steps,
              "device": str(device), "device_name": name, "torch": torch.__version__,
              "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d %H:%M")}
    result.update(bench_imagenet(args, device) if args.what == "imagenet" else bench_cifar(args, device))
    result["ratio"] = result["resnetlab_images_per_s"] / result["baseline_images_per_s"]
    print(f"{args.what} {result['model']} on {name} ({device}, torch {torch.__version__}, seeds {args.seeds}): "
          f"resnetlab {result['resnetlab_images_per_s']:,.0f} images/s, baseline "
          f"{result['baseline_images_per_s']:,.0f} images/s, ratio {result['ratio']:.2f}x")
    if "eager_images_per_s" in result:
        result["eager_ratio"] = result["eager_images_per_s"] / result["baseline_images_per_s"]
        print(f"  fast path: {result['fast_path']}; compiling took {result['compile_seconds']:.1f} s (not in images/s)\n"
              f"  resnetlab {result['eager_path']}: {result['eager_images_per_s']:,.0f} images/s, "
              f"ratio {result['eager_ratio']:.2f}x")
    if args.save:
        out = Path(args.save) / f"{re.sub(r'[^A-Za-z0-9.-]+', '_', name).strip('_')}.jsonl"
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "a") as f:
            f.write(json.dumps(result) + "\n")
        print(f"appended to {out}")
    return 0
