"""Table 2, Table 3 and Fig. 4 on an ImageNet-style folder (train/ and val/ class folders): plain-18/34 and
ResNet-18/34 with the paper's recipe (Sec. 3.4), and ResNet-34 with shortcut options A/B/C, each tested with
10 crops on val. Finished runs are skipped and interrupted ones resumed, as for CIFAR."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from resnetlab.data import open_dataset
from resnetlab.data.imagenet import eval_loader
from resnetlab.errors import UserError
from resnetlab.experiments.cifar_sentences import degradation_sentence
from resnetlab.experiments.runs import RUNS_TABLE_NOTE, existing_run, read_metrics, runs_table
from resnetlab.inference.load import load_model
from resnetlab.training.finished import final_weights
from resnetlab.inference.scoring import evaluate
from resnetlab.models import count_parameters, create_model
from resnetlab.runtime.checkpoint import write_json
from resnetlab.runtime.devices import resolve_device
from resnetlab.runtime.figures import pyplot, save_figure
from resnetlab.training import train_runs
from resnetlab.training.config import configure

PAPER_ITERS = 600_000  # Sec. 3.4: "up to 60 x 10^4 iterations"
# ../shared/reference/paper.md: 10-crop top-1 error on ImageNet val (Table 2), top-1/top-5 (Table 3).
PAPER_TABLE2 = {"plain18": "27.94", "plain34": "28.54", "resnet18": "27.88", "resnet34": "25.03"}
PAPER_TABLE3 = {"A": "25.03 / 7.76", "B": "24.52 / 7.46", "C": "24.19 / 7.40"}


@dataclass(frozen=True)
class Net:
    model: str  # plain18, plain34, resnet18, resnet34
    shortcut: str = ""  # "" is the paper's default: A for ResNet-18/34, none for plain nets

    @property
    def name(self) -> str:
        return self.model if not self.shortcut else f"{self.model}-{self.shortcut}"

    @property
    def option(self) -> str:
        return self.shortcut or ("A" if self.model.startswith("resnet") else "")

    @property
    def label(self) -> str:
        kind, depth = ("plain", self.model[5:]) if self.model.startswith("plain") else ("ResNet", self.model[6:])
        return f"{kind}-{depth}" + (f" ({self.option})" if self.shortcut else "")


def plan(shortcuts: list[str]) -> list[Net]:
    """Table 2's four nets, then ResNet-34 with every other shortcut option asked for (Table 3)."""
    nets = [Net("plain18"), Net("plain34"), Net("resnet18"), Net("resnet34")]
    return nets + [Net("resnet34", s) for s in shortcuts if s != "A"]


