"""The one rule for files a command writes besides run folders (exports, plots, prediction tables): never an
input, never inside the dataset, never over a file without --force; and CSV cells a spreadsheet will not run."""

from __future__ import annotations

import os
from pathlib import Path

from resnetlab.errors import UserError


def _is(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_output(flag: str, out: Path, inputs: list[Path], force: bool, protected: Path | None = None,
                 suffixes: tuple[str, ...] = ()) -> Path:
    """The one rule for a file a command writes: never an input (whatever the path says: links and other
    spellings are resolved) nor anything inside `protected` (the dataset), not a folder, an existing file only
    with --force, in a folder that exists and is writable, and with one of `suffixes` when given."""
    if any(_is(out, Path(i)) for i in inputs if i):
        raise UserError(f"{flag} {out} is a file this command reads; choose another name")
    if protected is not None and protected.is_dir() and out.resolve().is_relative_to(protected.resolve()):
        raise UserError(f"{flag} {out} lies inside the dataset folder {protected}; write it elsewhere")
    if out.is_dir():
        raise UserError(f"{flag} {out} is a folder; give a file name")
    if suffixes and out.suffix.lower() not in suffixes:
        raise UserError(f"{flag} {out}: name it {' or '.join(suffixes)}")
    if out.exists() and not force:
        raise UserError(f"{flag} {out} exists; add --force to replace it")
    if not out.parent.is_dir():
        raise UserError(f"{flag} {out}: the folder {out.parent} does not exist")
    if not os.access(out.parent, os.W_OK):
        raise UserError(f"{flag} {out}: cannot write in {out.parent}")
    return out


def printable(text: str) -> str:
    """A name as it can be shown and written as UTF-8: a folder name that is not UTF-8 (Python keeps its bytes as
    surrogates) has those bytes replaced by U+FFFD, as a file manager shows it."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def inert_cell(text: str) -> str:
    """A CSV cell a spreadsheet will not run as a formula (cells starting with = + - @ are, in Excel and others),
    in UTF-8 whatever the name's bytes."""
    text = printable(text)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
