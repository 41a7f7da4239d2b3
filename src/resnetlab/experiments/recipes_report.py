"""The recipe comparison's table, figure and sentences, each computed from the measured rows: a difference is
called one only beyond twice its own seed noise (cifar_sentences.noise_threshold's rule)."""

from __future__ import annotations

import math
from pathlib import Path

from resnetlab.experiments.runs import RUNS_TABLE_NOTE, git_commit, runs_table
from resnetlab.runtime.figures import pyplot, save_figure
from resnetlab.training.recipes import RECIPES


def markdown(rows: list[dict]) -> str:
    lines = ["| network | recipe | seeds | error % (final iteration) | trained weights % | final train loss | "
             "error % on its training images (clean) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        error = _points(r["mean"]) + (f" ± {_points(r['std'])}" if r["seeds"] > 1 else "")
        raw = _points(r["trained_mean"]) if r["averaged"] else "same"
        fit = "—" if r.get("train_error_clean") is None else (
            _points(r["train_error_clean"]) + (f" ({_seeds(r['train_error_runs'])})"
                                               if r["train_error_runs"] != r["seeds"] else ""))
        lines.append(f"| ResNet-{r['depth']} | {label(r)} | {r['seeds']} | {error} | {raw} | {r['train_loss']:.3f} | "
                     f"{fit} |")
    return "\n".join(lines) + "\n"


def _points(fraction: float) -> str:
    return f"{100 * fraction:.2f}"


def label(row: dict) -> str:
    if row["without"]:
        return f"cifar-modern without {row['without']}"
    return row["recipe"]


def seed_noise(rows: list[dict]) -> float | None:
    """One run's seed noise: the largest std among the rows of several seeds."""
    stds = [r["std"] for r in rows if r["seeds"] > 1]
    return max(stds) if stds else None


def threshold(noise: float, a: dict, b: dict) -> float:
    return 2 * noise * math.sqrt(1 / a["seeds"] + 1 / b["seeds"])


def _find(rows: list[dict], depth: int, variant: str) -> dict | None:
    return next((r for r in rows if r["depth"] == depth and r["variant"] == variant), None)


def comparison_sentences(rows: list[dict]) -> str:
    """Per depth: the modern recipe's delivered error against the paper's, and whether it is a difference."""
    noise = seed_noise(rows)
    out = []
    for depth in dict.fromkeys(r["depth"] for r in rows):
        modern, paper = _find(rows, depth, "modern"), _find(rows, depth, "paper")
        if not (modern and paper):
            continue
        diff = modern["mean"] - paper["mean"]
        said = (f"ResNet-{depth}: cifar-modern {modern['mean']:.2%} ({_seeds(modern['seeds'])}) against cifar-paper "
                f"{paper['mean']:.2%} ({_seeds(paper['seeds'])}), {diff * 100:+.2f} points")
        if noise is None:
            out.append(said + "; with one seed each, no difference can be told from seed noise.")
            continue
        t = threshold(noise, modern, paper)
        verdict = ("the modern recipe is better" if diff < -t else "the modern recipe is worse" if diff > t else
                   "within the seed noise: neither recipe is shown better")
        out.append(f"{said}: {verdict} (threshold {t:.2%}, twice the difference's noise with s = {noise:.2%}).")
    return " ".join(out)


def fit_sentences(rows: list[dict]) -> str:
    """Per depth: does the modern recipe fit its training images less (underfit) or generalize less (overfit)?"""
    noise, out = seed_noise(rows), []
    for depth in dict.fromkeys(r["depth"] for r in rows):
        modern, paper = _find(rows, depth, "modern"), _find(rows, depth, "paper")
        if not (modern and paper and modern.get("train_error_clean") is not None
                and paper.get("train_error_clean") is not None):
            continue
        m, p = _fit(modern), _fit(paper)
        said = (f"Why, at ResNet-{depth}: on the images they trained on (eval mode, unaugmented) cifar-modern's "
                f"weights err on {m['train']:.2%} ({_seeds(m['seeds'])}), the paper recipe's on {p['train']:.2%} "
                f"({_seeds(p['seeds'])}); hold-out minus training error, of the same runs: {m['gap'] * 100:.2f} points "
                f"for cifar-modern, {p['gap'] * 100:.2f} for the paper's")
        if noise is None:
            out.append(said + "; no seed noise measured yet to tell a difference by.")
            continue
        t = threshold(noise, m, p)
        fits_less, generalizes_more = m["train"] - p["train"] > t, p["gap"] - m["gap"] > t
        reading = ("cifar-modern fits its training images less and generalizes more: at this budget it underfits, "
                   "its regularization costing more fit than it buys in generalization (a lighter recipe or a "
                   "longer schedule is what it wants)" if fits_less and generalizes_more else
                   "cifar-modern fits its training images less and does not generalize more: it underfits"
                   if fits_less else "cifar-modern fits its training images as well or better and generalizes "
                   "less" if m["gap"] - p["gap"] > t else "neither fit nor generalization differs beyond the noise")
        out.append(f"{said}. So {reading}. (A difference counts beyond {t:.2%}, twice its noise with the hold-out "
                   f"error's seed noise s = {noise:.2%} as the yardstick.)")
    return " ".join(out)


def _fit(row: dict) -> dict:
    """The row's fit: its training error, the runs it was measured on (as `seeds`, for threshold) and its gap."""
    return {"train": row["train_error_clean"], "seeds": row["train_error_runs"], "gap": row["fit_gap"]}


def ablation_sentences(rows: list[dict], depth: int) -> str:
    """What taking each ingredient out did, against the modern recipe's mean at `depth`."""
    modern, noise = _find(rows, depth, "modern"), seed_noise(rows)
    ablations = [r for r in rows if r["without"] and r["depth"] == depth]
    if not (modern and ablations):
        return ""
    parts, mattered = [], []
    for r in ablations:
        diff = r["mean"] - modern["mean"]
        t = threshold(noise, r, modern) if noise is not None else None
        beyond = t is not None and abs(diff) > t
        parts.append(f"without {r['without']} {r['mean']:.2%} ({diff * 100:+.2f}{' beyond' if beyond else ''})")
        if beyond:
            mattered.append(("helps" if diff > 0 else "hurts") + f" ({r['without']})")
    noise_note = (f"one run each against the {modern['seeds']}-seed mean {modern['mean']:.2%}; a change counts beyond "
                  f"{threshold(noise, ablations[0], modern):.2%}" if noise is not None else
                  "no seed noise measured yet, so none of these is a difference")
    found = ("; ".join(mattered) + " at this budget") if mattered else "no ingredient's removal is beyond the noise"
    return f"ResNet-{depth}, each ingredient taken out ({noise_note}): {', '.join(parts)}. So: {found}."


def figure(rows: list[dict], path: Path) -> None:
    plt = pyplot()
    depths = list(dict.fromkeys(r["depth"] for r in rows))
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(rows) + 2), 4))
    labels, x = [], 0
    for depth in depths:
        for r in [r for r in rows if r["depth"] == depth]:
            colour = "tab:blue" if r["variant"] == "paper" else "tab:orange" if r["variant"] == "modern" else "tab:gray"
            ax.bar(x, 100 * r["mean"], yerr=100 * r["std"] if r["seeds"] > 1 else None, color=colour, capsize=3)
            labels.append(f"{depth}: {r['without'] and '-' + r['without'] or r['variant']}")
            x += 1
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("hold-out error (%), final iteration")
    low = min(100 * r["mean"] for r in rows)
    ax.set_ylim(max(0, low - 3), None)
    save_figure(plt, fig, "CIFAR-10 ResNets: paper recipe (blue), cifar-modern (orange), without one ingredient", path)


