"""A run's final weights, wherever the run keeps them, and `slim`, which makes a finished run light.

A run trains into last.pt: the model, the optimizer's momentum, RNG and schedule state, everything an exact resume
needs, about twice the weights. Once the run has finished, nobody resumes it, so `slim` keeps what is used and drops
the rest: final.json (the final iteration, the sha256 of last.pt and of the final tensors) and, unless the weights
are dropped, final.safetensors, or a reference to resnetlab's shipped weights when those are the same tensors (a
repository then carries them once). Everything that reads a run's weights reads them through `final_weights`.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from resnetlab.data.download import file_digest
from resnetlab.errors import UserError
from resnetlab.files import atomic_write, read_small_text
from resnetlab.inference.load import load_model
from resnetlab.inference.weight_export import export_weights
from resnetlab.models import pretrained, weights_fetch
from resnetlab.models.safetensors_files import read_safetensors
from resnetlab.runtime.checkpoint import load_checkpoint
from resnetlab.training.rundir import FINAL_RECORD, FINAL_WEIGHTS, RunDir


def tensors_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 over the tensors themselves (names, dtypes, shapes, fp32 values), whatever file holds them: the same
    weights in a safetensors file, a checkpoint or another file's metadata give the same digest."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu()
        t = (t.float() if t.is_floating_point() else t).contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def final_record(run_dir: Path) -> dict | None:
    """A slimmed run's final.json, or None where the run has none."""
    path = run_dir / FINAL_RECORD
    if not path.is_file():
        return None
    try:
        record = json.loads(read_small_text(path, "the run's final record", limit=1 << 20))
    except (json.JSONDecodeError, RecursionError):
        record = None
    if not (isinstance(record, dict) and isinstance(record.get("iterations"), int)
            and isinstance(record.get("source_sha256"), str)):
        raise UserError(f"{path} is damaged (not the record `resnetlab slim` writes)")
    return record


def final_step(run_dir: Path) -> int:
    """The iteration the run's weights are at: last.pt's step, or the slimmed run's final one; -1 without either."""
    if (run_dir / "last.pt").is_file():
        return load_checkpoint(run_dir / "last.pt", training=True)["state"]["step"]
    record = final_record(run_dir)
    return record["iterations"] if record else -1


def source_digest(run_dir: Path) -> str:
    """The sha256 of the last.pt the final weights come from: what results measured from them are keyed by, the same
    before and after `slim`."""
    if (run_dir / "last.pt").is_file():
        return file_digest(run_dir / "last.pt", "sha256")
    record = final_record(run_dir)
    if record is None:
        raise UserError(f"{run_dir}: no last.pt and no {FINAL_RECORD}: the run holds no weights")
    return record["source_sha256"]


def _kept(run_dir: Path) -> tuple[str, dict | None]:
    """Where the run's final weights are, the one place that decides it: "last.pt" (unfinished or not slimmed),
    "shipped" (final.json names resnetlab's shipped weights), FINAL_WEIGHTS, or "dropped" (slimmed with
    --drop-weights: final.json records their digest, nothing holds them); with final.json's record."""
    if (run_dir / "last.pt").is_file():
        return "last.pt", None
    record = final_record(run_dir)
    if record is None:
        raise UserError(f"{run_dir}: no last.pt and no {FINAL_RECORD}: the run holds no weights")
    if record.get("shipped"):
        return "shipped", record
    return (FINAL_WEIGHTS if (run_dir / FINAL_WEIGHTS).is_file() else "dropped"), record


def weights_dropped(run_dir: Path) -> bool:
    """Whether the run was slimmed with --drop-weights (False for a folder holding no run at all)."""
    return (run_dir / FINAL_RECORD).is_file() and _kept(run_dir)[0] == "dropped"


def final_weights(run_dir: Path) -> str:
    """The file to load the run's final weights from (load_model reads each the same way)."""
    where, record = _kept(run_dir)
    if where == "shipped":
        model, name = record["shipped"].split(":", 1)
        return str(weights_fetch.fetch(pretrained.get_weights(model, name)))
    if where == "dropped":
        raise UserError(f"{run_dir}: its final weights were not kept (slimmed with --drop-weights; {FINAL_RECORD} "
                        f"records their sha256 {record['tensors_sha256'][:16]}...); train the run again to get them")
    return str(run_dir / where)


def _shipped_as(model: str, digest: str) -> str | None:
    """'model:name' of resnetlab's shipped weights holding exactly these tensors, or None."""
    for w in pretrained.REGISTRY.values():
        if w.bundled and w.model == model:
            if tensors_digest(read_safetensors(weights_fetch.fetch(w))["model"]) == digest:
                return f"{w.model}:{w.name}"
    return None


def slim(run_dir: Path, keep_weights: bool = True) -> str:
    """Replace a finished run's last.pt by its final weights (final.safetensors or a shipped reference) and
    final.json; refuse an unfinished run (its last.pt is what resumes it). Returns what was kept, in words."""
    if not (run_dir / "last.pt").is_file():
        record = final_record(run_dir)
        if record is None:
            raise UserError(f"{run_dir}: no last.pt, not a resnetlab run to slim")
        if keep_weights or not (run_dir / FINAL_WEIGHTS).is_file():
            return "already slimmed"
        record["kept"] = "none (the sha256 of the final tensors only)"  # the record first: it stays true
        atomic_write(run_dir / FINAL_RECORD, lambda tmp: tmp.write_text(json.dumps(record, indent=2) + "\n"))
        os.unlink(run_dir / FINAL_WEIGHTS)
        return record["kept"]
    rundir = RunDir(run_dir)
    rundir.take(resume=True, step=final_step(run_dir))  # the run's lock: never slimmed under a running trainer
    try:
        summary = _summary(run_dir)
        step = final_step(run_dir)
        if not summary.get("finished") or step != summary.get("iterations"):
            raise UserError(f"{run_dir} is unfinished (iteration {step:,}): its last.pt is what resumes it, and stays")
        loaded = load_model(str(run_dir / "last.pt"))
        digest = tensors_digest(loaded.model.state_dict())
        shipped = _shipped_as(loaded.name, digest)
        record = {"iterations": step, "source_sha256": file_digest(run_dir / "last.pt", "sha256"),
                  "tensors_sha256": digest, "weights": "averaged" if loaded.averaged else "trained",
                  **({"shipped": shipped} if shipped else {})}
        if keep_weights and not shipped:
            export_weights(loaded, run_dir / FINAL_WEIGHTS, "safetensors")
        record["kept"] = (f"resnetlab's shipped weights {shipped}" if shipped else
                          FINAL_WEIGHTS if keep_weights else "none (the sha256 of the final tensors only)")
        atomic_write(run_dir / FINAL_RECORD, lambda tmp: tmp.write_text(json.dumps(record, indent=2) + "\n"))
        os.unlink(run_dir / "last.pt")  # last: a crash before leaves the run as it was, slimmed again next time
        return record["kept"]
    finally:
        rundir.release()


def _summary(run_dir: Path) -> dict:
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        summary = None
    return summary if isinstance(summary, dict) else {}
