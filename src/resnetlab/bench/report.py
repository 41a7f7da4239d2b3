"""The roofline table of every CPU class the bench has met, from the records `resnetlab bench --what roofline
--save DIR` appends to DIR/roofline-<class>.jsonl (the newest record of each class is the one shown)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from resnetlab.errors import UserError
from resnetlab.files import atomic_write


def record_path(folder: Path, isa: str) -> Path:
    return Path(folder) / f"roofline-{re.sub(r'[^A-Za-z0-9]+', '-', isa).strip('-')}.jsonl"


def newest_records(folder: Path) -> list[dict]:
    """The last well-formed record of each roofline-*.jsonl in folder, ordered by class name."""
    records = []
    for path in sorted(Path(folder).glob("roofline-*.jsonl")):
        lines = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
        for line in reversed(lines):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and {"isa", "peaks", "steps"} <= record.keys():
                records.append(record)
                break
    return records


def _shares(row: dict) -> str:
    shares = row.get("time_shares") or {}
    return ", ".join(f"{k} {v:.0%}" for k, v in list(shares.items())[:4])


def table(records: list[dict]) -> str:
    """Markdown: one section per CPU class, its peaks, then each step as GFLOP/s and fraction of the peak."""
    out = ["# The training step against the machine's ceiling", "",
           "Written by `resnetlab bench --what roofline --save benchmarks/results` from the newest record of each CPU "
           "class. Peak: the faster of a 2048x2048 matmul and a 64x128x28x28 3x3 convolution (channels_last) in "
           "that precision, on the step's threads. FLOPs: counted by torch's FlopCounterMode over one forward and "
           "backward (convolutions and the classifier). Bandwidth: a copy and a STREAM triad of 256 MiB buffers in "
           "that precision. Bytes: counted per ATen op over one whole step (forward, backward, SGD), each op reading "
           "its inputs and writing its outputs once (unfused eager traffic). Bound: max(FLOPs / peak, bytes / "
           "bandwidth) for the whole step, and the sum of that bound over the kinds of op; \"of the bound\" is the "
           "per-kind bound over the step's measured time; memory-bound: the kinds whose bytes take longer than "
           "their FLOPs. "
           "Bare step: a fixed batch of 128, eager, SGD; trainer step: the trainer's data pipeline and step on the "
           "fast path `train` chooses (compiled where it is), without evaluation or logging.", ""]
    for r in records:
        out += [f"## {r['isa']}: {r['device_name']}, {r['threads']} threads, torch {r['torch']} ({r['date']})", "",
                "| precision | matmul GFLOP/s | 3x3 conv GFLOP/s | copy GB/s | triad GB/s |", "|---|---|---|---|---|"]
        out += [f"| {p} | {v['matmul']:,.1f} | {v['conv']:,.1f} | {_number(v.get('copy'))} | {_number(v.get('triad'))} |"
                for p, v in r["peaks"].items()]
        out += ["", "| network | step | GFLOP/step | MB/step | images/s | GFLOP/s | of the FLOP peak | bound ms "
                "(whole / per kind) | of the bound | memory-bound | one process per core | where the eager step's "
                "time goes |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        out += [_step_line(s) for s in r["steps"]] + [""]
    return "\n".join(out)


def _number(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _step_line(s: dict) -> str:
    """One step's row; records from before bytes were counted show — in those columns."""
    per_core = s.get("per_core_images_per_s")
    counted = "bound_seconds" in s
    limit = f"{1e3 * s['bound_seconds']:.0f} / {1e3 * s['bound_seconds_per_kind']:.0f}" if counted else "—"
    memory = ", ".join(k for k, v in (s.get("kinds") or {}).items() if v["bound_by"] == "memory") or "—"
    of_bound = f"{s['fraction_of_bound']:.0%}" if counted else "—"
    return (f"| {s['model']} | {s.get('kind', 'bare eager')} {s['precision']} | {s['gflop_per_step']:.1f} | "
            f"{_number(s.get('mb_per_step'), 0)} | {s['images_per_s']:,.0f} | {s['gflops']:,.1f} | "
            f"{s['fraction_of_peak']:.0%} | {limit} | {of_bound} | "
            f"{memory} | {f'{per_core:,.0f} images/s' if per_core else '—'} | {_shares(s) or '—'} |")


def save(record: dict, folder: Path) -> tuple[Path, Path]:
    """Append record to its class's jsonl and rewrite folder/roofline.md from every class's newest record."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--save {folder}: not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    path = record_path(folder, record["isa"])
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    if old and not old.endswith("\n"):
        old += "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(old + json.dumps(record) + "\n", encoding="utf-8"))
    markdown = folder / "roofline.md"
    text = table(newest_records(folder))
    atomic_write(markdown, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return path, markdown
