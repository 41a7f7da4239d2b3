"""Writers of the official CIFAR formats, for tests: the bytes as the dataset's authors lay them out."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

CLASSES10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def images_and_labels(n: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 NHWC images whose mean colour depends on the label, so a network can learn them."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    base = (labels[:, None, None, None] * (255 // classes)).astype(np.int64)
    noise = rng.integers(-40, 40, (n, 32, 32, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8), labels.astype(np.int64)


def rows(images: np.ndarray) -> np.ndarray:
    return images.transpose(0, 3, 1, 2).reshape(len(images), -1)


def _dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10_python(root: Path, train_per_batch: int, test: int, seed: int) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    _dump(root / "batches.meta", {b"label_names": [c.encode() for c in CLASSES10], b"num_cases_per_batch": train_per_batch})
    written = {"train": [], "test": None}
    for i in range(1, 6):
        x, y = images_and_labels(train_per_batch, 10, seed + i)
        _dump(root / f"data_batch_{i}", {b"batch_label": b"training batch", b"labels": y.tolist(), b"data": rows(x)})
        written["train"].append((x, y))
    x, y = images_and_labels(test, 10, seed + 99)
    _dump(root / "test_batch", {b"batch_label": b"testing batch", b"labels": y.tolist(), b"data": rows(x)})
    written["test"] = (x, y)
    return written


def write_cifar100_python(root: Path, train: int, test: int, seed: int) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    names = [f"class{i:02d}" for i in range(100)]
    _dump(root / "meta", {"fine_label_names": names, "coarse_label_names": [f"super{i}" for i in range(20)]})
    written = {"classes": names}
    for split, n in (("train", train), ("test", test)):
        x, y = images_and_labels(n, 100, seed + len(split))
        _dump(root / split, {"filenames": [], "fine_labels": y.tolist(), "coarse_labels": (y // 5).tolist(), "data": rows(x)})
        written[split] = (x, y)
    return written


def write_cifar10_binary(root: Path, per_batch: int, seed: int) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    (root / "batches.meta.txt").write_text("\n".join(CLASSES10) + "\n\n")
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x, y = images_and_labels(per_batch, 10, seed + len(written))
        records = np.concatenate([y.astype(np.uint8)[:, None], rows(x)], axis=1)
        records.tofile(root / f"{name}.bin")
        written[name] = (x, y)
    return written
