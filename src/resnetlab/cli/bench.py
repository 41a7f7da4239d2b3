"""`resnetlab bench`: resnetlab's speed, measured against a baseline or the machine's ceiling in the same run.

--what train:    resnetlab's trainer step and device pipeline, on the fast path `train` would choose for a
                 run of the paper's length and eager, vs the loop CIFAR reproductions write (torchvision
                 transforms on PIL images, DataLoader with workers, fp32 eager, SGD); compile time apart.
--what pipeline: the input pipelines alone (batched tensor ops on the device vs per-sample transforms).
--what imagenet: ResNet-50 at 224x224, batch 256, synthetic input: resnetlab's step vs torchvision's model
                 in eager bf16 channels_last.
--what roofline: this CPU's peak (matmul and 3x3 convolution, in each precision it computes natively), each
                 network's step as a fraction of it (FLOPs counted), as one process per core, where its time
                 goes, and the trainer's step on its fast path. --save DIR keeps one table per CPU class.
--what folders:  `resnetlab train` on an image folder (eager and compiled) against timm's `train.py` (--timm-train,
                 from a checkout of timm's repository), each in its own process: the same folder, model
                 (default resnet18), batch, precision, layout and workers, images/s after a warm-up;
                 --fast off|on: resnetlab eager or compiled only (auto: both).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import torch

from resnetlab.bench import Options, folders, report, roofline, throughput
from resnetlab.cli.main import Parser
from resnetlab.cli.options import add_device
from resnetlab.errors import UserError
from resnetlab.runtime.devices import cpu_isa, resolve_device
from resnetlab.training import fastpath
from resnetlab.training.config import CHOICES

ROOFLINE_MODELS = "cifar_resnet20,cifar_resnet56,cifar_resnet110"


def build_parser() -> Parser:
    p = Parser(prog="resnetlab bench", description=__doc__.strip().splitlines()[0].split(": ", 1)[1],
               epilog=__doc__.strip().split("\n", 2)[2])
    p.add_argument("--what", choices=["train", "pipeline", "imagenet", "roofline", "folders"], default="train")
    p.add_argument("--model", help=f"network (default cifar_resnet20; --what roofline: comma-separated, default "
                                   f"{ROOFLINE_MODELS})")
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
    p.add_argument("--min-seconds", type=float, default=2.0,
                   help="--what roofline: seconds each step timing lasts (the peaks a quarter of it)")
    p.add_argument("--no-trainer", action="store_true",
                   help="--what roofline: leave out the trainer's step (it compiles, a minute per network)")
    p.add_argument("--timm-train", metavar="PATH", type=Path,
                   help="--what folders: timm's train.py (from a checkout of timm's repository; not in its wheel)")
    p.add_argument("--batch-size", type=int, default=32, help="--what folders: the batch of both trainers")
    p.add_argument("--img-size", type=int, default=224, help="--what folders: the training crop of both trainers")
    p.add_argument("--save", metavar="DIR", help="append the result to DIR/<device name>.jsonl "
                   "(--what roofline: DIR/roofline-<CPU class>.jsonl, and rewrite DIR/roofline.md)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.steps <= 0 or args.seeds <= 0:
        raise UserError("--steps and --seeds must be positive")
    device = resolve_device(args.device)
    name = fastpath.device_name(device)
    if args.what != "roofline":
        args.model = args.model or ("resnet18" if args.what == "folders" else "cifar_resnet20")
    result = {"what": args.what, "model": "resnet50" if args.what == "imagenet" else args.model, "seeds": args.seeds,
              "amp": args.amp, "channels_last": args.channels_last, "fast": args.fast, "compile": args.compile,
              "steps": args.steps,
              "device": str(device), "device_name": name, "torch": torch.__version__,
              "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d %H:%M")}
    if args.what == "roofline":
        return main_roofline(args, device, result)
    if args.what == "folders":
        return main_folders(args, result)
    opts = Options(what=args.what, model=args.model, data=args.data, steps=args.steps, workers=args.workers,
                   amp=args.amp, channels_last=args.channels_last, fast=args.fast, compile=args.compile,
                   seeds=args.seeds)
    result.update(throughput(opts, device))
    print(f"{args.what} {result['model']} on {name} ({device}, torch {torch.__version__}, seeds {args.seeds}): "
          f"resnetlab {result['resnetlab_images_per_s']:,.0f} images/s, baseline "
          f"{result['baseline_images_per_s']:,.0f} images/s, ratio {result['ratio']:.2f}x")
    if "eager_images_per_s" in result:
        print(f"  fast path: {result['fast_path']}; compiling took {result['compile_seconds']:.1f} s (not in images/s)\n"
              f"  resnetlab {result['eager_path']}: {result['eager_images_per_s']:,.0f} images/s, "
              f"ratio {result['eager_ratio']:.2f}x")
    save(args.save, result)
    return 0


def save(directory: str | None, result: dict) -> None:
    """Append the result to DIR/<device name>.jsonl."""
    if directory:
        out = Path(directory) / f"{re.sub(r'[^A-Za-z0-9.-]+', '_', result['device_name']).strip('_')}.jsonl"
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "a") as f:
            f.write(json.dumps(result) + "\n")
        print(f"appended to {out}")


def main_folders(args, result: dict) -> int:
    fastest = fastpath.native_precisions(torch.device("cpu"))[0]  # the rule `train --amp auto` follows
    amp = args.amp if args.amp != "auto" else ("off" if fastest is None else fastpath.PRECISION_NAMES[fastest])
    if args.batch_size <= 0 or args.img_size <= 0:
        raise UserError("--batch-size and --img-size must be positive")
    bench = folders.FolderBench(data=Path(args.data), model=args.model, batch_size=args.batch_size,
                                iters=folders.WARMUP + args.steps, workers=args.workers, amp=amp,
                                img_size=args.img_size, timm_train=args.timm_train,
                                trainers={"off": ("resnetlab", "timm"), "on": ("resnetlab-compiled", "timm")}.get(
                                    args.fast, ("resnetlab", "resnetlab-compiled", "timm")))
    if bench.timm_train is None:
        print("  timm: not measured (give --timm-train PATH: timm's train.py from a checkout of its repository)")
    print(f"folders {args.model} on {result['device_name']}: {args.data}, batch {args.batch_size}, {args.img_size} px, "
          f"{amp}, channels_last, {args.workers} workers, {args.steps} timed iterations after {folders.WARMUP}")
    result.update(amp=amp, batch_size=args.batch_size, img_size=args.img_size, data=args.data, **folders.measure(bench))
    for name, ratio in result.get("ratio_to_timm", {}).items():
        print(f"  {name}: {ratio:.2f}x timm's train.py")
    save(args.save, result)
    return 0


def main_roofline(args, device: torch.device, result: dict) -> int:
    if device.type != "cpu":
        raise UserError("--what roofline measures the CPU (give --device cpu); on a GPU use benchmarks/gpu_check.sh")
    models = [m.strip() for m in (args.model or ROOFLINE_MODELS).split(",") if m.strip()]
    result["isa"] = cpu_isa()
    print(f"roofline on {result['device_name']}, torch {torch.__version__}")
    if args.min_seconds <= 0:
        raise UserError("--min-seconds must be positive")
    result.update(roofline(models, data=None if args.no_trainer else args.data, min_seconds=args.min_seconds))
    if args.save:
        jsonl, markdown = report.save(result, Path(args.save))
        print(f"appended to {jsonl}; the table of every CPU class met: {markdown}")
    return 0
