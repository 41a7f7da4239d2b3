"""`resnetlab slim RUN...`: a finished run without what only a resume needs.

last.pt holds the optimizer's state, the RNG and the schedule beside the weights, about twice the weights; a run
that has finished is never resumed. slim replaces its last.pt by final.safetensors (the final weights, the averaged
ones where the run kept an average, with the run's record: what `resnetlab export --format safetensors` writes)
and final.json (the final iteration and the sha256 of last.pt and of the tensors). Where the weights are resnetlab's
shipped ones, final.json names them instead of holding a second copy. Unfinished runs are left as they are.
Reports, `reproduce` and `evaluate --checkpoint RUN/final.safetensors` read a slimmed run as before.
"""

from __future__ import annotations

from pathlib import Path

from resnetlab.cli.main import Parser
from resnetlab.errors import UserError
from resnetlab.training.finished import slim


def build_parser() -> Parser:
    p = Parser(prog="resnetlab slim", description=__doc__.strip().split("\n\n")[0].split(": ", 1)[1],
               epilog="example: resnetlab slim results/cifar10-16k   (every finished run under its runs/)")
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="a run folder, or a reproduce folder whose runs/ holds run folders")
    p.add_argument("--drop-weights", action="store_true",
                   help="keep no weights at all, only their sha256 in final.json (for runs whose numbers are "
                        "reported and whose weights nobody loads: extra seeds, ablations); irreversible")
    return p


def run_folders(path: Path) -> list[Path]:
    if not path.is_dir():
        raise UserError(f"{path}: no such folder")
    if (path / "runs").is_dir() and not (path / "last.pt").exists():
        return sorted(p for p in (path / "runs").iterdir() if p.is_dir())
    return [path]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    runs = [run for given in args.runs for run in run_folders(Path(given))]
    for run in runs:
        try:
            print(f"{run}: {slim(run, keep_weights=not args.drop_weights)}")
        except UserError as e:
            if [run] == [Path(r) for r in args.runs]:  # the one run asked for: an error; one of many: said
                raise
            print(f"{run}: left as it is: {e}")
    return 0
