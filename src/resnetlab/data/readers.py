"""The dataset formats `--data` accepts, as a registry: a new format is one function and one `register_reader`
line (here, or in a file of your own imported before training). Readers are tried newest first; each looks at
the `--data` value and returns a `Dataset` (data/dataset.py) or None when the value is not its format. The
built-ins: the names cifar10/cifar100 (downloaded once), official CIFAR tarballs, extracted CIFAR folders
(python or binary batches), and class-per-folder trees with optional train/val/test splits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from resnetlab.data import cifar, download, folders
from resnetlab.data.dataset import SMALL_IMAGE, Dataset
from resnetlab.errors import UserError

SPLIT_FOLDERS = ("train", "val", "test")


@dataclass(frozen=True)
class ReadOptions:
    skip_corrupt: bool  # pass over unreadable images instead of stopping at the first
    cache_dir: Path  # where decoded arrays and extracted tarballs are kept
    size: int | None  # the input size wanted (small images are decoded at it), None: as they are


@dataclass(frozen=True)
class Reader:
    name: str
    accepts: str  # what it reads, for the error that lists them: "an official CIFAR tarball (.tar.gz)"
    read: Callable[[str, Path, ReadOptions], Dataset | None]


READERS: list[Reader] = []


def register_reader(name: str, accepts: str) -> Callable:
    """Decorator: `read(spec, path, options) -> Dataset | None` becomes a format `--data` accepts, tried before
    those registered earlier (the class-folder reader, which takes any folder, is the oldest)."""
    def add(read: Callable[[str, Path, ReadOptions], Dataset | None]) -> Callable:
        READERS[:] = [r for r in READERS if r.name != name]
        READERS.insert(0, Reader(name, accepts, read))
        return read
    return add


def read_dataset(spec: str, options: ReadOptions) -> Dataset:
    """The dataset `spec` names, read by the first reader that knows its format."""
    path = Path(spec).expanduser()
    for reader in READERS:
        ds = reader.read(spec, path, options)
        if ds is not None:
            return ds
    accepted = "; ".join(r.accepts for r in READERS)
    if not path.exists():
        raise UserError(f"--data {spec}: no such file or folder (give one of: {accepted})")
    raise UserError(f"--data {path}: not a dataset resnetlab reads (it reads: {accepted})")


@register_reader("image-folder", "a folder of class folders, optionally under train/, val/ and test/")
def read_image_folders(spec: str, root: Path, o: ReadOptions) -> Dataset | None:
    if not root.is_dir():
        return None
    split_dirs = {s: root / s for s in SPLIT_FOLDERS if (root / s).is_dir()}
    if "train" not in split_dirs:
        split_dirs = {"train": root}  # the folder itself holds the classes
    train = folders.scan(split_dirs["train"])
    indexes = {"train": train}
    for split, d in split_dirs.items():
        if split != "train":
            indexes[split] = folders.scan(d, classes=_matching_classes(d, train.classes))
    ignored = sum(ix.ignored for ix in indexes.values())
    h, w = folders.first_size(train, o.skip_corrupt)
    flat = set(split_dirs) == {"train"} and split_dirs["train"] == root
    if (o.size or max(h, w)) > SMALL_IMAGE:
        return Dataset(spec, "image-folder", train.classes, dict(indexes), ignored, flat=flat)
    # small images as they are (every one the size of the first), or any photos fitted to `size`
    fit = o.size if o.size is not None and (h, w) != (o.size, o.size) else None
    splits, skipped = {}, 0
    for split, ix in indexes.items():
        splits[split], n = folders.load_arrays(ix, o.cache_dir, o.skip_corrupt, fit=fit)
        skipped += n
    return Dataset(spec, "image-folder", train.classes, splits, ignored, skipped, flat=flat)


def _matching_classes(folder: Path, classes: list[str]) -> list[str]:
    extra = sorted(p.name for p in folder.iterdir()
                   if p.is_dir() and not p.name.startswith(".") and p.name not in classes)
    if extra:
        raise UserError(f"{folder} has class folders that train/ lacks: {', '.join(extra[:5])}")
    return classes


@register_reader("cifar-folder", "an extracted CIFAR folder (cifar-10-batches-py, -bin, cifar-100-python)")
def read_cifar_folder(spec: str, path: Path, o: ReadOptions) -> Dataset | None:
    if not path.is_dir():
        return None
    if cifar.detect_layout(path):
        return _cifar(path, spec)
    inner = [path / name for name in cifar.LAYOUTS if (path / name).is_dir()]
    return _cifar(inner[0], spec) if inner else None


@register_reader("cifar-tarball", "an official CIFAR tarball (.tar.gz, .tgz, .tar)")
def read_cifar_tarball(spec: str, path: Path, o: ReadOptions) -> Dataset | None:
    if not (path.is_file() and path.name.endswith((".tar.gz", ".tgz", ".tar"))):
        return None
    st = path.stat()
    target = o.cache_dir / "extracted" / f"{path.name}-{st.st_size}-{st.st_mtime_ns}"
    if not target.is_dir():
        download.safe_extract(path, target, download.CIFAR_MEMBERS)
    inner = [p for p in target.iterdir() if p.name in cifar.LAYOUTS]
    if not inner:
        raise UserError(f"{path} holds none of the official CIFAR folders ({', '.join(cifar.LAYOUTS)})")
    return _cifar(inner[0], spec)


@register_reader("cifar-download", f"a dataset name ({', '.join(download.ARCHIVES)}), downloaded once")
def read_cifar_by_name(spec: str, path: Path, o: ReadOptions) -> Dataset | None:
    if spec not in download.ARCHIVES or path.exists():
        return None  # a folder of that name in the working directory is the user's own
    return _cifar(download.fetch(spec), spec)


def _cifar(folder: Path, source: str) -> Dataset:
    fmt, splits, classes = cifar.read_cifar(folder)
    return Dataset(source, fmt, classes, dict(splits))
