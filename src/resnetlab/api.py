"""The Python API, mirroring the CLI for notebooks: each function takes the flags of its subcommand as
keyword arguments and returns what the subcommand prints as data.

    import resnetlab
    summary = resnetlab.train(model="cifar_resnet20", data="cifar10", out="runs/r20", iters=2000)
    result = resnetlab.evaluate(checkpoint="runs/r20/last.pt", data="cifar10", plot="confusion.png")
    top = resnetlab.predict(["cat.jpg", "photos/"], model="cifar_resnet20", weights="akamaster")
    loaded = resnetlab.load("runs/r20/last.pt")  # .model, .classes, .transforms()
    weights = resnetlab.get_weights("resnet50", "IMAGENET1K_V2")  # .meta, .transforms(), .url, .sha256
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable

from PIL import Image
from torch import Tensor

from resnetlab.data.imagenet import PROTOCOLS
from resnetlab.errors import RunInterrupted, SettingError, TrainingDiverged, UserError
from resnetlab.inference.evaluation import Options, measure
from resnetlab.inference.export import export as _export
from resnetlab.inference.load import LoadedModel, load_model
from resnetlab.inference.predict import expand_folders
from resnetlab.inference.predict import predict as _predict
from resnetlab.models.pretrained import Weights
from resnetlab.runtime.devices import DEVICES
from resnetlab.training import resume_configs, seed_configs, train_runs
from resnetlab.training.config import FIELDS, first_problem, recipe_for, resolve

__all__ = ["RunInterrupted", "TrainingDiverged", "evaluate", "export", "load", "predict", "resume", "train"]


def api_errors(function: Callable) -> Callable:
    """UserErrors raised below the API name the keyword argument, not the command-line flag ("data=", not
    "--data"): the same message a command prints, in the caller's own terms. Still a UserError (a ValueError)."""
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except SettingError as e:  # a setting's bad value, by its name
            raise UserError(f"{function.__name__}: {e.as_keyword()}") from None
        except UserError as e:  # other messages may name flags in their advice
            text = re.sub(r"(?<![\w-])--([a-z][a-z0-9-]*)", lambda m: m.group(1).replace("-", "_") + "=", str(e))
            raise UserError(f"{function.__name__}: {text}") from None

    return wrapper


@api_errors
def train(*, model: str, data: str, out: str, recipe: str | None = None, seeds: int = 1,
          stop_after: int | None = None, quiet: bool = False, **overrides: Any) -> dict | list[dict]:
    """Train as `resnetlab train` does (recipe < overrides, e.g. iters=2000, lr=0.05); returns the run's
    summary (one per seed with seeds > 1). Its lines go to the logger "resnetlab" (printed unless quiet=True or
    the logger has handlers of its own); Ctrl-C raises RunInterrupted, a KeyboardInterrupt, after saving."""
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"train: seeds must be a positive whole number, not {seeds!r}")
    _check_stop_after("train", stop_after)
    if isinstance(overrides.get("weights"), Weights):  # get_weights(...)'s object: its name
        overrides["weights"] = overrides["weights"].name
    elif isinstance(overrides.get("weights"), os.PathLike):  # a file, as data= and out= take one
        overrides["weights"] = os.fspath(overrides["weights"])
    _check_overrides("train", overrides)
    model = _named("train", "model", model)
    data, out = _named("train", "data", data, path=True), _named("train", "out", out, path=True)
    recipe = recipe or recipe_for(model, overrides.get("weights"))
    cfg = resolve(recipe, {}, {"model": model, "data": data, "out": out, **overrides})
    summaries = train_runs(seed_configs(cfg, seeds) if seeds > 1 else [cfg], stop_after=stop_after, quiet=bool(quiet))
    return summaries if seeds > 1 else summaries[0]


@api_errors
def resume(run_dir: str, stop_after: int | None = None, quiet: bool = False, **changes: Any) -> dict | list[dict]:
    """Continue the run in `run_dir` exactly, as `resnetlab train --resume` does (changes: iters=, ...);
    a folder of seeds trained together returns one summary per seed."""
    _check_stop_after("resume", stop_after)
    _check_overrides("resume", changes)
    configs = resume_configs(Path(run_dir), changes)
    summaries = train_runs(configs, resume=True, stop_after=stop_after, quiet=bool(quiet))
    return summaries if len(configs) > 1 else summaries[0]


def _named(function: str, name: str, value: Any, path: bool = False) -> str:
    """A name or path keyword, as given or refused by name: `train(out=None)` would train into ./None."""
    if not (isinstance(value, str) or (path and isinstance(value, os.PathLike))) or not str(os.fspath(value)).strip():
        raise ValueError(f"{function}: {name} must be {'a path (str or pathlib.Path)' if path else 'a string'}, "
                         f"not {value!r}")
    return os.fspath(value)


def _check_stop_after(function: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{function}: stop_after must be a positive whole number of iterations (or None), "
                         f"not {value!r}")


