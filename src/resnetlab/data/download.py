"""Fetching the official CIFAR tarballs (URL + published MD5) and extracting them safely."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import urllib.error
import zlib
from pathlib import Path

from torch.hub import download_url_to_file

from resnetlab.errors import UserError

# name -> (url, md5 published by the dataset's authors, folder inside the tarball)
ARCHIVES = {
    "cifar10": ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                "c58f30108f718f92721af3b95e74349a", "cifar-10-batches-py"),
    "cifar100": ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                 "eb9058c3a382ffc7106e4002c42a8d85", "cifar-100-python"),
}


def default_root() -> Path:
    return Path(os.environ.get("RESNETLAB_CACHE", Path.home() / ".cache" / "resnetlab"))


def file_digest(path: Path, algorithm: str = "md5") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def md5sum(path: Path) -> str:
    return file_digest(path, "md5")


def digest_matches(path: Path, expected: str, algorithm: str) -> bool:
    """`expected` is the whole hex digest, or a prefix of at least 8 digits where only that was published
    (torchvision's and akamaster's file names carry the first 8 of their sha256)."""
    return len(expected) >= 8 and file_digest(path, algorithm).startswith(expected.lower())


def download(url: str, dest: Path, digest: str, algorithm: str = "md5", hint: str = "") -> Path:
    """Download with torch.hub's downloader (progress bar, its own temporary file), check the digest, then
    move into place: never a half or unchecked file at `dest`. Offline, the error says which file to put
    where; `hint` adds another way out. (torch.hub checks sha256 prefixes only; CIFAR publishes MD5s, so the
    digest is checked here, for both.)"""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.{os.getpid()}.part")  # never shared with another process
    name = algorithm.upper()
    try:
        download_url_to_file(url, str(tmp), progress=bool(os.isatty(2)))
    except (urllib.error.URLError, OSError) as e:
        tmp.unlink(missing_ok=True)
        raise UserError(
            f"could not download {url} ({getattr(e, 'reason', e)}). Offline? Put the file at {dest} "
            f"({name} {digest}{'...' if len(digest) < 32 else ''}) and run again{hint}"
        ) from None
    if not digest_matches(tmp, digest, algorithm):
        tmp.unlink()
        raise UserError(f"{url} downloaded with the wrong {name} (expected {digest}); nothing was kept")
    os.replace(tmp, dest)
    return dest


# The files of the official CIFAR tarballs (python and binary versions): extraction takes these and no other
# entry, and none larger than MEMBER_MAX_BYTES (CIFAR-100's `train`, the largest, is 155 MB).
CIFAR_MEMBERS = frozenset({*(f"data_batch_{i}{ext}" for i in range(1, 6) for ext in ("", ".bin")), "test_batch",
                           "test_batch.bin", "batches.meta", "batches.meta.txt", "readme.html", "train", "test",
                           "meta", "file.txt~", "train.bin", "test.bin", "coarse_label_names.txt",
                           "fine_label_names.txt"})
MEMBER_MAX_BYTES = 256 << 20


def safe_extract(archive: Path, target: Path, wanted: frozenset[str] | None = None) -> None:
    """Extract a tarball into `target`, refusing it whole if any entry is a link, a device or escapes it; with
    `wanted`, only the files of those names (others, however large, are never written) and none over
    MEMBER_MAX_BYTES.

    The entries go into a temporary folder beside `target`, renamed into place only when all are out:
    an extraction killed half-way leaves no partial folder that a later run would take for complete.
    """
    target = target.resolve()
    staging = target.with_name(f".{target.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for m in members:
                dest = (staging / m.name).resolve()
                if not (m.isfile() or m.isdir()):
                    raise UserError(f"{archive}: refusing entry {m.name!r}: only plain files and folders are extracted")
                if dest != staging and staging not in dest.parents:
                    raise UserError(f"{archive}: refusing entry {m.name!r}: it would be written outside {target}")
            if wanted is not None:
                members = [m for m in members if m.isdir() or Path(m.name).name in wanted]
                big = [m for m in members if m.size > MEMBER_MAX_BYTES]
                if big:
                    raise UserError(f"{archive}: refusing entry {big[0].name!r}: {big[0].size:,} bytes, more than "
                                    f"any file of the dataset")
            staging.mkdir(parents=True)
            for m in members:
                tar.extract(m, staging, set_attrs=False)
        try:
            os.rename(staging, target)
        except OSError:
            if not target.is_dir():  # not another process that finished first
                raise
    except (tarfile.TarError, EOFError, zlib.error) as e:
        raise UserError(f"{archive} is not a readable tarball (truncated or damaged?): {e}") from None
    except OSError as e:
        raise UserError(f"cannot extract {archive} into {target}: {e.strerror or e}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def fetch(name: str, root: Path | None = None) -> Path:
    """The extracted folder of `cifar10`/`cifar100` under `root`, downloading it once if missing."""
    url, md5, folder = ARCHIVES[name]
    root = root or default_root()
    for extracted in (root / f"{name}-extracted" / folder, root / folder):  # the second: put there by hand
        if extracted.is_dir():
            return extracted
    archive = root / url.rsplit("/", 1)[1]
    if not archive.is_file():
        download(url, archive, md5, hint=", or pass --data with the extracted folder")
    elif md5sum(archive) != md5:
        raise UserError(f"{archive} does not have the published MD5 {md5}: delete it and run again")
    safe_extract(archive, root / f"{name}-extracted", CIFAR_MEMBERS)
    return root / f"{name}-extracted" / folder
