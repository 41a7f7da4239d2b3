"""Is a result an artifact of the precision it trained in? Compare two runs of one recipe and seed that differ
only in precision (e.g. a committed bf16 run and the same config retrained with --amp off for its first N
iterations) at every evaluation both reached, and write the comparison as markdown.

    resnetlab train --config results/cifar10-16k/runs/cifar_plain56-seed0/config.json --amp off \
        --out results/precision-control/cifar_plain56-fp32 --stop-after 2400
    python benchmarks/precision_control.py results/cifar10-16k/runs/cifar_plain56-seed0 \
        results/precision-control/cifar_plain56-fp32 --against results/cifar10-16k/runs/cifar_plain20-seed0 \
        --out results/precision-control/report.md

--against adds a third run (the shallower net, in the first run's precision) so that the gap being checked
stands beside the difference precision makes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def evaluations(run: Path) -> dict[int, dict]:
    """iteration -> the metrics line of each evaluation (training error over the last window, hold-out error)."""
    lines = (json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip())
    return {m["iteration"]: m for m in lines if "val_error" in m}


def precision(run: Path) -> str:
    path = json.loads((run / "config.json").read_text()).get("fast_path") or {}
    return f"{path.get('mode', '?')} {path.get('precision', '?')}"


def label(run: Path) -> str:
    return f"{json.loads((run / 'config.json').read_text())['model']}, {precision(run)}"


# What may differ between the run and its control: where it was written and how it computed.
PRECISION_KEYS = {"out", "amp", "fast", "compile", "fast_path"}


def other_differences(a: Path, b: Path) -> list[str]:
    from resnetlab.training.config import upgraded  # older runs' config.json in today's keys and values

    ca, cb = (upgraded(json.loads((run / "config.json").read_text())) for run in (a, b))
    return sorted(k for k in set(ca) | set(cb) if k not in PRECISION_KEYS and ca.get(k) != cb.get(k))


def compare(runs: list[Path]) -> str:
    differ = other_differences(runs[0], runs[1])
    if differ:
        raise SystemExit(f"{runs[0]} and {runs[1]} differ in more than precision: {', '.join(differ)}")
    evals = [evaluations(run) for run in runs]
    common = sorted(set.intersection(*(set(e) for e in evals)))
    if not common:
        raise SystemExit("the runs share no evaluation iteration: train the control at least to the first one")
    names = [label(run) for run in runs]
    head = "| iteration | " + " | ".join(f"{n}: train / hold-out error" for n in names) + " |"
    rows = [head, "|---|" + "---|" * len(runs)]
    for it in common:
        cells = [f"{e[it]['train_error']:.2%} / {e[it]['val_error']:.2%}" for e in evals]
        rows.append(f"| {it:,} | " + " | ".join(cells) + " |")
    last = common[-1]
    a, b = evals[0][last], evals[1][last]
    text = [f"# Precision control: {names[0]} against {names[1]}", "",
            "Same recipe, seed and data order; the runs differ only in precision. Training error is the mean over "
            "the log window ending at the iteration; hold-out error is the 5k hold-out of train.", "",
            "Runs: " + ", ".join(f"`{run}`" for run in runs) + " (made by `benchmarks/precision_control.py`, whose "
            "docstring gives the commands).", "", *rows, "",
            f"At iteration {last:,} precision moves the training error by {abs(a['train_error'] - b['train_error']):.2%} "
            f"and the hold-out error by {abs(a['val_error'] - b['val_error']):.2%}."]
    if len(runs) > 2:
        c = evals[2][last]
        text.append(f"The gap to {names[2]} at that iteration is {abs(a['train_error'] - c['train_error']):.2%} in "
                    f"training error and {abs(a['val_error'] - c['val_error']):.2%} in hold-out error.")
    return "\n".join(text) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="the run under test (its metrics.jsonl and config.json)")
    p.add_argument("control", type=Path, help="the same config in another precision")
    p.add_argument("--against", type=Path, help="a third run to put the difference beside (e.g. the shallower net)")
    p.add_argument("--out", type=Path, help="write the markdown here (default: print it)")
    args = p.parse_args(argv)
    runs = [args.run, args.control] + ([args.against] if args.against else [])
    for run in runs:
        if not (run / "metrics.jsonl").is_file() or not (run / "config.json").is_file():
            print(f"precision_control: {run} is not a run folder (no metrics.jsonl or config.json)", file=sys.stderr)
            return 2
    text = compare(runs)
    if args.out:
        args.out.write_text(text)
        print(f"wrote {args.out}")
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
