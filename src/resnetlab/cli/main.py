"""`resnetlab SUBCOMMAND ...`: one module per subcommand, each with `main(argv) -> int`."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from resnetlab import __version__
from resnetlab.errors import RunInterrupted, TrainingDiverged, UserError

SUBCOMMANDS = {
    "models": "list every network with its parameters and multiply-adds",
    "data": "inspect a dataset (`resnetlab data inspect PATH`)",
    "train": "train or fine-tune a network with the paper's recipes or today's (cifar-modern, imagenet-modern)",
    "evaluate": "top-1/top-5 error of a checkpoint or named weights on a dataset split",
    "predict": "classify image files with a checkpoint or named weights",
    "export": "a checkpoint as torch.export (.pt2), ONNX, safetensors or a model folder for timm and the Hub",
    "reproduce": "the paper's Table 1, Table 6 + Fig. 6, 7 (CIFAR), Tables 2, 3 + Fig. 4 (ImageNet); recipes; transfer",
    "slim": "replace finished runs' last.pt by their final weights (safetensors), for keeping or sharing",
    "bench": "training speed against a standard PyTorch loop or timm's train.py, and against this machine's roofline",
}


def _usage() -> str:
    rows = "\n".join(f"  {name:<10} {text}" for name, text in SUBCOMMANDS.items())
    return (
        "usage: resnetlab SUBCOMMAND [options]\n\n"
        "The networks, recipes and experiments of 'Deep Residual Learning for Image Recognition'.\n\n"
        f"subcommands:\n{rows}\n\n`resnetlab SUBCOMMAND --help` explains each one."
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        print(__version__)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"resnetlab: error: unknown subcommand {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"resnetlab.cli.{name}")
    try:
        return module.main(rest)
    except UserError as e:
        print(f"resnetlab {name}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except RunInterrupted as e:  # the training loop's own stop, raised through any subcommand that trains
        print(f"resnetlab {name}: {e}; run the same command again to resume", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"resnetlab {name}: interrupted", file=sys.stderr)
        return 130
    except TrainingDiverged as e:
        print(f"resnetlab {name}: training diverged: {e}", file=sys.stderr)
        return 3


def one_line(e: UserError) -> str:
    """The message of a UserError; raised in a DataLoader worker, torch re-raises it with the worker's traceback
    appended, whose last line holds the message again."""
    text = str(e)
    if "Traceback" not in text:
        return text
    marker = f"{UserError.__module__}.{UserError.__name__}: "
    raised = [line.split(marker, 1)[1] for line in text.splitlines() if marker in line]
    return raised[-1] if raised else text.splitlines()[0]


def entry() -> None:
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:  # `resnetlab ... | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at interpreter exit
        code = 0
    group = sys.modules.get("resnetlab.runtime.distributed")  # never imported: no process group was joined
    if group is not None and group.left_a_group:
        # A torchrun worker that trained, saved and left its group: gloo's threads may still hold work whose
        # destruction during interpreter finalization aborts the process (SIGABRT, exit -6: seen now and then in
        # tests/training/test_elastic.py's two launchers; pytorch/pytorch#179291), failing the job after a clean
        # run. Everything is written and flushed by now, so the process ends without running the finalizers.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line and exit code 2, like every other bad input."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(message)
