"""Option groups that several subcommands share, declared once."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from resnetlab.errors import UserError

DEVICES = ("auto", "cpu", "cuda")


def add_model_source(p: argparse.ArgumentParser, weights_help: str = "foreign weights: a torchvision state dict "
                     "or an akamaster CIFAR checkpoint", ensemble: bool = False) -> None:
    """--checkpoint (a resnetlab run's), or --model with --weights (anyone's); with `ensemble`, --checkpoint
    may be given several times."""
    g = p.add_argument_group("the model", "either --checkpoint, or --model with --weights")
    g.add_argument("--checkpoint", action="append" if ensemble else "store",
                   help="a resnetlab checkpoint (RUN_DIR/last.pt or best.pt); it carries the network, class names "
                        "and normalization" + ("; several: an ensemble, their softmax averaged (Table 5)" if ensemble else ""))
    g.add_argument("--model", help="network name (see `resnetlab models`), with --weights")
    g.add_argument("--weights", help=weights_help + "; or the name of published weights (`resnetlab models "
                   "--weights`), e.g. akamaster, torchvision")
    g.add_argument("--weights-dir", help="where named weights are looked up and downloaded to (default: "
                   "$RESNETLAB_WEIGHTS, else the cache's weights/)")
    g.add_argument("--style", choices=("paper", "torchvision"),
                   help="the network the weights were trained as, where the file cannot say: ResNet-50/101/152 "
                        "'paper' (stride on the first 1x1 conv) or 'torchvision' (v1.5, stride on the 3x3); "
                        "known files (torchvision's, resnetlab checkpoints) carry it")


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", choices=DEVICES, help="auto: CUDA when available, else the CPU")


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


def strict_json(obj):
    """`obj` with NaN and infinities as null, so that --json output is JSON (Python's json writes bare NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    return obj


def inert_cell(text: str) -> str:
    """A CSV cell a spreadsheet will not run as a formula (cells starting with = + - @ are, in Excel and others)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
