"""Transfer on CIFAR-10 with no class leaking from pretraining into the task: ResNet-20 pretrained on the 4
vehicle classes, then trained on the 6 animal classes from a few images per class, three ways over seeds:
full fine-tuning, linear probing (everything but the classifier frozen), and from scratch with the same budget.
Every way is measured on one fixed animal hold-out (500 images per class) that none of them trains on.

The datasets are folders of links to the source's own images (made again, identically, by every invocation:
the links are not results), so the runs read the same JPEG files the rest of the project does.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from resnetlab.errors import UserError
from resnetlab.experiments.runs import existing_run
from resnetlab.training.finished import final_weights
from resnetlab.runtime.figures import pyplot, save_figure
from resnetlab.training import train
from resnetlab.training.config import TrainConfig, configure

VEHICLES = ("airplane", "automobile", "ship", "truck")
ANIMALS = ("bird", "cat", "deer", "dog", "frog", "horse")
HOLDOUT_PER_CLASS = 500
WAYS = {  # way: (recipe, extra settings); from scratch gets the paper's recipe at the same iterations
    "fine-tuning": ("finetune", {}),
    "linear probing": ("finetune", dict(freeze="backbone")),
    "from scratch": ("cifar-paper", {}),
}


@dataclass(frozen=True)
class Plan:
    source: Path  # a class-per-folder tree holding the 10 CIFAR-10 classes (train/ or the classes themselves)
    out: Path
    per_class: tuple[int, ...]
    seeds: int
    pretrain_iters: int
    iters: int


def class_root(source: Path) -> Path:
    root = source / "train" if (source / "train").is_dir() else source
    missing = [c for c in (*VEHICLES, *ANIMALS) if not (root / c).is_dir()]
    if missing:
        raise UserError(f"--data {source}: not CIFAR-10's class folders (no {', '.join(missing[:3])})")
    return root


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def _not_ours(path: Path) -> None:
    raise UserError(f"{path} is not one of the image links reproduce transfer makes; it is kept: move it away, or "
                    "choose another --out")


def _link_tree(target: Path, files: dict[str, list[Path]]) -> None:
    """target/<class>/<file> -> the source image, made anew (a stale or partial tree is replaced)."""
    for cls, paths in files.items():
        folder = target / cls
        for level in (target.parent, target, folder):  # never through a link planted on the way: a user's folder
            if level.is_symlink() or (level.exists() and not level.is_dir()):
                raise UserError(f"{level} is a link or a file where reproduce transfer keeps its folder of image "
                                "links; nothing is deleted through it: remove it, or choose another --out")
        folder.mkdir(parents=True, exist_ok=True)
        wanted = {p.name: p for p in paths}
        for existing in folder.iterdir():
            if existing.name not in wanted:
                if not existing.is_symlink():  # only the links this tree holds are ever removed
                    _not_ours(existing)
                existing.unlink()
        for name, path in wanted.items():
            link = folder / name
            if link.exists() and not link.is_symlink():
                _not_ours(link)
            if not (link.is_symlink() and os.readlink(link) == str(path)):
                link.unlink(missing_ok=True)
                link.symlink_to(path)


def make_datasets(plan: Plan) -> tuple[Path, dict[int, Path]]:
    """The vehicle pretraining set, and for each size the animal set (train/: n per class; test/: the hold-out)."""
    root = class_root(plan.source).resolve()
    data = plan.out / "data"
    _link_tree(data / "vehicles", {c: _images(root / c) for c in VEHICLES})
    rng = np.random.default_rng(0)
    listed = {c: _images(root / c) for c in ANIMALS}
    order = {c: [paths[i] for i in rng.permutation(len(paths))] for c, paths in listed.items()}
    for c, paths in order.items():
        if len(paths) < HOLDOUT_PER_CLASS + max(plan.per_class):
            raise UserError(f"--data: class {c} has {len(paths)} images, fewer than the hold-out of "
                            f"{HOLDOUT_PER_CLASS} and {max(plan.per_class)} to train on")
    animals = {}
    for n in plan.per_class:
        folder = data / f"animals-{n}"
        _link_tree(folder / "test", {c: p[:HOLDOUT_PER_CLASS] for c, p in order.items()})
        _link_tree(folder / "train", {c: p[HOLDOUT_PER_CLASS:HOLDOUT_PER_CLASS + n] for c, p in order.items()})
        animals[n] = folder
    return data / "vehicles", animals


def _run(cfg: TrainConfig, log) -> dict:
    cfg, step, finished = existing_run(cfg)
    if finished:
        log(f"{cfg.out}: finished earlier, skipped")
        return finished
    log(f"{cfg.out}: {'resuming' if step >= 0 else 'training'} ({cfg.iters:,} iterations)")
    return train(cfg, resume=step >= 0)


def run_all(plan: Plan, device: str = "auto", log=print) -> dict[tuple[str, int], list[float]]:
    """Pretrain once, then every (way, size, seed); returns the final hold-out errors per (way, size)."""
    vehicles, animals = make_datasets(plan)
    runs = plan.out / "runs"
    pre = configure("cifar-paper", model="cifar_resnet20", data=str(vehicles), out=str(runs / "pretrain"),
                    iters=plan.pretrain_iters, device=device, val="none", eval_every=max(1, plan.pretrain_iters // 10))
    _run(pre, log)
    errors: dict[tuple[str, int], list[float]] = {}
    for n, folder in animals.items():
        for way, (recipe, extra) in WAYS.items():
            for seed in range(plan.seeds):
                start = dict(weights=final_weights(runs / "pretrain")) if recipe == "finetune" else {}
                cfg = configure(recipe, model="cifar_resnet20", data=str(folder), val="test",
                                out=str(runs / f"{way.replace(' ', '-')}-{n}-seed{seed}"), iters=plan.iters, seed=seed,
                                device=device, eval_every=max(1, plan.iters // 5), **start, **extra)
                summary = _run(cfg, log)
                errors.setdefault((way, n), []).append(summary["final_val_error"])
    return errors


def table(errors: dict[tuple[str, int], list[float]]) -> str:
    lines = ["| training images per class | way | hold-out error (mean ± std) | seeds | per seed |", "|---|---|---|---|---|"]
    for (way, n), e in sorted(errors.items(), key=lambda kv: (kv[0][1], list(WAYS).index(kv[0][0]))):
        std = statistics.stdev(e) if len(e) > 1 else 0.0
        lines.append(f"| {n} | {way} | {statistics.fmean(e):.2%} ± {std:.2%} | {len(e)} | "
                     f"{', '.join(f'{x:.2%}' for x in e)} |")
    return "\n".join(lines) + "\n"


def verdict(errors: dict[tuple[str, int], list[float]]) -> str:
    """What the numbers say, per size: does fine-tuning beat from scratch by more than the seeds' noise?"""
    out = []
    for n in sorted({n for _, n in errors}):
        mean = {w: statistics.fmean(errors[(w, n)]) for w in WAYS if (w, n) in errors}
        noise = max((statistics.stdev(errors[(w, n)]) for w in WAYS if len(errors.get((w, n), [])) > 1), default=0.0)
        ft, scratch, probe = mean.get("fine-tuning"), mean.get("from scratch"), mean.get("linear probing")
        if ft is None or scratch is None:
            continue
        gap = scratch - ft
        judged = ("beats" if gap > 2 * noise else "does not beat, beyond the seeds' noise,")
        out.append(f"With {n} images per class, fine-tuning ({ft:.2%}) {judged} training from scratch ({scratch:.2%}); "
                   f"linear probing: {probe:.2%}; the largest seed std is {noise:.2%}." if probe is not None else "")
    return " ".join([*out, trend(errors)]).strip()


