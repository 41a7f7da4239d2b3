"""Writing files so that nothing is lost: the one atomic, durable write every command uses (checkpoints, JSON,
exports, plots, prediction tables, weight pins). Below every other part, as errors.py is."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from resnetlab.errors import UserError


def atomic_write(path: Path, write: Any) -> None:
    """Call write(tmp_path), fsync, rename over `path`, fsync the folder: readers see the old file or the new
    one, and after a power loss the new one is there once this returns.

    The file gets the mode a plain open() would give it (0666 less the umask). The temporary file is created exclusively under an unpredictable name in the target folder (a link planted
    there cannot redirect the write), ending in `path`'s own suffix (exporters name side files after it), and
    the rename replaces a link at `path` rather than following it. A failed write (a full disk, a vanished
    folder) leaves `path` as it was and says so in one line.
    """
    path = Path(path)
    tmp = None
    try:
        prefix, suffix = _temporary_affixes(path.name)
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
        try:
            os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp's 0600 would hide the file from colleagues
        finally:
            os.close(fd)
        tmp = Path(name)
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_folder(path.parent)
    except (OSError, RuntimeError) as e:
        if not _is_io_failure(e):
            raise
        kept = f"{path} keeps its previous contents" if path.exists() else f"{path} was not written"
        raise UserError(f"cannot write {path}: {_why_write_failed(e, path.parent)}; {kept}") from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def append_whole(fd: int, data: bytes, path: Path) -> None:
    """Append all of `data` to the file open at `fd` (O_APPEND), or nothing: a write cut short (a full disk)
    is cut off again, so no torn line is left to run into the next one, and the error says so in one line."""
    start = os.lseek(fd, 0, os.SEEK_END)
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view):]
    except OSError as e:
        try:
            os.ftruncate(fd, start)
        except OSError:
            pass
        raise UserError(f"cannot append to {path}: {_why_write_failed(e, Path(path).parent)}; its earlier "
                        "contents are kept") from None


def _is_io_failure(e: BaseException) -> bool:
    """OSError, or the RuntimeError torch's C++ writer raises when a write fails (it says "write" or, when the
    disk filled mid-file, only "unexpected pos N vs M")."""
    text = str(e).lower()
    return isinstance(e, OSError) or "write" in text or "unexpected pos" in text


def _why_write_failed(e: BaseException, folder: Path) -> str:
    full = getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(e)
    if full or (not isinstance(e, OSError) and free_bytes(folder) < FULL_BELOW):
        return "the disk is full"
    return getattr(e, "strerror", None) or str(e).splitlines()[0]


FULL_BELOW = 1 << 20  # a failed torch write with less than this left on the disk: the disk filled


def free_bytes(folder: Path) -> int:
    """Bytes a non-root user may still write under `folder` (unknown: a large number)."""
    try:
        info = os.statvfs(folder)
    except OSError:
        return 1 << 62
    return info.f_bavail * info.f_frsize


def _temporary_affixes(name: str) -> tuple[str, str]:
    return f".{name}.", f".tmp{Path(name).suffix}"


def is_temporary_of(entry: str, name: str) -> bool:
    """Whether the file `entry` is a temporary file atomic_write made for a file called `name`: what a process
    killed inside that write leaves behind (the file `name` itself is as it was before)."""
    prefix, suffix = _temporary_affixes(name)
    return entry.startswith(prefix) and entry.endswith(suffix)


def current_umask() -> int:
    """The process's umask (POSIX offers no way to read it but setting it; set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_folder(folder: Path) -> None:
    """Make a rename or a new file in `folder` durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_small_text(path: Path, what: str, limit: int = 16 << 20) -> str:
    """The text of a regular file of at most `limit` bytes (UTF-8). A FIFO, a device (/dev/zero) or a folder
    planted where a config, a run's books or a cache is expected is refused unread: reading it would block
    forever or exhaust memory. OSError/UnicodeDecodeError/UserError name `what`."""
    path = Path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise UserError(f"{what} {path}: no such file") from None
    if not stat.S_ISREG(info.st_mode):
        raise UserError(f"{what} {path}: not a regular file (a folder, a FIFO or a device); give a file")
    if info.st_size > limit:
        raise UserError(f"{what} {path}: {info.st_size:,} bytes, more than the {limit:,} such a file can hold")
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise UserError(f"{what} {path}: more than {limit:,} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{what} {path}: not a text file (UTF-8 expected)") from None
