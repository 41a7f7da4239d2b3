"""Class-per-folder image trees (`<split>/<class>/*.jpg|png`), and the decode-once cache for small images."""

from __future__ import annotations

import hashlib
import math
import os
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2
from tqdm import tqdm

from resnetlab.data.arrays import ArrayDataset
from resnetlab.errors import UserError
from resnetlab.files import atomic_write

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
CACHE_VERSION = 2  # 2: decoded by Pillow


@dataclass
class FolderIndex:
    """The image files of one split, with their labels; `ignored` counts the non-image files passed over."""

    root: Path
    paths: list[Path]
    labels: np.ndarray
    classes: list[str]
    ignored: int = 0
    stats: list[tuple[str, int, int]] = field(default_factory=list, repr=False)  # (relpath, size, mtime_ns)

    def __len__(self) -> int:
        return len(self.paths)

    def fingerprint(self) -> str:
        h = hashlib.sha1(f"v{CACHE_VERSION}".encode())
        for rel, size, mtime in self.stats:
            h.update(f"{rel}\0{size}\0{mtime}\n".encode("utf-8", "surrogateescape"))  # any byte name
        return h.hexdigest()[:20]


def scan(root: Path, classes: list[str] | None = None) -> FolderIndex:
    """Index `root/<class>/<image>`; classes are the sorted folder names unless given."""
    if not root.is_dir():
        raise UserError(f"{root} does not exist or is not a folder")
    folders = sorted(e.name for e in os.scandir(root) if _is_dir(e) and not e.name.startswith("."))
    if not folders:
        raise UserError(f"{root} has no class folders (expected {root}/<class>/<image files>)")
    classes = classes or folders
    paths, labels, stats, ignored = [], [], [], 0
    for label, name in enumerate(classes):
        entries = sorted(os.scandir(root / name), key=lambda e: e.name) if (root / name).is_dir() else []
        found = 0
        for e in entries:
            try:
                if not e.is_file():
                    continue
                st = e.stat()
            except OSError:  # a symlink loop or a dangling link: not an image
                ignored += 1
                continue
            if Path(e.name).suffix.lower() not in IMAGE_SUFFIXES:
                ignored += 1
                continue
            paths.append(Path(e.path))
            labels.append(label)
            stats.append((f"{name}/{e.name}", st.st_size, st.st_mtime_ns))
            found += 1
        if not found and not (root / name).is_dir():
            raise UserError(f"{root} lacks the class folder {name!r} ({root / name} does not exist): every split "
                            f"needs a folder for each of the {len(classes)} classes the training images have")
        if not found:
            raise UserError(f"class folder {root / name} has no images (.jpg, .jpeg or .png)")
    return FolderIndex(root, paths, np.asarray(labels, dtype=np.int64), classes, ignored, stats)


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a symlink loop
        return False


# No photograph is this elongated; a tiny file that is (a 2x60000 PNG is 699 bytes) would become billions of
# pixels once its shorter side is resized to 224-640.
MAX_ASPECT = 20
# A 171 kB PNG can declare 16000x11000 pixels: 528 MB as RGB and gigabytes while resized. Photographs to
# classify are far smaller (a 50-megapixel camera's frame is under this).
MAX_PIXELS = 64_000_000


def elongated(width: int, height: int) -> str:
    """Why an image of this size is refused as too elongated, or "" when it is not (MAX_ASPECT)."""
    short, long = max(1, min(width, height)), max(width, height)
    if long <= MAX_ASPECT * short:
        return ""
    stretched = 224 * long / short
    return (f"it is {width}x{height}, longer than {MAX_ASPECT}:1, which no photograph is: its shorter side resized "
            f"to a network's input (224 px) would make it {stretched:,.0f} px long"
            + (f" ({3 * 224 * stretched / 2**30:.1f} GiB)" if stretched * 224 * 3 > 2**30 else ""))


