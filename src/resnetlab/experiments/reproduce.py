"""The paper's experiments end to end, as library functions: their runs, tables, figures and report.md, from
typed options (`resnetlab reproduce cifar|imagenet|transfer` parses its flags into them and prints the result)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from resnetlab.errors import UserError
from resnetlab.experiments import cifar, cifar_final, imagenet, recipes, recipes_report, transfer
from resnetlab.experiments import cifar_sentences as sentences
from resnetlab.experiments.runs import RUNS_TABLE_NOTE, claim_folder, git_commit, runs_table
from resnetlab.files import atomic_write
from resnetlab.runtime import distributed
from resnetlab.runtime.devices import resolve_device
from resnetlab.training import fastpath
from resnetlab.training.config import TrainConfig
from resnetlab.training.learning_rate import PLAIN_NO_WARMUP, WARMUP_DEPTH

# The paper's CIFAR schedule (64k iterations) is the default of TrainConfig.iters: one place for it.
PAPER_ITERS = TrainConfig().iters


@dataclass(frozen=True)
class Cifar:
    """Table 6, Fig. 6 and Fig. 7: `nets` ("plain", "resnet") at `depths`, `seeds` each."""

    data: str
    out: str
    nets: list[str]
    depths: list[int]
    seeds: int
    iters: int
    device: str
    eval_every: int | None
    together: str  # "on", "off" or "auto" (on with CUDA)
    report_only: bool
    command: str  # the command line, for the report
    protocol: str = "holdout"  # cifar.PROTOCOLS: "holdout" (45k/5k) or "paper" (all 50k, no validation)


@dataclass(frozen=True)
class Recipes:
    """cifar-modern against cifar-paper at `depths`, `seeds` each, and cifar-modern without each of `ablations`."""

    data: str
    out: str
    depths: list[int]
    seeds: int
    ablations: list[str]  # recipes.INGREDIENTS to take out one at a time, at ResNet-20
    iters: int
    device: str
    paper_runs: str | None  # a `reproduce cifar` folder of the same budget holding the paper recipe's runs
    report_only: bool
    command: str


@dataclass(frozen=True)
class Transfer:
    data: str
    out: str
    sizes: tuple[int, ...]  # training images per animal class
    seeds: int
    pretrain_iters: int
    iters: int
    device: str
    command: str


def reproduce_imagenet(o: imagenet.Budget, shortcuts: list[str], device: str, eval_every: int | None,
                       workers: int) -> list[Path]:
    """Table 2, Table 3 and Fig. 4; the files written (none on the ranks of torchrun other than the first)."""
    imagenet.check_data(o.data)
    out = Path(o.out)
    nets = imagenet.plan(shortcuts)
    dist = distributed.setup(resolve_device(device).type)
    clean = False
    try:
        if dist.is_main:
            claim_folder(out, "imagenet", o.data)
        summaries = imagenet.run_all(nets, out, o.data, o.iters, o.batch_size, o.lr, device,
                                     eval_every, workers)
        clean = True
    finally:
        distributed.teardown(dist, clean)
    if not dist.is_main:
        return []  # rank 0 tests and writes, in a process of its own; the others are done
    tested = {net: imagenet.ten_crop(net, out, o.data, device, workers) for net in nets}
    table2, table3, rows = imagenet.tables(nets, out, tested)
    atomic_write(out / "table2.md", lambda tmp: tmp.write_text(table2))
    if table3:
        atomic_write(out / "table3.md", lambda tmp: tmp.write_text(table3))
    imagenet.figure4(nets, out, out / "figure4.png")
    ran_on = next(iter(summaries.values()))["device"]
    text = imagenet.report(nets, out, o, rows, table2, table3, ran_on, git_commit())
    atomic_write(out / "report.md", lambda tmp: tmp.write_text(text))
    atomic_write(out / "results.json", lambda tmp: tmp.write_text(json.dumps({"rows": rows}, indent=2)))
    return [out / name for name in ("report.md", "table2.md", "table3.md" if table3 else "", "figure4.png") if name]


def reproduce_cifar(o: Cifar) -> list[Path]:
    """The runs (resumed where they stopped; with report_only, none), then the report over the finished ones."""
    out = Path(o.out)
    claim_folder(out, "cifar", o.data)
    start = time.time()
    specs = cifar.plan(o.nets, o.depths, o.seeds)
    if o.report_only:
        summaries = cifar.finished_summaries(specs, out)
    else:
        together = o.together == "on" or (o.together == "auto" and resolve_device(o.device).type == "cuda")
        summaries = cifar.run_all(specs, out, o.data, o.iters, o.device, o.eval_every, together,
                                  protocol=o.protocol)
        # Runs another process was training may have finished meanwhile; the rest are reported as in progress.
        summaries.update(cifar.finished_summaries([s for s in specs if s not in summaries], out))
    pending = [s for s in specs if s not in summaries]
    specs = [s for s in specs if s in summaries]
    if not specs:
        raise UserError(f"no run of these networks has finished in {out / 'runs'} (those not trained here are "
                        "being trained by another process)" if not o.report_only else
                        f"--report-only: no run of these networks has finished in {out / 'runs'}")
    report, rows, stds = cifar_report(o, out, specs, pending, summaries, start)
    atomic_write(out / "report.md", lambda tmp: tmp.write_text(report))
    atomic_write(out / "results.json", lambda tmp: tmp.write_text(json.dumps({"table6": rows, "figure7": stds}, indent=2)))
    return [out / name for name in ("report.md", "table6.md", "figure6.png", "figure7.png")]


def cifar_report(o: Cifar, out: Path, specs: list, pending: list, summaries: dict, start: float) -> tuple[str, list, dict]:
    """Table 6, Fig. 6 and Fig. 7 written beside the report's text; returns (report, rows, stds)."""
    if o.protocol == "paper":
        rows = cifar_final.rows(specs, out, o.data, o.device)
        table = cifar_final.markdown(rows)
    else:
        table, rows = cifar.table6(specs, out)
    atomic_write(out / "table6.md", lambda tmp: tmp.write_text(table))
    cifar.figure6(specs, out, out / "figure6.png")
    stds = cifar.figure7(specs, out, o.data, o.device, out / "figure7.png")
    _, split_name = cifar.evaluation_split(o.data)
    if o.protocol == "paper" and split_name != "test split":  # what the hold-out protocol validated on trained these
        split_name = split_name.replace("validation hold-out", "hold-out") + " (these runs trained on it too)"
    deep_plain = any(s.net == "plain" and s.depth >= WARMUP_DEPTH for s in specs + pending)  # finished or not
    text = _cifar_text(o, out, specs, rows, table, split_name, summaries, start, stds,
                       f"\n- {PLAIN_NO_WARMUP}" if deep_plain else "")
    return text + sentences.pending_sentence(pending, out) + "\n" + _differences(o, split_name), rows, stds


