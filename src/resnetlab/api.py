"""The Python API, mirroring the CLI for notebooks: each function takes the flags of its subcommand as
keyword arguments and returns what the subcommand prints as data.

    import resnetlab
    summary = resnetlab.train(model="cifar_resnet20", data="cifar10", out="runs/r20", iters=2000)
    result = resnetlab.evaluate(checkpoint="runs/r20/last.pt", data="cifar10")
    top = resnetlab.predict(["cat.jpg"], model="cifar_resnet20", weights="akamaster")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from resnetlab.engine.config import resolve
from resnetlab.engine.inference import load_model, predict as _predict
from resnetlab.engine.trainer import resume_configs, seed_configs, train_runs


def train(*, model: str, data: str, out: str, recipe: str = "cifar-paper", seeds: int = 1,
          stop_after: int | None = None, **overrides: Any) -> dict | list[dict]:
    """Train as `resnetlab train` does (recipe < overrides, e.g. iters=2000, lr=0.05); returns the run's
    summary (one per seed with seeds > 1)."""
    cfg = resolve(recipe, {}, {"model": model, "data": str(data), "out": str(out), **overrides})
    summaries = train_runs(seed_configs(cfg, seeds) if seeds > 1 else [cfg], stop_after=stop_after)
    return summaries if seeds > 1 else summaries[0]


def resume(run_dir: str, stop_after: int | None = None, **changes: Any) -> dict | list[dict]:
    """Continue the run in `run_dir` exactly, as `resnetlab train --resume` does (changes: iters=, ...);
    a folder of seeds trained together returns one summary per seed."""
    configs = resume_configs(Path(run_dir), changes)
    summaries = train_runs(configs, resume=True, stop_after=stop_after)
    return summaries if len(configs) > 1 else summaries[0]


def evaluate(*, data: str, checkpoint: str | list[str] | None = None, model: str | None = None,
             weights: str | None = None, **options: Any) -> dict:
    """Evaluate as `resnetlab evaluate` does (split=, protocol=, device=, plot=, save_predictions=, ...);
    returns its JSON as a dict: errors, per-class accuracy, confusion matrix."""
    from resnetlab.cli.evaluate import build_parser, measure

    argv = ["--data", str(data)]
    for c in [checkpoint] if isinstance(checkpoint, (str, Path)) else checkpoint or []:
        argv += ["--checkpoint", str(c)]
    argv += ["--model", model] if model else []
    argv += ["--weights", str(weights)] if weights else []
    for key, value in options.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return measure(build_parser().parse_args(argv))


def predict(images: list[str | Path], *, checkpoint: str | None = None, model: str | None = None,
            weights: str | None = None, topk: int = 5) -> list[dict]:
    """Classify image files: for each, its top-k classes (by name where the model knows them) and probabilities."""
    loaded = load_model(str(checkpoint) if checkpoint else None, model, str(weights) if weights else None)
    return _predict(loaded, [Path(p) for p in images], topk)