def run_all(nets: list[Net], out: Path, data: str, iters: int, batch_size: int, lr: float | None, device: str,
            eval_every: int | None, workers: int, log=print) -> dict[Net, dict]:
    summaries = {}
    for i, net in enumerate(nets, 1):
        cfg = configure("imagenet-paper", model=net.model, shortcut=net.shortcut, data=data,
                        out=str(out / "runs" / net.name), iters=iters, batch_size=batch_size, lr=lr, device=device,
                        workers=workers, val="val", eval_every=eval_every or max(1, iters // 20),
                        log_every=max(1, min(100, iters // 20)))
        cfg, step, finished = existing_run(cfg)
        if finished:
            log(f"[{i}/{len(nets)}] {net.name}: finished earlier, skipped")
            summaries[net] = finished
            continue
        log(f"[{i}/{len(nets)}] {net.name}: {'resuming' if step >= 0 else 'training'} for {iters:,} iterations")
        # One process group for all the runs of a torchrun job: ended by the caller.
        summaries[net] = train_runs([cfg], resume=step >= 0, teardown=False)[0]
    return summaries


def ten_crop(net: Net, out: Path, data: str, device: str, workers: int) -> dict:
    """The 10-crop top-1/top-5 error of a finished run on val (Sec. 3.4), kept beside the run."""
    run_dir = out / "runs" / net.name
    cached = run_dir / "ten_crop.json"
    iterations = json.loads((run_dir / "summary.json").read_text())["iterations"]
    if cached.is_file():
        result = json.loads(cached.read_text())
        if result.get("iterations") == iterations:
            return result
    loaded = load_model(final_weights(run_dir))
    val = open_dataset(data).splits["val"]
    measured = evaluate(loaded.model.to(resolve_device(device)), eval_loader(val, 25, workers, protocol="10-crop"))
    result = {key: measured[key] for key in ("count", "loss", "top1_error", "top5_error")} | {"iterations": iterations}
    write_json(cached, result)
    return result


def tables(nets: list[Net], out: Path, tested: dict[Net, dict]) -> tuple[str, str, list[dict]]:
    rows = []
    for net in nets:
        metrics = read_metrics(out / "runs" / net.name)
        evaluated = [r for r in metrics if "val_error" in r]
        rows.append({
            "name": net.name, "label": net.label, "model": net.model, "option": net.option,
            "net": "plain" if net.model.startswith("plain") else "resnet", "depth": int(net.model[-2:]),
            "params": count_parameters(create_model(net.model, **({"shortcut": net.shortcut} if net.shortcut else {}))),
            "top1": tested[net]["top1_error"], "top5": tested[net]["top5_error"], "mean": tested[net]["top1_error"],
            "center_val_error": evaluated[-1]["val_error"] if evaluated else None,
            "final_train_error": metrics[-1]["train_error"],
        })
    head = ("| net | params | 10-crop top-1 | 10-crop top-5 | centre-crop val error | final train error | "
            "paper 10-crop top-1 |\n|---|---|---|---|---|---|---|\n")
    table2 = head + "".join(
        f"| {r['label']} | {r['params'] / 1e6:.1f}M | {r['top1']:.2%} | {r['top5']:.2%} | "
        f"{_pct(r['center_val_error'])} | {r['final_train_error']:.2%} | {PAPER_TABLE2[r['model']]} |\n"
        for r in rows if not r["name"].startswith("resnet34-"))
    options = [r for r in rows if r["model"] == "resnet34"]
    table3 = ("| ResNet-34 shortcut | params | 10-crop top-1 / top-5 | paper top-1 / top-5 |\n|---|---|---|---|\n" + "".join(
        f"| {r['option']} | {r['params'] / 1e6:.1f}M | {r['top1']:.2%} / {r['top5']:.2%} | {PAPER_TABLE3[r['option']]} |\n"
        for r in options)) if len(options) > 1 else ""
    return table2, table3, rows


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.2%}"


def figure4(nets: list[Net], out: Path, path: Path) -> None:
    """Plain nets left, ResNets right (option A): thin = training error, bold = centre-crop val error."""
    plt = pyplot()
    panels = [("plain", [n for n in nets if n.model.startswith("plain")]),
              ("ResNet", [n for n in nets if n.model.startswith("resnet") and not n.shortcut])]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, (title, group) in zip(axes, panels):
        for k, net in enumerate(group):
            m = read_metrics(out / "runs" / net.name)
            ax.plot([r["iteration"] for r in m], [100 * r["train_error"] for r in m], color=f"C{k}", lw=0.8)
            val = [r for r in m if "val_error" in r]
            ax.plot([r["iteration"] for r in val], [100 * r["val_error"] for r in val], color=f"C{k}", lw=2.5,
                    label=net.label)
        ax.set(title=title, xlabel="iteration", ylabel="error (%)")
        ax.grid(alpha=0.3)
        ax.legend()
    save_figure(plt, fig, "ImageNet: thin = training error, bold = validation error (centre crop)", path)


def check_data(data: str) -> None:
    ds = open_dataset(data)
    if ds.in_memory or "val" not in ds.splits:
        raise UserError(f"--data {data}: reproduce imagenet needs an image-folder dataset of large images with "
                        "train/ and val/ class folders (the paper reports ImageNet val)")


@dataclass(frozen=True)
class Budget:
    """What `reproduce imagenet` was asked for, as the report states it."""
    data: str
    out: str
    iters: int
    batch_size: int
    lr: float | None  # None: the recipe's 0.1 scaled with the batch
    shortcuts: str


def report(nets: list[Net], out: Path, budget: Budget, rows: list[dict], table2: str, table3: str, device: str,
           commit: str) -> str:
    lr = budget.lr if budget.lr is not None else 0.1 * budget.batch_size / 256  # the recipe's, scaled with the batch
    shortened = budget.iters < PAPER_ITERS or budget.batch_size != 256 or lr != 0.1
    described = (f"SHORTENED: {budget.iters:,} iterations of batch {budget.batch_size} at lr {lr:g} per run instead of "
              f"the paper's up to {PAPER_ITERS:,} of batch 256 at lr 0.1" if shortened else
              f"the paper's budget ({PAPER_ITERS:,} iterations of batch 256 at lr 0.1)")
    command = " ".join(["resnetlab reproduce imagenet", "--data", budget.data, "--out", budget.out, "--iters",
                        str(budget.iters), "--batch-size", str(budget.batch_size), "--lr", f"{lr:g}", "--shortcuts",
                        budget.shortcuts])
    t3 = f"## Table 3 (ResNet-34, shortcut options)\n\n{table3}\n" if table3 else ""
    return f"""# ImageNet: plain vs residual networks (Table 2, Table 3, Fig. 4)

**Budget: {described}.**

## How this was made
- command: `{command}`
- resnetlab commit {commit}, device {device}; data `{budget.data}`, errors on its val/ split
- recipe `imagenet-paper` (Sec. 3.4): SGD momentum 0.9, weight decay 1e-4, lr 0.1 divided by 10 after 3
  evaluations without improvement, scale augmentation 256-480, 224 crop, flip, PCA lighting; 10-crop testing.
  Every error is the run's final-iteration model: no checkpoint was chosen on val.

## How each run trained
{RUNS_TABLE_NOTE}

{runs_table({net.name: out / "runs" / net.name for net in nets})}
## Table 2
Errors in % on val; the paper's column is its 10-crop top-1 error on ImageNet val.

{table2}
{t3}
## Figure 4
![Figure 4](figure4.png)

## Compared with the paper
{degradation_sentence(rows)}
{'With a budget this short the errors are far above the paper' + "'" + 's and the ranking of close nets can change.' if shortened else ''}
"""
