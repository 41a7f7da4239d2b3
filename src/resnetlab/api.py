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

from resnetlab.engine.config import FIELDS, default_recipe, first_problem, resolve
from resnetlab.engine.inference import load_model, predict as _predict
from resnetlab.engine.trainer import resume_configs, seed_configs, train_runs


def train(*, model: str, data: str, out: str, recipe: str | None = None, seeds: int = 1,
          stop_after: int | None = None, **overrides: Any) -> dict | list[dict]:
    """Train as `resnetlab train` does (recipe < overrides, e.g. iters=2000, lr=0.05); returns the run's
    summary (one per seed with seeds > 1)."""
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"train: seeds must be a positive whole number, not {seeds!r}")
    _check_overrides("train", overrides)
    cfg = resolve(recipe or default_recipe(model), {}, {"model": model, "data": str(data), "out": str(out), **overrides})
    summaries = train_runs(seed_configs(cfg, seeds) if seeds > 1 else [cfg], stop_after=stop_after)
    return summaries if seeds > 1 else summaries[0]


def resume(run_dir: str, stop_after: int | None = None, **changes: Any) -> dict | list[dict]:
    """Continue the run in `run_dir` exactly, as `resnetlab train --resume` does (changes: iters=, ...);
    a folder of seeds trained together returns one summary per seed."""
    _check_overrides("resume", changes)
    configs = resume_configs(Path(run_dir), changes)
    summaries = train_runs(configs, resume=True, stop_after=stop_after)
    return summaries if len(configs) > 1 else summaries[0]


def evaluate(*, data: str, checkpoint: str | list[str] | None = None, model: str | None = None,
             weights: str | None = None, **options: Any) -> dict:
    """Evaluate as `resnetlab evaluate` does (split=, protocol=, device=, plot=, save_predictions=, ...);
    returns its JSON as a dict: errors, per-class accuracy, confusion matrix."""
    from resnetlab.cli.evaluate import build_parser, measure

    parser = build_parser()
    known = sorted({a.dest for a in parser._actions} - {"help", "data", "checkpoint", "model", "weights"})
    for key in options:
        if key not in known:
            raise TypeError(f"evaluate: unknown option {key!r} (known: {', '.join(known)})")
    argv = ["--data", str(data)]
    for c in [checkpoint] if isinstance(checkpoint, (str, Path)) else checkpoint or []:
        argv += ["--checkpoint", str(c)]
    argv += ["--model", model] if model else []
    argv += ["--weights", str(weights)] if weights else []
    for key, value in options.items():
        if isinstance(value, bool):  # store_true flags: given when True
            argv += [f"--{key.replace('_', '-')}"] if value else []
        else:
            argv += [f"--{key.replace('_', '-')}", str(value)]
    return measure(parser.parse_args(argv))


def predict(images: list[str | Path], *, checkpoint: str | None = None, model: str | None = None,
            weights: str | None = None, topk: int = 5) -> list[dict]:
    """Classify image files: for each, its top-k classes (by name where the model knows them) and probabilities."""
    if isinstance(images, (str, Path)):
        raise TypeError(f"predict: give a list of image files, e.g. [{str(images)!r}], not one path")
    images = list(images)
    if not images:
        raise ValueError("predict: the list of images is empty")
    if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
        raise ValueError(f"predict: topk must be a positive whole number, not {topk!r}")
    loaded = load_model(str(checkpoint) if checkpoint else None, model, str(weights) if weights else None)
    return _predict(loaded, [Path(p) for p in images], topk)


def _check_overrides(function: str, values: dict[str, Any]) -> None:
    """Keyword arguments that are not training settings, or of the wrong type, as Python exceptions."""
    problem = first_problem(values)
    if problem is None:
        return
    if problem.startswith("unknown key"):
        raise TypeError(f"{function}: {problem.replace('key', 'keyword argument')} (known: {', '.join(FIELDS)})")
    raise TypeError(f"{function}: {problem}")
