"""The official CIFAR distributions: python pickles (CIFAR-10/100) and binary batches (CIFAR-10).

The pickles are read by a restricted unpickler that accepts only numpy arrays and plain containers,
so a file carrying code is refused before anything runs.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from resnetlab.data.arrays import ArrayDataset
from resnetlab.errors import UserError

# Folder name inside the official tarballs -> format.
LAYOUTS = {
    "cifar-10-batches-py": "cifar10-python",
    "cifar-100-python": "cifar100-python",
    "cifar-10-batches-bin": "cifar10-binary",
}
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),  # how Python 3 pickles the bytes inside a numpy array at protocol < 3
}


class _CifarUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: ANN201
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def read_pickle(path: Path) -> dict[str, object]:
    """One CIFAR pickle as a dict with str keys; anything but arrays and containers is refused."""
    try:
        with open(path, "rb") as f:
            obj = _CifarUnpickler(f, encoding="latin1").load()
    except pickle.UnpicklingError as e:
        raise UserError(f"{path} is not a plain CIFAR pickle ({e}); nothing in it was run") from None
    except (EOFError, ValueError, TypeError) as e:
        raise UserError(f"{path} is not a readable CIFAR pickle: {e}") from None
    if not isinstance(obj, dict):
        raise UserError(f"{path} holds a {type(obj).__name__}, not a CIFAR batch dict")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _chw_rows_to_nhwc(rows: np.ndarray, path: Path) -> np.ndarray:
    if not isinstance(rows, np.ndarray) or rows.dtype != np.uint8:
        kind = rows.dtype if isinstance(rows, np.ndarray) else type(rows).__name__
        raise UserError(f"{path}: pixel data must be uint8 (bytes 0..255), not {kind}")
    if rows.ndim != 2 or rows.shape[1] != 3072:
        raise UserError(f"{path}: expected rows of 3072 bytes (3x32x32), got shape {rows.shape}")
    return rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy()


def _labels(values: object, count: int, path: Path) -> np.ndarray:
    """One whole-number label per image: a count that differs would misalign every later image."""
    try:
        labels = np.asarray(values)
    except (TypeError, ValueError):
        labels = np.asarray([], dtype=object)
    if labels.ndim != 1 or not (np.issubdtype(labels.dtype, np.integer) or labels.size == 0):
        raise UserError(f"{path}: labels must be a list of whole numbers")
    if len(labels) != count:
        raise UserError(f"{path}: {len(labels)} labels for {count} images; the batch is damaged")
    return labels.astype(np.int64)


def _names(values: object, path: Path) -> list[str]:
    """The class names of a CIFAR meta file: a list of byte or text strings."""
    if not isinstance(values, (list, tuple)) or not values:
        raise UserError(f"{path}: the class names are not a list of names")
    try:
        return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]
    except UnicodeDecodeError:
        raise UserError(f"{path}: a class name is not UTF-8 text") from None


def _require(path: Path) -> Path:
    if not path.is_file():
        raise UserError(f"{path} is missing: the CIFAR folder {path.parent} is incomplete")
    return path


def read_python(folder: Path, fmt: str) -> tuple[dict[str, ArrayDataset], list[str]]:
    if fmt == "cifar10-python":
        parts = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
        meta, names_key, labels_key = "batches.meta", "label_names", "labels"
    else:
        parts = {"train": ["train"], "test": ["test"]}
        meta, names_key, labels_key = "meta", "fine_label_names", "fine_labels"
    meta_path = _require(folder / meta)
    entries = read_pickle(meta_path)
    if names_key not in entries:
        raise UserError(f"{meta_path} has no '{names_key}' entry: not a CIFAR meta file")
    classes = _names(entries[names_key], meta_path)
    splits = {}
    for split, files in parts.items():
        images, labels = [], []
        for name in files:
            path = _require(folder / name)
            batch = read_pickle(path)
            if "data" not in batch or labels_key not in batch:
                raise UserError(f"{path} has no 'data'/'{labels_key}' entries")
            images.append(_chw_rows_to_nhwc(batch["data"], path))
            labels.append(_labels(batch[labels_key], len(images[-1]), path))
        splits[split] = ArrayDataset(np.concatenate(images), np.concatenate(labels))
    return splits, classes


def read_binary(folder: Path) -> tuple[dict[str, ArrayDataset], list[str]]:
    """Records of 1 label byte + 3072 pixel bytes (CIFAR-10 binary version)."""
    classes = [line.strip() for line in _require(folder / "batches.meta.txt").read_text().splitlines() if line.strip()]
    parts = {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]}
    splits = {}
    for split, files in parts.items():
        images, labels = [], []
        for name in files:
            path = _require(folder / name)
            raw = np.fromfile(path, dtype=np.uint8)
            if raw.size % 3073:
                raise UserError(f"{path} is {raw.size} bytes, not a whole number of 3073-byte records")
            raw = raw.reshape(-1, 3073)
            labels.append(raw[:, 0].astype(np.int64))
            images.append(_chw_rows_to_nhwc(raw[:, 1:], path))
        splits[split] = ArrayDataset(np.concatenate(images), np.concatenate(labels))
    return splits, classes


def read_cifar(folder: Path) -> tuple[str, dict[str, ArrayDataset], list[str]]:
    """Read an extracted official CIFAR folder; returns (format, splits, class names)."""
    fmt = LAYOUTS[folder.name] if folder.name in LAYOUTS else detect_layout(folder)
    if fmt is None:
        raise UserError(f"{folder} is not an official CIFAR folder")
    splits, classes = read_binary(folder) if fmt == "cifar10-binary" else read_python(folder, fmt)
    for split, ds in splits.items():
        if len(ds) and (ds.labels.min() < 0 or ds.labels.max() >= len(classes)):
            raise UserError(f"{folder}: {split} labels fall outside the {len(classes)} class names")
    return fmt, splits, classes


def detect_layout(folder: Path) -> str | None:
    if (folder / "batches.meta.txt").is_file():
        return "cifar10-binary"
    if (folder / "batches.meta").is_file():
        return "cifar10-python"
    if (folder / "meta").is_file() and (folder / "train").is_file():
        return "cifar100-python"
    return None