@api_errors
def evaluate(*, data: str | Path, checkpoint: str | Path | list[str | Path] | None = None, model: str | None = None,
             weights: str | Path | None = None, weights_dir: str | Path | None = None, style: str | None = None,
             split: str = "auto", protocol: str = "center", batch_size: int = 500, workers: int = 4,
             device: str = "auto", plot: str | Path | None = None, save_predictions: str | Path | None = None,
             topk: int = 5, force: bool = False, **unknown: Any) -> dict:
    """Evaluate as `resnetlab evaluate` does; returns its JSON as a dict: errors, per-class accuracy, confusion
    matrix. `plot`/`save_predictions` name files to write (None: none)."""
    known = [f.name for f in fields(Options) if f.name != "checkpoints"]
    for key in unknown:
        raise TypeError(f"evaluate: unknown option {key!r} (known: checkpoint, {', '.join(known)})")
    _choice("evaluate", "split", split, ("auto", "all", "train", "val", "test", "holdout"))
    _choice("evaluate", "protocol", protocol, PROTOCOLS)
    _choice("evaluate", "device", device, DEVICES)
    _choice("evaluate", "style", style, (None, "paper", "torchvision"))
    for key, value in (("batch_size", batch_size), ("workers", workers), ("topk", topk)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if key == "workers" else 1):
            raise ValueError(f"evaluate: {key} must be a {'' if key == 'workers' else 'positive '}whole number, "
                             f"not {value!r}")
    given = [checkpoint] if isinstance(checkpoint, (str, os.PathLike)) else checkpoint
    if given is not None and (not isinstance(given, (list, tuple))
                              or not all(isinstance(c, (str, os.PathLike)) for c in given)):
        raise TypeError(f"evaluate: checkpoint must be a path (str or pathlib.Path) or a list of them, not "
                        f"{checkpoint!r}")
    checkpoints = list(given or [])
    return measure(Options(str(data), tuple(map(str, checkpoints)), model, _text(weights), _text(weights_dir), style,
                           split, protocol, batch_size, workers, device, _text(plot), _text(save_predictions), topk,
                           bool(force)))


@api_errors
def load(checkpoint: str | Path | None = None, *, model: str | None = None, weights: str | Path | None = None,
         weights_dir: str | Path | None = None, style: str | None = None) -> LoadedModel:
    """A trained model ready for use: `.model` (in eval mode), `.classes`, `.transforms()` (image -> input).

        loaded = resnetlab.load("runs/r20/last.pt")       # or load(model="cifar_resnet20", weights="akamaster")
        logits = loaded.model(loaded.transforms()(image)[None])
    """
    if isinstance(weights, Weights):  # get_weights(...)'s object: its network and name
        if model is not None and model != weights.model:
            raise UserError(f"weights {weights!r} are {weights.model}'s, not {model}'s")
        model, weights = weights.model, weights.name
    return load_model(_text(checkpoint), model, _text(weights), weights_dir=_text(weights_dir), style=style)


@api_errors
def predict(images: list[str | Path | Image.Image | Tensor] | Tensor, *, checkpoint: str | Path | None = None,
            model: str | None = None, weights: str | Path | None = None, weights_dir: str | Path | None = None,
            style: str | None = None, topk: int = 5, batch_size: int = 64) -> list[dict]:
    """Classify images: each a file, a folder (every image under it), a PIL image or a (3, H, W) tensor
    (uint8, or float in [0, 1]); a (N, 3, H, W) tensor is N images. For each: its top-k classes (by name
    where the model knows them) and probabilities, `batch_size` images at a time."""
    if isinstance(images, (str, Path)):
        raise TypeError(f"predict: give a list of image files or folders, e.g. [{str(images)!r}], not one path "
                        "(a list of image files, folders, PIL images or tensors)")
    if isinstance(images, Tensor) and images.dim() == 4:
        images = list(images)
    elif isinstance(images, (Tensor, Image.Image)):
        images = [images]
    images = list(images)
    if not images:
        raise ValueError("predict: the list of images is empty")
    for key, value in (("topk", topk), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"predict: {key} must be a positive whole number, not {value!r}")
    images = expand_folders(images)
    return _predict(load(checkpoint, model=model, weights=weights, weights_dir=weights_dir, style=style), images,
                    topk, batch_size)


@api_errors
def export(out: str | Path, *, checkpoint: str | Path | None = None, model: str | None = None,
           weights: str | Path | None = None, weights_dir: str | Path | None = None, style: str | None = None,
           format: str | None = None, preprocessing: bool = True, check: bool = True, force: bool = False) -> dict:
    """Export as `resnetlab export` does: out .pt2 (torch.export), .onnx, or format="weights"/"torchscript";
    loaded back and compared with PyTorch unless check=False. Returns what was written."""
    if isinstance(weights, Weights):
        model, weights = model or weights.model, weights.name
    return _export(out, checkpoint=_text(checkpoint), model=model, weights=_text(weights),
                   weights_dir=_text(weights_dir), style=style, format=format, preprocessing=bool(preprocessing),
                   check=bool(check), force=bool(force))


def _text(value: str | Path | None) -> str | None:
    return None if value is None else str(value)


def _choice(function: str, key: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{function}: {key} must be one of {', '.join(map(repr, allowed))}, not {value!r}")


def _check_overrides(function: str, values: dict[str, Any]) -> None:
    """Keyword arguments that are not training settings, or of the wrong type, as Python exceptions."""
    problem = first_problem(values)
    if problem is None:
        return
    if problem.startswith("unknown key"):
        raise TypeError(f"{function}: {problem.replace('key', 'keyword argument')} (known: {', '.join(FIELDS)})")
    if problem.endswith("expected a finite number") and any(isinstance(v, float) for v in values.values()):
        raise ValueError(f"{function}: {problem}")  # the right type, a value no setting takes (nan, inf)
    raise TypeError(f"{function}: {problem}")
