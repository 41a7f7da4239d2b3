"""The configurations of runs to continue or to start together: a run folder's stored config with the changes a
resume may make (training/settings.py says which), and the seeds of one run trained together."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from resnetlab.errors import UserError
from resnetlab.files import read_small_text
from resnetlab.runtime.checkpoint import load_checkpoint
from resnetlab.training.config import TrainConfig, from_dict, validate
from resnetlab.training.learning_rate import extended
from resnetlab.training.rundir import FINAL_RECORD
from resnetlab.training.settings import RESUME_CHANGEABLE


def seed_configs(cfg: TrainConfig, seeds: int) -> list[TrainConfig]:
    """One config per seed cfg.seed .. cfg.seed+seeds-1, each in RUN_DIR/seed<N>."""
    return [dataclasses.replace(cfg, seed=cfg.seed + i, out=f"{cfg.out}/seed{cfg.seed + i}") for i in range(seeds)]


def load_run_config(run_dir: Path) -> TrainConfig:
    """The configuration a run was started with: config.json, or the checkpoint's copy of it."""
    if run_dir.is_file():
        raise UserError(f"--resume {run_dir}: a file; give the run's folder")
    if not (run_dir / "last.pt").is_file():
        if (run_dir / FINAL_RECORD).is_file():
            raise UserError(f"--resume {run_dir}: the run finished and was slimmed to its final weights "
                            f"({FINAL_RECORD}), its optimizer state dropped: nothing to resume; a new run starts from "
                            f"them with --weights (the file {FINAL_RECORD} names)")
        raise UserError(f"--resume {run_dir}: no last.pt there, nothing to resume")
    return stored_config(run_dir)


def stored_config(run_dir: Path) -> TrainConfig:
    """The run's config.json, else the copy inside its last.pt."""
    path = run_dir / "config.json"
    if path.exists() or path.is_symlink():
        try:
            values = json.loads(read_small_text(path, "the run's config", limit=1 << 20))
        except (json.JSONDecodeError, RecursionError):
            values = None
        if not isinstance(values, dict):
            raise UserError(f"{path} is damaged (not a JSON object); delete it to resume from the copy inside last.pt")
        return from_dict(values, str(path))
    return from_dict(load_checkpoint(run_dir / "last.pt", training=True)["config"], str(run_dir / "last.pt"))


def resume_configs(run_dir: Path, flags: dict[str, Any]) -> list[TrainConfig]:
    """The configs to resume RUN_DIR with (one per seed for runs trained together), with the changes
    `flags` may make."""
    together = sorted(run_dir.glob("seed*/last.pt")) if not (run_dir / "last.pt").exists() else []
    return [resumed_config(p.parent, flags) for p in together] or [resumed_config(run_dir, flags)]


def resumed_config(run_dir: Path, flags: dict[str, Any]) -> TrainConfig:
    """The config of the run in `run_dir`, changed by `flags` where a resumed run may change."""
    fixed = sorted(k for k, v in flags.items() if v is not None and k not in RESUME_CHANGEABLE)
    if fixed:
        raise UserError(f"--{fixed[0].replace('_', '-')} cannot change when resuming (only "
                        f"{', '.join('--' + k.replace('_', '-') for k in sorted(RESUME_CHANGEABLE))})")
    old = load_run_config(run_dir)
    changes = {k: v for k, v in flags.items() if v is not None}
    if "iters" in changes and "milestones" not in changes:
        # --iters on resume follows the schedule a fresh run of that length would have (or is refused).
        step = load_checkpoint(run_dir / "last.pt", training=True)["state"]["step"]
        changes["milestones"] = extended(old, changes["iters"], step)
    cfg = dataclasses.replace(old, out=str(run_dir), **changes)
    validate(cfg)
    return cfg
