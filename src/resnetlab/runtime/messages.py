"""What training says, through `logging` (logger "resnetlab"): library users route, filter or silence it as
they do any library's; commands and the Python API print it (quiet=True / --quiet: nothing but errors).

The progress bar is tqdm.auto's: a widget in notebooks, a text bar in terminals; lines are written through
tqdm so that they never tear a bar."""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Iterator

from tqdm.auto import tqdm

logger = logging.getLogger("resnetlab")
_quiet = False


def say(line: str) -> None:
    logger.info(line)


def quiet() -> bool:
    """Whether the progress bar is off too."""
    return _quiet


class _Lines(logging.Handler):
    """Each message as one line on stdout (looked up at each line: pytest and notebooks swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stdout)
            sys.stdout.flush()
        except Exception:  # noqa: BLE001 - a closed stdout must not stop training
            self.handleError(record)


@contextlib.contextmanager
def printed(silent: bool = False) -> Iterator[None]:
    """While inside: messages printed (silent: none, bar included), unless the caller configured the logger
    "resnetlab" with handlers of its own, which then receive them as they are."""
    global _quiet
    previous, handler = (_quiet, logger.level), None
    _quiet = silent
    if not logger.handlers:
        handler = _Lines()
        handler.setLevel(logging.WARNING if silent else logging.INFO)
        logger.addHandler(handler)
        logger.propagate = False
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        _quiet, level = previous
        logger.setLevel(level)
        if handler is not None:
            logger.removeHandler(handler)
            logger.propagate = True