def _cifar_text(o: Cifar, out: Path, specs: list, rows: list, table: str, split_name: str, summaries: dict,
                start: float, stds: dict, warmup_note: str) -> str:
    wall = sum(s.get("train_seconds", 0) for s in summaries.values())
    device = next(iter(summaries.values()))["device"]
    device_name = fastpath.device_name(resolve_device(o.device))
    budget = ("the paper's full schedule (64k iterations)" if o.iters >= PAPER_ITERS else
              f"SHORTENED: {o.iters:,} iterations per run instead of the paper's 64,000 "
              f"(lr milestones scaled to {o.iters // 2:,} and {o.iters * 3 // 4:,})")
    if o.protocol == "paper":
        images = ", ".join(sorted({f"{r['train_images']:,}" for r in rows}))
        protocol = (f"the paper's final protocol: every run trained on all {images} training images (`split.json` "
                    "in each run folder), with the schedule fixed beforehand on the 45k/5k split (results/"
                    "cifar10-16k, cifar10-64k); no validation during training, the final iteration's weights "
                    "measured once")
        table_note = cifar_final.test_sentence(rows, o.data)
    else:
        protocol = (f"the schedule-fixing half of the paper's protocol: errors are measured on the {split_name}, "
                    "which no run trained on")
        table_note = ("Errors in % of the evaluation split at the end of each run; the paper's column is its "
                      "CIFAR-10 *test* error after 64k iterations.")
    return f"""# CIFAR-10: plain vs residual networks (Table 6, Fig. 6, Fig. 7)

**Budget: {budget}; {sentences.seeds_reported(rows, o.seeds)}. Protocol: {protocol}.**

## How this was made
- command: `{o.command}`
- resnetlab commit {git_commit()}, torch {torch.__version__}, report written on {device_name} ({device})
- training time {wall / 3600:.2f} h over {len(specs)} runs (report written {time.strftime('%Y-%m-%d %H:%M')}, {sentences.elapsed_since(start)} this invocation)
- data `{o.data}`; recipe `cifar-paper` (batch 128, SGD momentum 0.9,
  weight decay 1e-4, lr 0.1 divided by 10 at 50% and 75% of the run, 4-pixel pad + random crop + flip,
  per-pixel mean subtraction; lr 0.01 warm-up for ResNets of depth >= {WARMUP_DEPTH}){warmup_note}

## How each run trained
{RUNS_TABLE_NOTE}

{runs_table({s.name: out / "runs" / s.name for s in specs})}
## Table 6
{table_note}

{table}
## Figure 6
![Figure 6](figure6.png)

## Figure 7
Measured on the {split_name}. {sentences.response_sentence(stds)}

![Figure 7](figure7.png)

## Compared with the paper
{sentences.depth_curve_sentence(rows)} {sentences.degradation_sentence(rows)} {sentences.deepest_plain_sentence(rows)}
{sentences.noise_sentence(rows)}
"""


