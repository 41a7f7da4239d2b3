"""The run's curves as a figure in its folder (curves.png): training and validation loss and error against
iterations, redrawn at evaluations (at most once a minute: a figure costs ~0.3 s of CPU) and at the end, so a run
can be looked at while it trains."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from resnetlab.errors import UserError
from resnetlab.runtime import messages
from resnetlab.runtime.figures import pyplot, save_figure

FILE = "curves.png"
EVERY_SECONDS = 60.0
_drawn: dict[Path, float] = {}  # when each run folder's figure was last drawn (time.monotonic)


def due(folder: Path, final: bool) -> bool:
    """Whether to redraw now: always at the end, else when a minute has passed since the last figure."""
    return final or time.monotonic() - _drawn.get(folder, float("-inf")) >= EVERY_SECONDS


def draw(folder: Path, records: list[dict[str, Any]], title: str) -> None:
    """curves.png from metrics.jsonl's records; a figure that cannot be written is said, never fatal."""
    _drawn[folder] = time.monotonic()
    train = [r for r in records if "train_loss" in r]
    val = [r for r in records if "val_error" in r]
    if not train:
        return
    plt = pyplot()
    fig, (loss, error) = plt.subplots(1, 2, figsize=(10, 3.8))
    for axis, key, label in ((loss, "loss", "loss"), (error, "error", "error (%)")):
        scale = 100 if key == "error" else 1
        axis.plot([r["iteration"] for r in train], [scale * r[f"train_{key}"] for r in train], label="train")
        if val:
            axis.plot([r["iteration"] for r in val], [scale * r[f"val_{key}"] for r in val], "o-", label="validation")
        axis.set_xlabel("iteration")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.legend()
    if all(r["train_loss"] > 0 for r in train):
        loss.set_yscale("log")
    try:
        save_figure(plt, fig, f"{title}: iteration {train[-1]['iteration']:,}", folder / FILE)
    except (UserError, OSError, ValueError) as e:
        messages.say(f"note: {folder / FILE} not drawn ({e})")
