"""Today's recipe beside the paper's on CIFAR-10 (`resnetlab reproduce recipes`): ResNets at one budget, the
paper's recipe against `cifar-modern`, over seeds, hold-out error at the final iteration (mean ± std); and what
each ingredient of the modern recipe buys at ResNet-20 (one run of the recipe without it)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from resnetlab.errors import UserError
from resnetlab.experiments import cifar, cifar_final
from resnetlab.experiments.runs import existing_run, read_metrics
from resnetlab.training.config import TrainConfig, configure
from resnetlab.training.finished import weights_dropped

# An ingredient of cifar-modern: the settings that make it, given the paper recipe's values in its ablation.
# Every setting cifar-modern changes from the paper's at depths below 110 belongs to one (a test holds this);
# the EMA's decay and interval mean nothing without the EMA, the error-based warm-up is off in both there.
INGREDIENTS = {
    "label-smoothing": ("label_smoothing",),
    "mixup": ("mixup_alpha",),
    "cutmix": ("cutmix_alpha",),
    "trivialaugment": ("auto_augment",),
    "random-erase": ("random_erase",),
    "norm-weight-decay": ("norm_weight_decay",),
    "ema": ("model_ema",),
    "cosine-warmup": ("schedule", "milestones", "lr_warmup_iters"),
}


@dataclass(frozen=True)
class Variant:
    name: str  # "paper", "modern", "modern-no-mixup"
    recipe: str
    without: str = ""  # the ingredient taken out of cifar-modern

    def settings(self, iters: int) -> dict:
        """What differs from the recipe: the ingredient's settings at the paper recipe's values for `iters`."""
        if not self.without:
            return {}
        paper = configure("cifar-paper", model="cifar_resnet20", data="-", out="-", iters=iters)
        return {key: getattr(paper, key) for key in INGREDIENTS[self.without]}


PAPER, MODERN = Variant("paper", "cifar-paper"), Variant("modern", "cifar-modern")


def without(ingredient: str) -> Variant:
    return Variant(f"modern-no-{ingredient}", "cifar-modern", ingredient)


@dataclass(frozen=True)
class RecipeRun:
    variant: Variant
    depth: int
    seed: int

    @property
    def model(self) -> str:
        return f"cifar_resnet{self.depth}"

    @property
    def name(self) -> str:
        return f"{self.model}-{self.variant.name}-seed{self.seed}"


def parse_ablations(text: str) -> list[str]:
    """--ablate: all, none, or ingredients by name, comma-separated."""
    if text in ("all", "none"):
        return list(INGREDIENTS) if text == "all" else []
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in INGREDIENTS]
    if unknown or not names:
        raise UserError(f"--ablate takes all, none or some of {', '.join(INGREDIENTS)}, not {text!r}")
    return names


def plan(depths: list[int], seeds: int, ablations: list[str]) -> list[RecipeRun]:
    """In the order they train: the modern recipe's seeds at each depth first (seed 0 of ResNet-20 is the one
    shipped), the paper's beside them, then the ablations, one run (seed 0) each at the cheapest network
    (ResNet-20 by default)."""
    runs = [RecipeRun(v, d, s) for d in depths for v in (MODERN, PAPER) for s in range(seeds)]
    return runs + [RecipeRun(without(i), min(depths), 0) for i in ablations]


def run_folder(run: RecipeRun, out: Path, paper_runs: Path | None) -> Path:
    """Where a run lives: the paper recipe's in the Table 6 reproduction of the same budget when one is given
    (`reproduce cifar` trains and names them so), everything else under out/runs."""
    if run.variant is PAPER and paper_runs is not None:
        return paper_runs / "runs" / f"{run.model}-seed{run.seed}"
    return out / "runs" / run.name


def run_config(run: RecipeRun, folder: Path, data: str, iters: int, device: str) -> TrainConfig:
    return cifar.run_config(run.variant.recipe, run.model, data, folder, iters, run.seed, device, None,
                            **run.variant.settings(iters))


def train_all(runs: list[RecipeRun], out: Path, paper_runs: Path | None, data: str, iters: int, device: str,
              log=print) -> dict[RecipeRun, dict]:
    """Each run to its end (finished ones read back, interrupted ones resumed, those another process holds
    skipped), then the summaries of every run finished by now, whoever trained it."""
    summaries: dict[RecipeRun, dict] = {}
    for i, run in enumerate(runs, 1):
        cfg, _, finished = existing_run(run_config(run, run_folder(run, out, paper_runs), data, iters, device))
        if finished:
            log(f"[{i}/{len(runs)}] {run.name}: finished earlier, skipped")
            summaries[run] = finished
            continue
        log(f"[{i}/{len(runs)}] {run.name}")
        cifar.train_or_skip(run, cfg, summaries, log)
    summaries.update(finished_summaries([r for r in runs if r not in summaries], out, paper_runs))
    return summaries


def finished_summaries(runs: list[RecipeRun], out: Path, paper_runs: Path | None) -> dict[RecipeRun, dict]:
    return cifar.finished_summaries(runs, out, lambda run: run_folder(run, out, paper_runs))


def delivered_error(summary: dict) -> float:
    """The error of the weights a recipe delivers: its weight average's where it keeps one (what evaluate,
    predict and export use; fixed before any run trained, never chosen by comparing the two), else the
    trained weights'."""
    return summary[delivered_key(summary)]


