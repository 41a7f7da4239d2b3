"""`resnetlab train`: train a network of the paper with one of its recipes.

Every recipe value can be overridden by a TOML file (--config) and then by a flag of the same name.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
from pathlib import Path

from resnetlab.cli.main import Parser
from resnetlab.errors import RunInterrupted, SettingError, TrainingDiverged, UserError
from resnetlab.runtime import messages
from resnetlab.training import resume_configs, seed_configs, train_runs
from resnetlab.training.loop import catch_up
from resnetlab.training.config import CHOICES, FIELDS, RECIPES, TrainConfig, read_toml, recipe_for, resolve
from resnetlab.training.run import SPLIT_NAMES
from resnetlab.training.settings import HELP, RESUME_CHANGEABLE, SAME_RUN


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, not {text!r}") from None


def build_parser() -> Parser:
    p = Parser(prog="resnetlab train", description=__doc__.strip().splitlines()[0],
               epilog="example: resnetlab train --model cifar_resnet20 --data ../shared/data/cifar10-jpeg "
                      "--out runs/r20   (resume: resnetlab train --resume runs/r20)")
    p.add_argument("--config", help="TOML file of recipe overrides (keys as the flags, with underscores; flat or in "
                   "tables [optimizer], [model], [data], [system]), or a run's config.json")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR (optionally with a new --iters)")
    p.add_argument("--stop-after", type=int, metavar="N", help="stop after N more iterations, checkpointed")
    p.add_argument("--seeds", type=int, default=1, metavar="K",
                   help="train K seeds (--seed .. --seed+K-1) together in one process, as grouped convolutions, "
                        "each in RUN_DIR/seed<N> with its own metrics and checkpoints (CIFAR nets)")
    p.add_argument("--resume-if-exists", action="store_true",
                   help="continue the run already in --out (from its last checkpoint) when it is this command line's "
                        "run, and refuse when it is another (schedulers that resubmit the same command; under "
                        "torchrun a restarted job does so by itself)")
    p.add_argument("--quiet", action="store_true",
                   help="print nothing while training but errors and the final line (no progress bar)")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        text = HELP.get(f.name, "")
        if f.name == "recipe":
            text = f"{text}; one of {', '.join(RECIPES)}"
        kw = {"help": text, "default": None, "dest": f.name}
        if f.type in (bool, "bool"):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif f.name == "milestones":
            p.add_argument(flag, type=_int_list, **kw)
        else:
            kind = {"int": int, "float": float}.get(str(f.type), str)
            p.add_argument(flag, type=kind, choices=CHOICES.get(f.name), **kw)
    return p


def _resume_hint(configs: list[TrainConfig], resumed: str | None) -> str:
    return resumed or (configs[0].out if len(configs) == 1 else str(Path(configs[0].out).parent))


def _resolve_naming_the_file(recipe: str, file_values: dict, flags: dict, path: str | None) -> TrainConfig:
    """resolve(), with a bad value that came from --config named as the file's key, not as a flag."""
    try:
        return resolve(recipe, file_values, flags)
    except SettingError as e:
        if path and e.name in file_values and flags.get(e.name) is None:
            raise UserError(f"--config {path}: {e.as_key()}") from None
        raise


