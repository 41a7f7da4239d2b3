"""Figures as files: matplotlib without a display, written atomically."""

from __future__ import annotations

from pathlib import Path

from resnetlab.files import atomic_write


def pyplot():
    # Imported on first use: matplotlib costs ~0.4 s at import and only commands that draw need it.
    import matplotlib
    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    return plt


def save_figure(plt, fig, title: str, path: Path) -> None:
    """Through atomic_write: a new file renamed into place, so a link planted at `path` is replaced, never
    written through."""
    fig.suptitle(title)
    fig.tight_layout()
    fmt = Path(path).suffix[1:].lower() or "png"
    try:
        atomic_write(Path(path), lambda tmp: fig.savefig(tmp, dpi=120, format=fmt))
    finally:
        plt.close(fig)