def delivered_key(summary: dict) -> str:
    """The summary's entry for the delivered weights' error: `final_<averager>_val_error`, else final_val_error."""
    return next((k for k in summary if k.startswith("final_") and k.endswith("_val_error")
                 and k != "final_val_error"), "final_val_error")


def rows(runs: list[RecipeRun], summaries: dict[RecipeRun, dict], out: Path, paper_runs: Path | None,
         data: str, device: str) -> list[dict]:
    """One row per (depth, variant) with a finished run: hold-out errors (delivered weights, and the trained
    weights' where they differ), mean ± std over seeds; the final training loss, and the delivered weights'
    error on their own training images (clean: no augmentation; runs whose weights were kept), which tells a
    recipe that fits less from one that generalizes less."""
    table = []
    for depth, variant in dict.fromkeys((r.depth, r.variant) for r in runs):
        done = [r for r in runs if (r.depth, r.variant) == (depth, variant) and r in summaries]
        if not done:
            continue
        errors = [delivered_error(summaries[r]) for r in done]
        trained = [summaries[r]["final_val_error"] for r in done]
        losses = [read_metrics(run_folder(r, out, paper_runs))[-1]["train_loss"] for r in done]
        measured = {r: training_images_error(run_folder(r, out, paper_runs), data, device) for r in done}
        fits = {r: e for r, e in measured.items() if e is not None}
        table.append({"depth": depth, "variant": variant.name, "recipe": variant.recipe, "without": variant.without,
                      "seeds": len(done), "errors": errors, "mean": statistics.fmean(errors),
                      "std": statistics.stdev(errors) if len(errors) > 1 else 0.0,
                      "trained_mean": statistics.fmean(trained), "train_loss": statistics.fmean(losses),
                      "train_error_clean": statistics.fmean(fits.values()) if fits else None,
                      "train_error_runs": len(fits),  # the gap: hold-out less training error, of the same runs
                      "fit_gap": statistics.fmean(delivered_error(summaries[r]) - e for r, e in fits.items())
                      if fits else None,
                      "averaged": any(delivered_key(summaries[r]) != "final_val_error" for r in done)})
    return table


def training_images_error(folder: Path, data: str, device: str) -> float | None:
    """The run's final (delivered) weights on the images it trained on, unaugmented; None where the run kept
    no weights (slimmed with --drop-weights)."""
    return None if weights_dropped(folder) else cifar_final.final_errors(folder, data, device)["train_error"]