def continue_existing(configs: list[TrainConfig], asked: bool) -> list[TrainConfig] | None:
    """With --resume-if-exists, or when torchrun restarts the job (TORCHELASTIC_RESTART_COUNT > 0): the run
    already in --out, continued from its last checkpoint, when it is the run this command line describes; a
    refusal naming the first difference when it is another; None when --out holds no checkpoint yet."""
    restarted = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0").strip() not in ("", "0")
    if not (asked or restarted):
        return None
    if not any((Path(c.out) / "last.pt").is_file() for c in configs):
        return None
    out = Path(_resume_hint(configs, None))
    why = "--resume-if-exists" if asked else "torchrun restarted the job (TORCHELASTIC_RESTART_COUNT)"
    stored = resume_configs(out, {})
    asked_for = {os.path.normpath(c.out): c for c in configs}
    for old in stored:
        new = asked_for.get(os.path.normpath(old.out))
        if new is None:
            raise UserError(f"{why}: {out} holds {len(stored)} run(s), this command line asks for "
                            f"{len(configs)}")
        for name in (*SAME_RUN, "iters", "data"):
            if getattr(old, name) != getattr(new, name):
                raise UserError(f"{why}: {old.out} holds a run with {name} = {getattr(old, name)!r}, not "
                                f"{getattr(new, name)!r} as this command line asks; give another --out, or --resume "
                                f"{out} to continue it as it is")
    if len(stored) != len(configs):  # seeds a kill left without their first checkpoint: trained to the others'
        with messages.printed(os.environ.get("RANK", "0") != "0"):
            catch_up(configs)
        stored = resume_configs(out, {})
    # What a resume may change (--save-minutes, --eval-every, ...) is taken from this command line, and said:
    # a resubmit with a new setting must not train on the stored one unannounced.
    taken = {name: getattr(configs[0], name) for name in sorted(RESUME_CHANGEABLE - {"iters", "milestones", "data"})
             if getattr(configs[0], name) != getattr(stored[0], name)}
    if taken and os.environ.get("RANK", "0") == "0":
        print(f"{out}: continuing with this command line's " + ", ".join(
            f"--{k.replace('_', '-')} {v} (the run had {getattr(stored[0], k)})" for k, v in taken.items()))
    return [dataclasses.replace(cfg, **taken) for cfg in stored]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    flags = {name: getattr(args, name) for name in FIELDS}
    if args.stop_after is not None and args.stop_after <= 0:
        raise UserError("--stop-after must be a positive number of iterations")
    if args.seeds < 1:
        raise UserError("--seeds must be at least 1")
    if args.resume:
        configs = resume_configs(Path(args.resume), flags)
    else:
        file_values = read_toml(args.config) if args.config else {}
        model = flags.get("model") or file_values.get("model") or TrainConfig.model
        weights = flags.get("weights") or file_values.get("weights")
        recipe = flags.pop("recipe") or file_values.pop("recipe", None) or recipe_for(str(model), weights)
        cfg = _resolve_naming_the_file(recipe, file_values, flags, args.config)
        configs = seed_configs(cfg, args.seeds) if args.seeds > 1 else [cfg]
        existing = continue_existing(configs, args.resume_if_exists)
        if existing is not None:
            configs, args.resume = existing, _resume_hint(configs, None)
    resume_dir = _resume_hint(configs, args.resume)
    try:
        summaries = train_runs(configs, resume=bool(args.resume), stop_after=args.stop_after, quiet=args.quiet)
    except TrainingDiverged as e:
        print(f"resnetlab train: training diverged: {e}")
        return 3
    except RunInterrupted as e:
        kept = (f"saved the state after iteration {e.step:,}" if e.saved else
                "stopped in the middle of a step or an evaluation; the last checkpoint is kept")
        print(f"resnetlab train: {e.signame}: {kept}. Resume with: resnetlab train --resume {shlex.quote(resume_dir)}",
              file=sys.stderr)
        return e.exit_code
    if os.environ.get("RANK", "0") != "0":
        return 0  # under torchrun the main process reports
    for cfg, summary in zip(configs, summaries):
        err = summary["final_val_error"]
        state = ("finished" if summary["finished"] else
                 f"stopped at iteration {summary['iterations']:,} (resume with --resume {resume_dir})")
        split = SPLIT_NAMES.get(summary["val_split"], summary["val_split"])
        val = (f"{split} error {err:.2%} at the final iteration" if err is not None else "no validation split")
        print(f"{cfg.model} (seed {cfg.seed}) {state}: {val}; the run is in {cfg.out}")
    return 0