def trend(errors: dict[tuple[str, int], list[float]]) -> str:
    """How fine-tuning's gain over from scratch moves with the images per class, said only as far as the seeds'
    noise allows: a step smaller than twice the larger std of its two sizes is called no change."""
    sizes = sorted(n for w, n in errors if w == "fine-tuning" and ("from scratch", n) in errors)
    if len(sizes) < 2:
        return ""
    gain = {n: statistics.fmean(errors[("from scratch", n)]) - statistics.fmean(errors[("fine-tuning", n)]) for n in sizes}
    noise = {n: max((statistics.stdev(errors[(w, n)]) for w in ("fine-tuning", "from scratch") if len(errors[(w, n)]) > 1),
                    default=0.0) for n in sizes}
    steps = [gain[b] - gain[a] for a, b in zip(sizes, sizes[1:])]
    margins = [2 * max(noise[a], noise[b]) for a, b in zip(sizes, sizes[1:])]
    listed = ", ".join(f"{100 * gain[n]:.1f} points at {n}" for n in sizes)
    if all(d < -m for d, m in zip(steps, margins)):
        said = "it shrinks at every step as the new classes get more images, beyond the seeds' noise"
    elif all(d > m for d, m in zip(steps, margins)):
        said = "it grows at every step as the new classes get more images, beyond the seeds' noise"
    else:
        said = "not every step of it exceeds the seeds' noise"
    return f"Fine-tuning's gain over training from scratch: {listed} images per class; {said}."


def figure(errors: dict[tuple[str, int], list[float]], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for way in WAYS:
        sizes = sorted(n for w, n in errors if w == way)
        if not sizes:
            continue
        means = [100 * statistics.fmean(errors[(way, n)]) for n in sizes]
        stds = [100 * (statistics.stdev(errors[(way, n)]) if len(errors[(way, n)]) > 1 else 0) for n in sizes]
        ax.errorbar(sizes, means, yerr=stds, marker="o", capsize=3, label=way)
    ax.set(xscale="log", xlabel="training images per animal class", ylabel="hold-out error (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(plt, fig, "ResNet-20: vehicles -> animals (6 classes), mean ± std over seeds", path)
