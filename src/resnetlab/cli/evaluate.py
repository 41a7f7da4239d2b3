"""`resnetlab evaluate`: top-1/top-5 error, loss and image count of a model (or an ensemble) on a dataset split,
under one of the paper's testing protocols."""

from __future__ import annotations

import json
from dataclasses import fields

from resnetlab.cli.main import Parser
from resnetlab.cli.options import add_device, add_model_source, strict_json
from resnetlab.data.imagenet import PROTOCOLS
from resnetlab.inference.evaluation import Options, measure


def build_parser() -> Parser:
    p = Parser(prog="resnetlab evaluate", description=__doc__.strip().split(": ", 1)[1],
               epilog="examples: resnetlab evaluate --checkpoint runs/r20/best.pt --data ../shared/data/cifar10-jpeg\n"
                      "  resnetlab evaluate --model cifar_resnet56 --weights resnet56-4bfd9763.th --data DIR --split train\n"
                      "  resnetlab evaluate --checkpoint a/last.pt --checkpoint b/last.pt --data IMAGENET --protocol multiscale")
    add_model_source(p, ensemble=True)
    p.add_argument("--data", required=True, help="dataset folder, CIFAR tarball, or cifar10/cifar100")
    p.add_argument("--split", default="auto", choices=["auto", "all", "train", "val", "test", "holdout"],
                   help="auto: a folder of class folders alone (no train/val/test) is evaluated whole (all), unless "
                        "the model trained on it; else the run's validation split for a checkpoint, else test, val, "
                        "or train")
    p.add_argument("--protocol", default="center", choices=PROTOCOLS,
                   help="image-folder data: center (the 224 crop of the 256-resized image), 10-crop (Sec. 3.4), "
                        "multiscale (fully convolutional, shorter sides 224..640 with mirrors: Table 4)")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--workers", type=int, default=4, help="DataLoader workers for image-folder data")
    add_device(p)
    p.add_argument("--json", action="store_true", help="print JSON (with per-class accuracy and the confusion matrix)")
    p.add_argument("--plot", metavar="FILE.png", help="draw the confusion matrix with class names")
    p.add_argument("--save-predictions", metavar="FILE.csv",
                   help="one row per image: its file (or index), true class, top-k classes and probabilities")
    p.add_argument("--topk", type=int, default=5, help="classes per image in --save-predictions (default 5)")
    p.add_argument("--force", action="store_true", help="replace existing --plot/--save-predictions files "
                   "(never the checkpoint, weights or dataset)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    names = [f.name for f in fields(Options) if f.name != "checkpoints"]
    result = measure(Options(**{n: getattr(args, n) for n in names}, checkpoints=tuple(args.checkpoint or ())))
    name, split = result["model"], result["split"]
    if args.json:
        print(json.dumps(strict_json(result), indent=2, allow_nan=False))
    else:
        print(f"{name} on {args.data} [{split}, {args.protocol}, {result['count']:,} images]: top-1 error "
              f"{result['top1_error']:.2%} (accuracy {result['top1_accuracy']:.2%}), top-5 error "
              f"{result['top5_error']:.2%}, loss {result['loss']:.4f}")
        if "weights" in result:
            print(f"weights: the run's {result['weights']} weights (--model-ema), as evaluate, predict and export use them")
        worst = sorted((r for r in result["per_class"] if r["count"]), key=lambda r: r["accuracy"])[:5]
        print("weakest classes: " + ", ".join(f"{r['class']} {r['accuracy']:.1%} of {r['count']:,}" for r in worst))
        if "note" in result:
            print(f"note: {result['note']}")
        for flag, path in (("--plot", args.plot), ("--save-predictions", args.save_predictions)):
            if path:
                print(f"wrote {path} ({flag})")
    return 0