def _differences(o: Cifar, split_name: str) -> str:
    shorter = ("this run is far shorter than the paper's 64k iterations, so every error is higher than Table 6 and "
               "the ranking of close depths can change; " if o.iters < PAPER_ITERS else "")
    measured = ("these runs use the data's test split" if split_name == "test split" else
                "these runs report training error (the data has no test split)" if o.protocol == "paper" else
                f"these runs validate on the {split_name}")
    jpeg = "; the shared data is JPEG-compressed (quality 75), which costs a few points of accuracy"
    return (f"\nWhere ours differs and why: {shorter}the paper reports test error on the original CIFAR-10 test "
            f"set, while {measured}{jpeg if 'jpeg' in o.data.lower() else ''}.\n")


def reproduce_recipes(o: Recipes) -> list[Path]:
    """The runs (resumed where they stopped; with report_only, none), then report.md, figure.png, results.json
    over those finished."""
    out = Path(o.out)
    claim_folder(out, "recipes", o.data)
    paper_runs = Path(o.paper_runs) if o.paper_runs else None
    runs = recipes.plan(o.depths, o.seeds, o.ablations)
    summaries = (recipes.finished_summaries(runs, out, paper_runs) if o.report_only else
                 recipes.train_all(runs, out, paper_runs, o.data, o.iters, o.device))
    done = [r for r in runs if r in summaries]
    if not done:
        raise UserError(f"no run of this comparison has finished in {out / 'runs'}"
                        f"{' or ' + str(paper_runs / 'runs') if paper_runs else ''}")
    rows = recipes.rows(done, summaries, out, paper_runs, o.data, o.device)
    recipes_report.figure(rows, out / "figure.png")
    text = recipes_report.report(o, rows, {r.name: recipes.run_folder(r, out, paper_runs) for r in done},
                                 [r.name for r in runs if r not in summaries],
                                 fastpath.device_name(resolve_device(o.device)), cifar.evaluation_split(o.data)[1])
    atomic_write(out / "report.md", lambda tmp: tmp.write_text(text))
    atomic_write(out / "results.json", lambda tmp: tmp.write_text(json.dumps({"rows": rows}, indent=2)))
    return [out / "report.md", out / "figure.png", out / "results.json"]


def reproduce_transfer(o: Transfer) -> list[Path]:
    """Pretraining on the vehicles, then fine-tuning, linear probing and training from scratch on the animals."""
    out = Path(o.out)
    claim_folder(out, "transfer", o.data)
    plan = transfer.Plan(Path(o.data), out, o.sizes, o.seeds, o.pretrain_iters, o.iters)
    errors = transfer.run_all(plan, o.device)
    transfer.figure(errors, out / "figure.png")
    runs = {p.name: p for p in sorted((out / "runs").iterdir()) if p.is_dir()}
    report = f"""# Transfer: CIFAR-10 vehicles -> animals

ResNet-20 pretrained on the 4 vehicle classes (airplane, automobile, ship, truck; {o.pretrain_iters:,} iterations
of the paper's recipe, all 20,000 images), then trained on the 6 animal classes from {', '.join(map(str, o.sizes))} images per
class, three ways, {o.seeds} seeds each, {o.iters:,} iterations of batch 128 for every way: fine-tuning (the
`finetune` recipe: lr 0.01, the new classifier at 0.1, the weights' normalization), linear probing (the same with
`--freeze backbone`), and from scratch (the paper's recipe at the same iterations). No animal image or class is
seen in pretraining. Errors: final iteration, on a fixed hold-out of {transfer.HOLDOUT_PER_CLASS} images per animal
class that no run trains on (the test/ split of each animal set).

## How this was made
- command: `{o.command}`
- resnetlab commit {git_commit()}, torch {torch.__version__}, on {fastpath.device_name(resolve_device(o.device))}

## Results
{transfer.table(errors)}
{transfer.verdict(errors)}

![error against training images per class](figure.png)

## How each run trained
{RUNS_TABLE_NOTE}

{runs_table(runs)}
"""
    atomic_write(out / "report.md", lambda tmp: tmp.write_text(report))
    return [out / "report.md", out / "figure.png"]
