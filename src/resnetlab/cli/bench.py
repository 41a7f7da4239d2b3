"""`resnetlab bench`: images/s of resnetlab against the standard PyTorch loop, measured in the same run.

The baseline is the loop CIFAR reproductions write: torchvision transforms on PIL images in a
DataLoader with workers, fp32 eager, SGD. `--what pipeline` times the input pipelines alone.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from resnetlab.cli.main import Parser
from resnetlab.data import DeviceLoader, Normalization, open_dataset
from resnetlab.engine.config import resolve
from resnetlab.engine.trainer import Trainer, resolve_device
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


def _rate(fn, steps: int, batch: int, device: torch.device) -> float:
    fn(0)  # warm-up (workers, allocator, kernels)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(1, steps + 1):
        fn(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - start)


def baseline_loader(images, labels, batch: int, workers: int):
    loader = DataLoader(PILImages(images, labels), batch_size=batch, shuffle=True, num_workers=workers,
                        drop_last=True, persistent_workers=workers > 0)
    while True:
        yield from loader


def bench(model_name: str, data: str, steps: int, device: torch.device, workers: int, what: str) -> dict:
    ds = open_dataset(data)
    train = ds.splits["train"]
    images, labels, batch = train.images, train.labels, 128
    result = {"model": model_name, "what": what, "device": str(device), "batch": batch, "steps": steps,
              "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU",
              "torch": torch.__version__, "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d")}
    it = baseline_loader(images, labels, batch, workers)
    if what == "pipeline":
        norm = Normalization.fit("channel", images[:5000])
        ours = DeviceLoader(images, labels, batch, device, norm, augment=True)
        result["baseline_images_per_s"] = _rate(lambda i: [t.to(device) for t in next(it)], steps, batch, device)
        result["resnetlab_images_per_s"] = _rate(lambda i: ours.batch(i), steps, batch, device)
    else:
        model = create_model(model_name).to(device)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)

        def baseline_step(_i: int) -> None:
            x, y = next(it)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss.item()  # the usual per-step logging sync

        result["baseline_images_per_s"] = _rate(baseline_step, steps, batch, device)
        cfg = resolve("cifar-paper", {}, {"model": model_name, "data": data, "out": "", "device": device.type,
                                           "val": "none", "holdout": 0})
        result["resnetlab_images_per_s"] = _trainer_rate(cfg, device, steps)
    result["ratio"] = result["resnetlab_images_per_s"] / result["baseline_images_per_s"]
    return result


def _trainer_rate(cfg, device: torch.device, steps: int) -> float:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        cfg.out = tmp
        trainer = Trainer(cfg)

        def step(i: int) -> None:  # the trainer's own data path and step, timed without its bookkeeping
            x, y = trainer.data.train.batch(i)
            trainer.step(x, y, 0.1)

        return _rate(step, steps, cfg.batch_size, device)


def build_parser() -> Parser:
    p = Parser(prog="resnetlab bench", description=__doc__.strip().splitlines()[0].split(": ", 1)[1])
    p.add_argument("--model", default="cifar_resnet20")
    p.add_argument("--data", default="../shared/data/cifar10-jpeg", help="CIFAR-style dataset")
    p.add_argument("--what", choices=["train", "pipeline"], default="train")
    p.add_argument("--steps", type=int, default=30, help="timed steps of batch 128 (after one warm-up step)")
    p.add_argument("--workers", type=int, default=4, help="baseline DataLoader workers")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--save", action="store_true", help="append the result to benchmarks/results/<device>.jsonl")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.steps <= 0:
        raise UserError("--steps must be positive")
    device = resolve_device(args.device)
    r = bench(args.model, args.data, args.steps, device, args.workers, args.what)
    print(f"{r['what']} {r['model'] if r['what'] == 'train' else ''} on {r['device_name']} ({r['device']}, torch {r['torch']}): "
          f"resnetlab {r['resnetlab_images_per_s']:,.0f} images/s, baseline {r['baseline_images_per_s']:,.0f} "
          f"images/s, ratio {r['ratio']:.2f}x")
    if args.save:
        out = Path("benchmarks/results") / f"{r['device_name'].replace(' ', '_').replace('/', '_') or 'cpu'}.jsonl"
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "a") as f:
            f.write(json.dumps(r) + "\n")
        print(f"appended to {out}")
    return 0
