"""The run's curves as a figure in its folder (curves.png): training and validation loss and error against
iterations, redrawn at every evaluation and at the end, so a run can be looked at while it trains."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from resnetlab.errors import UserError
from resnetlab.runtime import messages
from resnetlab.runtime.figures import pyplot, save_figure

FILE = "curves.png"


def draw(folder: Path, records: list[dict[str, Any]], title: str) -> None:
    """curves.png from metrics.jsonl's records; a figure that cannot be written is said, never fatal."""
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
