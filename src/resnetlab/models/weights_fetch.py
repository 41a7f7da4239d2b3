"""A named weights file on this machine: where it is (the weights folder, torch's hub cache, or inside the
package), its download once when missing, and the check of its sha256 every time it is used."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Protocol

import torch

from resnetlab.data import download
from resnetlab.errors import UserError
from resnetlab.files import atomic_write, read_small_text

# The weights that ship inside the package (resnetlab's own, as safetensors).
BUNDLED = Path(__file__).resolve().parents[1] / "weights"


class NamedFile(Protocol):
    """What this module needs of a registry entry (pretrained.Weights)."""
    model: str
    name: str
    url: str
    sha256: str
    bundled: bool

    @property
    def filename(self) -> str: ...


def weights_dir(folder: str | Path | None = None) -> Path:
    """The weights folder: `folder`, else $RESNETLAB_WEIGHTS, else the cache's weights/."""
    if folder:
        return Path(folder)
    if os.environ.get("RESNETLAB_WEIGHTS"):
        return Path(os.environ["RESNETLAB_WEIGHTS"])
    return download.default_root() / "weights"


def local_file(w: NamedFile, folder: str | Path | None = None) -> Path:
    """Where `w`'s file is: in the weights folder, else in torch's hub cache (where torchvision and torch.hub
    downloads go: a file fetched by torchvision is not fetched again), else where it will be downloaded to."""
    if w.bundled:
        return BUNDLED / w.filename
    own = weights_dir(folder) / w.filename
    hub = Path(torch.hub.get_dir()) / "checkpoints" / w.filename
    return own if own.is_file() or not hub.is_file() else hub


def fetch(w: NamedFile, folder: str | Path | None = None) -> Path:
    """The checked local file of `w`, downloaded once when missing."""
    path = local_file(w, folder)
    if w.bundled:
        if not path.is_file():
            raise UserError(f"{w.model}'s {w.name} weights should ship with resnetlab at {path}, and this installation "
                            "lacks them; reinstall resnetlab")
        check_digest(w, path)
        return path
    where = weights_dir(folder)
    if where.exists() and not where.is_dir():
        raise UserError(f"the weights folder {where} is a file; name a folder with --weights-dir or $RESNETLAB_WEIGHTS")
    if not path.is_file():
        try:
            download.download(w.url, path, w.sha256, "sha256", hint=" (or name the folder with --weights-dir / $RESNETLAB_WEIGHTS)")
        except OSError as e:  # a folder that cannot be made or written (under a file, read-only)
            raise UserError(f"cannot put {w.filename} in the weights folder {where} ({e.strerror or e}); name a "
                            "writable folder with --weights-dir or $RESNETLAB_WEIGHTS") from None
    check_digest(w, path)
    return path


PINS = "sha256-pins.json"


def check_digest(w: NamedFile, path: Path) -> None:
    """The file's sha256 against the registry's; where only the 8-hex prefix of a publisher's file name is known
    (32 bits: a forgery is within reach), also against the whole digest pinned the first time the file was
    verified here (trust on first use, in the weights folder's sha256-pins.json)."""
    digest = download.file_digest(path, "sha256")
    if not digest.startswith(w.sha256.lower()):
        raise UserError(f"{path} does not have the sha256 of {w.model}'s {w.name} weights ({w.sha256}...): "
                        "it is damaged or another file; delete it and run again")
    if len(w.sha256) >= 64:
        return
    pins_file = path.parent / PINS
    try:
        pins = json.loads(read_small_text(pins_file, "weight pins", limit=1 << 20)) if pins_file.is_file() else {}
        pins = {k: v for k, v in pins.items() if isinstance(v, str)} if isinstance(pins, dict) else {}
    except (OSError, ValueError, RecursionError):  # UserError is a ValueError: an unreadable pins file is none
        pins = {}
    pinned = pins.get(w.filename)
    if pinned is not None and pinned != digest:
        raise UserError(f"{path} is not the file first verified here (its sha256 {digest[:16]}... differs from the "
                        f"{pinned[:16]}... pinned in {pins_file}, though both begin with the published {w.sha256}): "
                        "delete it and run again, or remove its pin if you replaced it on purpose")
    if pinned is None:
        try:
            text = json.dumps({**pins, w.filename: digest}, indent=1, sort_keys=True)
            atomic_write(pins_file, lambda tmp: tmp.write_text(text))
        except (OSError, UserError):
            pass  # a read-only folder: checked by its prefix, as published
