"""Table 6, Fig. 6 and Fig. 7 on CIFAR-10: train every (net, depth, seed) with the paper's recipe,
skipping finished runs and resuming interrupted ones, then plot and report."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from resnetlab.data import ArrayDataset, DeviceLoader, open_dataset
from resnetlab.data.sources import select_split, validation_name
from resnetlab.errors import RunInUse
from resnetlab.experiments.responses import response_layers, response_stds
from resnetlab.experiments.runs import existing_run, read_json_object, read_metrics
from resnetlab.inference.load import load_model
from resnetlab.training.finished import final_weights, source_digest
from resnetlab.models import count_parameters, create_model
from resnetlab.runtime.devices import resolve_device
from resnetlab.runtime.checkpoint import write_json
from resnetlab.runtime.figures import pyplot, save_figure
from resnetlab.training import train, train_runs
from resnetlab.training.config import TrainConfig, configure

# The two halves of Sec. 4.2's protocol, as the settings that differ: "holdout" trains on 45k images and
# validates on the fixed 5k hold-out (how the paper fixed its schedule); "paper" trains the final models on all
# 50k with that schedule and no validation at all (final iteration only, nothing chosen on any split), and the
# test split, where the dataset has one, is measured once at the end.
PROTOCOLS = {"holdout": {}, "paper": {"holdout": 0, "val": "none"}}

RESPONSES_FILE = "responses.json"  # in each run folder: Fig. 7's layer response stds, keyed by the final weights

PAPER_TABLE6 = {20: "8.75", 32: "7.51", 44: "7.17", 56: "6.97", 110: "6.43 (6.61±0.16)", 1202: "7.93"}


@dataclass(frozen=True)
class RunSpec:
    net: str  # "plain" or "resnet"
    depth: int
    seed: int

    @property
    def model(self) -> str:
        return f"cifar_{self.net}{self.depth}"

    @property
    def name(self) -> str:
        return f"{self.model}-seed{self.seed}"


def plan(nets: list[str], depths: list[int], seeds: int) -> list[RunSpec]:
    return [RunSpec(n, d, s) for n in nets for d in depths for s in range(seeds)]


def run_all(specs: list[RunSpec], out: Path, data: str, iters: int, device: str, eval_every: int | None,
            together: bool = False, log=print, protocol: str = "holdout") -> dict[RunSpec, dict]:
    """Train each run in out/runs/<name>; a finished one is read back, an interrupted one resumed.

    together=True trains the pending seeds of each network in one process (as one stacked network) when they
    stand at the same iteration; otherwise one after another.
    """
    summaries: dict[RunSpec, dict] = {}
    pending: dict[tuple[str, int], list[tuple[RunSpec, TrainConfig, int]]] = {}
    for i, spec in enumerate(specs, 1):
        run_dir = out / "runs" / spec.name
        cfg = run_config("cifar-paper", spec.model, data, run_dir, iters, spec.seed, device, eval_every,
                         **PROTOCOLS[protocol])
        cfg, step, finished = existing_run(cfg)
        if finished:
            log(f"[{i}/{len(specs)}] {spec.name}: finished earlier, skipped")
            summaries[spec] = finished
            continue
        pending.setdefault((spec.net, spec.depth), []).append((spec, cfg, step))
    for group in pending.values():
        if together and len(group) > 1:  # whether they stand at one iteration, as they are now
            group = [(spec, *now) for spec, cfg, _ in group if (now := still_pending(spec, cfg, summaries, log))]
        names = ", ".join(spec.name for spec, _, _ in group)
        if together and len(group) > 1 and len({step for _, _, step in group}) == 1:
            resume = group[0][2] >= 0
            log(f"{names}: {'resuming' if resume else 'training'} together for {iters:,} iterations")
            try:
                results = train_runs([cfg for _, cfg, _ in group], resume=resume)
                summaries.update({spec: r for (spec, _, _), r in zip(group, results)})
                continue
            except RunInUse as e:  # one of them trains in another process: the others go one by one
                log(f"{names}: not together, one of them is trained by {e.holder}")
        for spec, cfg, _ in group:
            train_or_skip(spec, cfg, summaries, log)
    return summaries


def run_config(recipe: str, model: str, data: str, run_dir: Path, iters: int, seed: int, device: str,
               eval_every: int | None, **settings) -> TrainConfig:
    """A reproduction's run: the recipe at `iters`, evaluated 20 times and logged 20-100 times over the run."""
    return configure(recipe, model=model, data=data, out=str(run_dir), iters=iters, seed=seed, device=device,
                     eval_every=eval_every or max(1, iters // 20), log_every=max(1, min(100, iters // 20)),
                     **settings)


def train_or_skip(spec, cfg: TrainConfig, summaries: dict, log) -> None:
    """Train `spec` (any run with a .name) to its end into summaries, resumed where it stopped; skipped when it
    has finished meanwhile or another process holds it."""
    if not (now := still_pending(spec, cfg, summaries, log)):  # the runs before it took hours
        return
    cfg, step = now
    # train() says "resuming ... at iteration N" itself once it holds the run: saying it here would
    # announce a resume that the next line may refuse (another process holding the run)
    log(f"{spec.name}: {cfg.iters:,} iterations")
    try:
        summaries[spec] = train(cfg, resume=step >= 0)
    except RunInUse as e:
        # Several processes (or machines sharing the folder) given the same command split the plan:
        # each trains the runs no other one holds, and the report lists the rest as in progress.
        log(f"{spec.name}: skipped, another process is training it ({e.holder})")


def still_pending(spec, cfg: TrainConfig, summaries: dict, log) -> tuple[TrainConfig, int] | None:
    """(config, step) to train `spec` from, read again now; None, with its summary kept, if it has finished.
    Another process given the same command may have finished the run (or moved it on) since the plan was made:
    better read it again than load, check and compile a run only to find it done."""
    cfg, step, finished = existing_run(cfg)
    if finished:
        log(f"{spec.name}: finished by another process meanwhile, skipped")
        summaries[spec] = finished
        return None
    return cfg, step


def finished_summaries(specs: list, out: Path, folder=None) -> dict:
    """The summaries of the runs of `specs` that have finished (a summary.json saying so), each in out/runs/
    <name>, or where folder(spec) says."""
    done = {}
    for spec in specs:
        path = (folder(spec) if folder else out / "runs" / spec.name) / "summary.json"
        try:
            summary = json.loads(path.read_text()) if path.is_file() else {}
        except (OSError, ValueError):
            summary = {}
        if isinstance(summary, dict) and summary.get("finished"):
            done[spec] = summary
    return done


def table6(specs: list[RunSpec], out: Path) -> tuple[str, list[dict]]:
    rows = []
    for net in dict.fromkeys(s.net for s in specs):
        for depth in dict.fromkeys(s.depth for s in specs if s.net == net):
            runs = [s for s in specs if s.net == net and s.depth == depth]
            errors = [json.loads((out / "runs" / s.name / "summary.json").read_text())["final_val_error"] for s in runs]
            train_errors = [read_metrics(out / "runs" / s.name)[-1]["train_error"] for s in runs]
            rows.append({
                "net": net, "depth": depth, "params": count_parameters(create_model(runs[0].model)),
                "best": min(errors), "mean": statistics.fmean(errors),
                "std": statistics.stdev(errors) if len(errors) > 1 else 0.0, "seeds": len(errors),
                "final_train_error": statistics.fmean(train_errors),
                "paper": PAPER_TABLE6.get(depth, "—") if net == "resnet" else "—",
            })
    lines = ["| net | depth | params | error (best) | error (mean ± std) | seeds | final train error | paper (test error, %) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        spread = f" ± {r['std']:.2%}" if r["seeds"] > 1 else ""  # one run has no std to show, not a std of 0
        lines.append(f"| {'ResNet' if r['net'] == 'resnet' else 'plain'} | {r['depth']} | {r['params'] / 1e6:.2f}M | "
                     f"{r['best']:.2%} | {r['mean']:.2%}{spread} | {r['seeds']} | "
                     f"{r['final_train_error']:.2%} | {r['paper']} |")
    return "\n".join(lines) + "\n", rows


def lowest_seeds(specs: list[RunSpec]) -> list[RunSpec]:
    """One run per network, its lowest seed among `specs`: what the figures draw (seed 0 may still be training)."""
    lowest: dict[tuple[str, int], RunSpec] = {}
    for spec in sorted(specs, key=lambda s: s.seed):
        lowest.setdefault((spec.net, spec.depth), spec)
    return [spec for spec in specs if spec in lowest.values()]


def figure6(specs: list[RunSpec], out: Path, path: Path) -> None:
    """Plain nets left, ResNets middle (and 110 vs 1202 right when both ran): dashed train, solid val error."""
    plt = pyplot()
    first_seed = lowest_seeds(specs)
    panels = [("plain", [s for s in first_seed if s.net == "plain"]),
              ("ResNet", [s for s in first_seed if s.net == "resnet" and s.depth != 1202])]
    big = [s for s in first_seed if s.net == "resnet" and s.depth in (110, 1202)]
    if len(big) == 2:
        panels.append(("ResNet-110 vs 1202", big))
    panels = [p for p in panels if p[1]]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    for ax, (title, runs) in zip(axes[0], panels):
        for k, spec in enumerate(runs):
            m = read_metrics(out / "runs" / spec.name)
            color = f"C{k}"
            ax.plot([r["iteration"] for r in m], [100 * r["train_error"] for r in m], "--", color=color, lw=1)
            val = [r for r in m if "val_error" in r]
            ax.plot([r["iteration"] for r in val], [100 * r["val_error"] for r in val], "-", color=color, lw=2,
                    label=f"{spec.net}-{spec.depth}")
        ax.set(title=title, xlabel="iteration", ylabel="error (%)", ylim=(0, None))
        ax.grid(alpha=0.3)
        ax.legend()
    save_figure(plt, fig, "CIFAR-10: dashed = training error, solid = validation error", path)


def figure7(specs: list[RunSpec], out: Path, data: str, device: str, path: Path) -> dict[str, list[float]]:
    """Std of each 3x3 layer's response on the evaluation split, for each network's lowest seed."""
    plt = pyplot()
    dev = resolve_device(device)
    split, _ = evaluation_split(data)
    stds: dict[str, list[float]] = {}
    for spec in lowest_seeds(specs):
        run = out / "runs" / spec.name
        key = {"source_sha256": source_digest(run), "images": len(split)}
        cached = read_json_object(run / RESPONSES_FILE)
        if {k: cached.get(k) for k in key} != key:  # measured once per final weights: a slimmed run may keep none
            loaded = load_model(final_weights(run))
            batches = DeviceLoader(split.images, split.labels, 500, dev, loaded.normalization, augment=False)
            model = loaded.model.to(dev)
            cached = {**key, "stds": response_stds(model, response_layers(model), batches)}
            write_json(run / RESPONSES_FILE, cached)
        stds[f"{spec.net}-{spec.depth}"] = cached["stds"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7))
    for name, values in stds.items():
        style = "--" if name.startswith("plain") else "-"
        top.plot(range(1, len(values) + 1), values, style, label=name, lw=1.2)
        bottom.plot(range(1, len(values) + 1), sorted(values, reverse=True), style, label=name, lw=1.2)
    top.set(xlabel="layer index (original order)", ylabel="std")
    bottom.set(xlabel="layer index (sorted by magnitude)", ylabel="std")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        ax.legend()
    save_figure(plt, fig, "Standard deviations of 3x3 layer responses (after BN, before ReLU/addition)", path)
    return stds


def evaluation_split(data: str) -> tuple[ArrayDataset, str]:
    """The split the runs validated on (the trainer's choice for --val auto), and its name for the report."""
    ds = open_dataset(data)
    name = validation_name(ds, "auto")
    split = select_split(ds, name)
    label = {"test": "test split", "val": "val/ split"}.get(name, f"{len(split):,}-image validation hold-out of train")
    return split, label
