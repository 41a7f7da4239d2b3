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
           "backward (convolutions and the classifier; BatchNorm, ReLU, loss and SGD add time, not FLOPs). "
           "Bare step: a fixed batch of 128, eager, SGD; trainer step: the trainer's data pipeline and step on the "
           "fast path `train` chooses (compiled where it is), without evaluation or logging.", ""]
    for r in records:
        out += [f"## {r['isa']}: {r['device_name']}, {r['threads']} threads, torch {r['torch']} ({r['date']})", "",
                "| precision | matmul GFLOP/s | 3x3 conv GFLOP/s |", "|---|---|---|"]
        out += [f"| {p} | {v['matmul']:,.1f} | {v['conv']:,.1f} |" for p, v in r["peaks"].items()]
        out += ["", "| network | step | GFLOP/step | images/s | GFLOP/s | of the peak | one process per core | "
                "where the eager step's time goes |", "|---|---|---|---|---|---|---|---|"]
        for s in r["steps"]:
            per_core = s.get("per_core_images_per_s")
            out.append(f"| {s['model']} | {s.get('kind', 'bare eager')} {s['precision']} | {s['gflop_per_step']:.1f} | "
                       f"{s['images_per_s']:,.0f} | {s['gflops']:,.1f} | {s['fraction_of_peak']:.0%} | "
                       f"{f'{per_core:,.0f} images/s' if per_core else '—'} | {_shares(s) or '—'} |")
        out.append("")
    return "\n".join(out)


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
