"""What the experiments share: finding a run already in its folder (to skip, resume or refuse it), reading
its metrics, drawing figures."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from pathlib import Path

from resnetlab.errors import UserError
from resnetlab.files import atomic_write
from resnetlab.training.finished import final_step
from resnetlab.training import load_run_config
from resnetlab.training.resumption import stored_config
from resnetlab.training.config import TrainConfig
from resnetlab.training.learning_rate import extended
from resnetlab.training.rundir import RUN_FILES, RunDir
from resnetlab.training.settings import SAME_RUN


def existing_run(cfg: TrainConfig) -> tuple[TrainConfig, int, dict | None]:
    """(the config to train cfg.out with, the step its checkpoint is at or -1, its summary if it finished)."""
    run_dir = Path(cfg.out)
    step = final_step(run_dir)
    if step < 0:
        return cfg, -1, None
    slimmed = not (run_dir / "last.pt").is_file()
    cfg = reconcile(stored_config(run_dir) if slimmed else load_run_config(run_dir), cfg, step, run_dir)
    if slimmed and step < cfg.iters:
        raise UserError(f"{run_dir} holds a run that finished at {step:,} iterations and was slimmed (its optimizer "
                        f"state dropped), so it cannot continue to the {cfg.iters:,} asked; use another --out")
    summary_path = run_dir / "summary.json"
    try:
        earlier = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    except (OSError, ValueError):  # damaged (not UTF-8, not JSON): the run is resumed, and rewrites it at its end
        earlier = {}
    earlier = earlier if isinstance(earlier, dict) else {}
    return cfg, step, earlier if earlier.get("finished") and step >= cfg.iters else None


# What must match for an existing run folder to count as the run asked for; bookkeeping (device, log and
# evaluation intervals) may differ, and the data is compared by its folder name, since a run trained on
# another machine reads the same images from another path.


def reconcile(old: TrainConfig, new: TrainConfig, step: int, run_dir: Path) -> TrainConfig:
    """The config to continue the run in `run_dir` with, or a refusal naming the folder: one table never
    mixes budgets or recipes."""
    for name in SAME_RUN:
        if getattr(old, name) != getattr(new, name):
            raise UserError(f"{run_dir} holds a run with {name} = {getattr(old, name)!r}, not {getattr(new, name)!r} "
                            "as asked; use another --out, or remove that folder")
    if Path(old.data).name != Path(new.data).name:
        raise UserError(f"{run_dir} holds a run on {old.data}, not {new.data}; use another --out, or remove that folder")
    if old.iters == new.iters:
        return dataclasses.replace(new, milestones=old.milestones)
    try:
        milestones = extended(old, new.iters, step)
    except UserError:
        raise UserError(f"{run_dir} holds a run of {old.iters:,} iterations (now at {step:,}, past its lr milestones "
                        f"{', '.join(f'{m:,}' for m in old.milestones)}), not the {new.iters:,} asked; use another "
                        "--out, or remove that folder") from None
    return dataclasses.replace(new, milestones=milestones)


MARKER = ".resnetlab-reproduce"  # in a folder `reproduce` made: its reports may be rewritten


def claim_folder(out: Path, experiment: str, data: str) -> None:
    """Make or adopt `out` for `reproduce EXPERIMENT`, refusing a folder inside the dataset (its runs would become
    a class folder without images), a file, or a folder of other things (its report.md or results.json are not
    ours to overwrite). A folder is ours when it carries the marker, or holds nothing but a runs/ folder of
    resnetlab runs beside the files a reproduction writes."""
    if Path(data).is_dir() and out.resolve().is_relative_to(Path(data).resolve()):
        raise UserError(f"--out {out} is inside --data {data}: the dataset would hold the runs (as a class folder "
                        "without images); choose a folder outside it")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: a file is there, not a folder")
    if out.is_dir() and not (out / MARKER).is_file():
        entries = sorted(e.name for e in os.scandir(out))
        runs = out / "runs"
        ours = runs.is_dir() and all(e.is_dir() and any((Path(e.path) / f).exists() for f in RUN_FILES)
                                     for e in os.scandir(runs))
        if entries and not ours:
            raise UserError(f"--out {out}: the folder holds other files ({', '.join(entries[:3])}) and was not made "
                            "by resnetlab reproduce; choose a new or empty folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / MARKER, lambda tmp: tmp.write_text(f"resnetlab reproduce {experiment}\n"))
    except OSError as e:
        raise UserError(f"--out {out}: cannot create or write it ({e.strerror or e})") from None


def read_json_object(path: Path) -> dict:
    """A JSON object a run keeps beside its weights (a measurement of them), or {} where it is missing or damaged:
    measured again."""
    try:
        value = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        value = {}
    return value if isinstance(value, dict) else {}


def read_metrics(run_dir: Path) -> list[dict]:
    """The run's metrics records (a damaged or foreign line skipped, as a resume skips it)."""
    return RunDir(run_dir).metrics()


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def runs_table(run_dirs: dict[str, Path]) -> str:
    """How each run trained: precision and mode (with the iteration each began), machine, time, speed (from the
    batch in the run's own config.json: a transfer run's batch need not be the recipe's), and what evaluating
    cost beside it."""
    lines = ["| run | iterations | precision and mode | machine | training time | images/s | evaluation time |",
             "|---|---|---|---|---|---|---|"]
    for name, run_dir in run_dirs.items():
        summary = json.loads((run_dir / "summary.json").read_text())
        paths = summary.get("fast_paths") or []
        how = "; ".join(f"{p['mode']} {p['precision']}" + (f" from {p['from_iteration']:,}" if p["from_iteration"] else "")
                        for p in paths) or "not recorded"
        machines = ", ".join(dict.fromkeys(p["device"] for p in paths)) or summary.get("device", "?")
        seconds = summary.get("train_seconds") or 0.0
        batch = json.loads((run_dir / "config.json").read_text()).get("batch_size")
        speed = f"{summary['iterations'] * batch / seconds:,.0f}" if seconds and batch else "—"
        evaluating = summary.get("eval_seconds")  # not recorded before resnetlab recorded it
        cost = f"{evaluating / 3600:.2f} h ({evaluating / seconds:.1%} of training)" if evaluating and seconds else "—"
        lines.append(f"| {name} | {summary['iterations']:,} | {how} | {machines} | {seconds / 3600:.2f} h | {speed} | {cost} |")
    return "\n".join(lines) + "\n"


RUNS_TABLE_NOTE = ("Training time excludes compiling and evaluation; images/s is what the run measured on its machine "
                   "(runs that shared a machine with another job are slower than one alone); evaluation time is "
                   "the hold-out evaluations' (— where the run predates its recording).")
