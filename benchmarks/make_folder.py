"""Make an image folder for `resnetlab bench --what folders`: class folders of JPEGs at a chosen size.

Each image is a CIFAR-10 training image scaled up (bicubic) with fine grain added, so that its JPEG holds detail
at every scale as a photo does (a plain upscale compresses to a few KB and decodes unrealistically fast).

    python benchmarks/make_folder.py ../shared/data/cifar10-jpeg/train /tmp/folder256/train --size 256 --per-class 64
    python benchmarks/make_folder.py ../shared/data/cifar10-jpeg/train /tmp/photos/train --size 2000x1500 --per-class 32
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image


def parse_size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    return int(width), int(height or width)


def make(source: Path, out: Path, size: tuple[int, int], per_class: int, quality: int = 90) -> int:
    rng = np.random.default_rng(0)
    made = 0
    for class_dir in sorted(p for p in source.iterdir() if p.is_dir()):
        (out / class_dir.name).mkdir(parents=True, exist_ok=True)
        for path in sorted(class_dir.iterdir())[:per_class]:
            with Image.open(path) as small:
                big = np.asarray(small.convert("RGB").resize(size, Image.BICUBIC), dtype=np.int16)
            grain = rng.integers(-12, 13, size=big.shape, dtype=np.int16)
            pixels = np.clip(big + grain, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(out / class_dir.name / f"{path.stem}.jpg", quality=quality)
            made += 1
    return made


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", type=Path, help="a class-folder tree of images (e.g. CIFAR-10's train)")
    p.add_argument("out", type=Path, help="where the class folders are written")
    p.add_argument("--size", default="256", help="WIDTHxHEIGHT, or one number for a square (default 256)")
    p.add_argument("--per-class", type=int, default=64, help="images per class (default 64)")
    args = p.parse_args()
    made = make(args.source, args.out, parse_size(args.size), args.per_class)
    print(f"wrote {made} JPEGs of {args.size} px under {args.out}")


if __name__ == "__main__":
    main()