def report(o, rows: list[dict], run_dirs: dict[str, Path], pending: list[str], device_name: str, split: str) -> str:
    """report.md: how it was made, the table, the verdicts, the figure, how each run trained."""
    modern = ", ".join(f"{k} {v}" for k, v in RECIPES["cifar-modern"].items())
    unfinished = (f"\nStill training or not started: {', '.join(pending)}; the command again resumes them and "
                  "rewrites this report.\n" if pending else "")
    return f"""# CIFAR-10: today's recipe beside the paper's

**Budget: {o.iters:,} iterations of batch 128 per run (the paper trains 64,000); the errors are on the {split},
which no run trained on, at the final iteration (no checkpoint chosen on it).**
Where a recipe keeps an average of the weights (cifar-modern's EMA), the error is that average's: the weights
`evaluate`, `predict` and `export` use, fixed as the recipe's output before any run trained.

## How this was made
- command: `{o.command}`
- resnetlab commit {git_commit()}; report written on {device_name}
- cifar-paper: the paper's Sec. 4.2 recipe (SGD momentum 0.9, wd 1e-4, lr 0.1 ÷10 at 50% and 75%, pad-and-crop,
  flip, per-pixel mean){f"; its runs are {o.paper_runs}'s (the same recipe and budget)" if o.paper_runs else ""}
- cifar-modern (`training/recipes.py`, each value's source there): {modern}; warm-up and EMA horizon scaled
  to {o.iters:,} iterations
- ablations: cifar-modern with one ingredient given the paper's value, at ResNet-{min(o.depths)}, seed 0
{unfinished}
## Results
{markdown(rows)}
Errors in % of that split; "trained weights" is the error of the weights the optimizer left, where the recipe
delivers their average. The training loss is on each recipe's own targets (mixed and smoothed for
cifar-modern): it compares runs of one recipe, not the recipes. The last column is the delivered weights' error
on the images the run trained on, in eval mode and unaugmented (— where the run kept no weights): it compares
the recipes' fit.

{comparison_sentences(rows)}

{fit_sentences(rows)}

{ablation_sentences(rows, min(o.depths))}

![errors](figure.png)

## How each run trained
{RUNS_TABLE_NOTE}

{runs_table(run_dirs)}"""


def _seeds(n: int) -> str:
    return f"{n} seed{'s' if n != 1 else ''}"
