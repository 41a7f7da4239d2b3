"""`resnetlab data inspect PATH [--json]`: what a dataset is, as resnetlab reads it."""

from __future__ import annotations

import json

from resnetlab.cli.main import Parser
from resnetlab.data import ArrayDataset, open_dataset
from resnetlab.data.folders import image_size
from resnetlab.data.sources import channel_stats


def build_parser() -> Parser:
    p = Parser(prog="resnetlab data", description="Inspect a dataset: format, splits with image counts, "
               "class names in label order, image size and per-channel mean/std (images scaled to [0, 1]).")
    sub = p.add_subparsers(dest="action", required=True, parser_class=Parser)
    q = sub.add_parser("inspect", help="describe a dataset")
    q.add_argument("path", help="a dataset folder, an official CIFAR tarball, or cifar10/cifar100")
    q.add_argument("--json", action="store_true", help="print JSON")
    q.add_argument("--skip-corrupt", action="store_true",
                   help="pass over images that cannot be decoded (counted) instead of stopping")
    return p


def describe(path: str, skip_corrupt: bool = False) -> dict:
    ds = open_dataset(path, skip_corrupt=skip_corrupt)
    train = ds.splits["train"]
    if isinstance(train, ArrayDataset):
        size = list(train.images.shape[1:3])
        mean, std = channel_stats(train.images) if len(train) else (None, None)  # no NaN in the JSON
    else:
        size, mean, std = list(image_size(train.paths[0])), None, None
    return {
        "source": ds.source, "format": ds.format,
        "splits": {name: len(split) for name, split in ds.splits.items()},
        "classes": ds.classes, "num_classes": len(ds.classes),
        "image_size": size, "in_memory": ds.in_memory,
        "mean": mean, "std": std, "ignored_files": ds.ignored, "skipped_corrupt": ds.skipped,
        # what `train` feeds each kind of network by default (training/input_size.py; --img-size changes it)
        "input_size": {"cifar_nets": 32, "imagenet_nets": size[0] if ds.in_memory else 224},
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    info = describe(args.path, args.skip_corrupt)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['source']}: {info['format']}, {info['num_classes']} classes, "
          f"images {info['image_size'][0]}x{info['image_size'][1]}{'' if info['in_memory'] else ' (first image)'}")
    sizes = info["input_size"]
    print(f"  train feeds the CIFAR nets {sizes['cifar_nets']}x{sizes['cifar_nets']} (in memory), the ImageNet nets "
          f"{sizes['imagenet_nets']}x{sizes['imagenet_nets']}{' (in memory)' if info['in_memory'] else ' (streamed)'}"
          "; --img-size N sets it")
    for name, n in info["splits"].items():
        print(f"  {name:<6} {n:>9,} images")
    print(f"  classes: {', '.join(info['classes'][:20])}{' ...' if len(info['classes']) > 20 else ''}")
    if info["mean"]:
        print("  mean " + " ".join(f"{m:.3f}" for m in info["mean"]) + "   std " + " ".join(f"{s:.3f}" for s in info["std"]))
    if info["ignored_files"]:
        print(f"  {info['ignored_files']} non-image files ignored")
    if info["skipped_corrupt"]:
        print(f"  {info['skipped_corrupt']} corrupt images skipped")
    return 0
