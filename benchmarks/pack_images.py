"""Pack a class-folder image tree into one file of raw (still encoded) bytes, and unpack it elsewhere.

The GPU machine takes at most 64 MiB with the working tree (itself under 40 MB, tests/experiments/test_slim.py):
50,000 CIFAR JPEGs are one ~46 MB file, so every 2nd image (25,000, ~23 MB) travels, written back as files there
(then decoded by resnetlab as usual).

    python benchmarks/pack_images.py pack ../shared/data/cifar10-jpeg/train benchmarks/data/cifar10-train.npz --every 2
    python benchmarks/pack_images.py unpack benchmarks/data/cifar10-train.npz /tmp/cifar10-jpeg/train
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def pack(root: Path, out: Path, every: int = 1) -> None:
    names, blobs = [], []
    for path in sorted(p for p in root.rglob("*") if p.is_file())[::every]:
        names.append(str(path.relative_to(root)))
        blobs.append(np.frombuffer(path.read_bytes(), dtype=np.uint8))
    offsets = np.cumsum([0] + [len(b) for b in blobs])
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, data=np.concatenate(blobs), offsets=offsets, names=np.array(names))
    print(f"packed {len(names)} files, {offsets[-1] / 1e6:.1f} MB, into {out}")


def unpack(archive: Path, root: Path) -> None:
    with np.load(archive) as z:
        data, offsets, names = z["data"], z["offsets"], z["names"]
    for i, name in enumerate(names):
        dest = (root / str(name)).resolve()
        if root.resolve() not in dest.parents:
            raise SystemExit(f"refusing {name}: outside {root}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data[offsets[i]:offsets[i + 1]].tobytes())
    print(f"unpacked {len(names)} files into {root}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["pack", "unpack"])
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--every", type=int, default=1, help="pack every N-th file (sorted by path), N >= 1")
    a = parser.parse_args()
    if a.every < 1:
        parser.error("--every must be >= 1")
    pack(a.source, a.target, a.every) if a.action == "pack" else unpack(a.source, a.target)