def decode(path: Path, min_side: int | None = None) -> torch.Tensor:
    """One image as uint8 (3, H, W); a corrupt or truncated file raises UserError naming it.

    Pillow rather than torchvision.io: its decoders are as fast here and torchvision's are deprecated.
    `min_side`: the shorter side the transform that follows needs at most; a JPEG larger than twice that is
    decoded at 1/2, 1/4 or 1/8 of its size by Pillow's `draft` (the DCT's own downscaling: pixels the transform
    would throw away are never computed), never below `min_side`.
    """
    try:
        with Image.open(path) as img:
            w, h = img.size
            if elongated(w, h):
                raise UserError(f"cannot use image {path}: {elongated(w, h)}")
            if w * h > MAX_PIXELS:
                raise UserError(f"cannot use image {path}: it is {w}x{h} = {w * h / 1e6:.0f} megapixels, more than "
                                f"{MAX_PIXELS / 1e6:.0f} (decoding it would take {3 * w * h / 2**30:.1f} GiB); "
                                "downscale it first")
            if min_side and img.format == "JPEG" and 2 * min_side <= min(w, h):
                k = min_side / min(w, h)
                img.draft(None, (math.ceil(w * k), math.ceil(h * k)))  # the result is at least this size
            array = rgb8(img)
    except UserError:
        raise
    except Image.DecompressionBombError as e:
        raise UserError(f"cannot decode image {path}: it is too large to be safe ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise UserError(f"cannot decode image {path}: {e}") from None
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def rgb8(img: Image.Image) -> np.ndarray:
    """8-bit RGB (H, W, 3). Pillow's convert("RGB") clips 16/32-bit grayscale to white, so those are
    scaled to 8 bits here first."""
    if img.mode.startswith("I;16") or img.mode == "I":
        wide = np.asarray(img).astype(np.int64)
        shift = 8 if img.mode.startswith("I;16") or wide.max() > 255 else 0
        gray = np.clip(wide >> shift, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if img.mode == "F":
        values = np.asarray(img)
        if not np.isfinite(values).all():  # NaN would become 0 (black) with numpy's cast warning leaking out
            raise ValueError("a 32-bit float image holding NaN or infinite pixels")
        gray = np.clip(values, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    return np.asarray(img.convert("RGB"))


def image_size(path: Path) -> tuple[int, int]:
    img = decode(path)
    return int(img.shape[1]), int(img.shape[2])


def _savez(path: Path, data: ArrayDataset, skipped: int, kept: list[int]) -> None:
    with open(path, "wb") as f:  # kept: which files the images are (a cache without it is decoded again)
        np.savez(f, images=data.images, labels=data.labels, skipped=np.int64(skipped), kept=np.asarray(kept, np.int64))


def first_size(index: FolderIndex, skip_corrupt: bool) -> tuple[int, int]:
    """The size of the first image that decodes (with --skip-corrupt, corrupt ones before it are passed over)."""
    for path in index.paths:
        try:
            return image_size(path)
        except UserError:
            if not skip_corrupt:
                raise
    raise UserError(f"no image in {index.root} could be decoded")


def fit_to(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 images (..., 3, H, W) at size x size: the shorter side resized (antialiased), the centre cropped,
    as evaluating a folder at that input size does (data/imagenet.py's eval_transform)."""
    if tuple(images.shape[-2:]) == (size, size):
        return images
    images = v2.functional.resize(images, [size], antialias=True)
    return v2.functional.center_crop(images, [size, size])


def load_arrays(index: FolderIndex, cache_dir: Path | None, skip_corrupt: bool = False,
                fit: int | None = None) -> tuple[ArrayDataset, int]:
    """Decode every image of a small-image folder into one uint8 array, once; returns (data, skipped).
    `fit`: a size every image is fitted to (fit_to), for photos of any size; without it, every image must have
    the first one's size.

    The cache file is keyed by every file's path, size and mtime, so a changed file is decoded again.
    """
    key = f"{index.fingerprint()}{'-skip' if skip_corrupt else ''}{f'-fit{fit}' if fit else ''}"
    cache = cache_dir / f"folder-{key}.npz" if cache_dir else None
    if cache and cache.is_file():
        try:
            with np.load(cache) as z:
                kept = z["kept"].tolist()
                return ArrayDataset(z["images"], z["labels"], files=[index.paths[i] for i in kept]), int(z["skipped"])
        except (OSError, ValueError, KeyError, IndexError, EOFError, zipfile.BadZipFile):
            pass  # a truncated or damaged cache file: decode again and replace it

    expected = (fit, fit) if fit else first_size(index, skip_corrupt)

    def one(i: int) -> np.ndarray | None:
        try:
            img = decode(index.paths[i])
        except UserError:
            if skip_corrupt:
                return None
            raise
        if fit:
            img = fit_to(img, fit)
        if tuple(img.shape[1:]) != expected:
            raise UserError(
                f"image {index.paths[i]} is {img.shape[1]}x{img.shape[2]}, but {index.paths[0]} is "
                f"{expected[0]}x{expected[1]}: every image of a small-image dataset must have one size"
            )
        return img.permute(1, 2, 0).numpy()

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        decoded = list(tqdm(pool.map(one, range(len(index))), total=len(index), desc=f"decoding {index.root}",
                            unit="img", disable=None, leave=False))
    keep = [i for i, img in enumerate(decoded) if img is not None]
    skipped = len(index) - len(keep)
    if not keep:
        raise UserError(f"no image in {index.root} could be decoded")
    data = ArrayDataset(np.stack([decoded[i] for i in keep]), index.labels[keep], files=[index.paths[i] for i in keep])
    if cache:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            # atomic_write's temporary name is unpredictable and its rename replaces a link planted at the cache
            atomic_write(cache, lambda tmp: _savez(tmp, data, skipped, keep))
        except (OSError, UserError) as e:  # the cache only saves time: go on without it, and say why once
            print(f"note: cannot keep the decoded images in {cache.parent} ({getattr(e, 'strerror', None) or e}); they will be decoded "
                  "again next time (set $RESNETLAB_CACHE to a writable folder)", file=sys.stderr)
    return data, skipped

