"""`resnetlab reproduce table1|cifar|imagenet|transfer|recipes`: the paper's Table 1; Table 6 / Fig. 6 / Fig. 7 on CIFAR-10;
Table 2 / Table 3 / Fig. 4 on an ImageNet-style folder; cifar-modern against cifar-paper."""

from __future__ import annotations

import json
import shlex

from resnetlab.cli.main import Parser
from resnetlab.cli.options import add_device
from resnetlab.errors import UserError
from resnetlab.experiments import imagenet
from resnetlab.experiments.imagenet import Budget
from resnetlab.experiments.reproduce import (
    PAPER_ITERS,
    Cifar,
    Recipes,
    Transfer,
    reproduce_cifar,
    reproduce_imagenet,
    reproduce_recipes,
    reproduce_transfer,
)
from resnetlab.experiments.recipes import INGREDIENTS, parse_ablations
from resnetlab.experiments.table1 import markdown, table1


def build_parser() -> Parser:
    p = Parser(prog="resnetlab reproduce", description="Reproduce the paper's experiments.")
    sub = p.add_subparsers(dest="experiment", required=True, parser_class=Parser)
    t = sub.add_parser("table1", help="parameters and multiply-adds of ResNet-18..152 beside Table 1")
    t.add_argument("--json", action="store_true", help="print JSON")
    c = sub.add_parser("cifar", help="train plain and residual CIFAR nets; write figure6.png, table6.md, "
                       "figure7.png and report.md", description="Trains every (net, depth, seed) with the paper's "
                       "recipe (skipping finished runs, resuming interrupted ones), then writes the figures and report. "
                       "The same command in several processes (or on machines sharing --out on a filesystem with POSIX "
                       "locks) splits the runs: each "
                       "trains those no other process holds, and the last to finish writes the whole report.")
    c.add_argument("--out", required=True, help="output folder (runs/, figures, table6.md, report.md)")
    c.add_argument("--depths", default="20,32,44,56,110", help="comma-separated depths 6n+2 (default 20,32,44,56,110)")
    c.add_argument("--nets", default="plain,resnet", help="plain, resnet or both (default plain,resnet)")
    c.add_argument("--seeds", type=int, default=1, help="runs per network (seeds 0..K-1)")
    c.add_argument("--iters", type=int, default=PAPER_ITERS, help="iterations per run (the paper: 64000)")
    c.add_argument("--eval-every", type=int, help="evaluation interval (default iters/20)")
    c.add_argument("--protocol", default="holdout", choices=["holdout", "paper"],
                   help="holdout (default): train on 45k images, validate on the fixed 5k hold-out, as the paper "
                        "fixed its schedule; paper: the final models of Sec. 4.2, trained on all 50k with that "
                        "schedule, no validation, final iteration only; the test split is measured at the end where "
                        "the dataset has one")
    c.add_argument("--report-only", action="store_true",
                   help="train nothing: write the report over the runs of --depths/--nets/--seeds that have finished "
                        "(others, e.g. still training in another process, are listed as in progress)")
    c.add_argument("--data", default="cifar10", help="dataset (default cifar10, downloaded once)")
    add_device(c)
    c.add_argument("--together", default="auto", choices=["auto", "on", "off"],
                   help="train the seeds of each network together in one process (auto: on CUDA)")
    add_recipes_parser(sub)
    tr = sub.add_parser("transfer", help="ResNet-20 pretrained on CIFAR-10's vehicles, trained on its animals from "
                        "a few images per class: fine-tuning, linear probing, from scratch")
    tr.add_argument("--data", default="../shared/data/cifar10-jpeg", help="CIFAR-10 as class folders (train/)")
    tr.add_argument("--out", required=True, help="output folder (runs/, data/ of links, report.md, figure.png)")
    tr.add_argument("--per-class", default="100", help="training images per animal class, comma-separated "
                                                       "(e.g. 25,100,500; default 100)")
    tr.add_argument("--seeds", type=int, default=3, help="seeds per way and size (default 3)")
    tr.add_argument("--pretrain-iters", type=int, default=4000, help="iterations of vehicle pretraining (default 4000)")
    tr.add_argument("--iters", type=int, default=500, help="iterations of each animal run, every way (default 500)")
    add_device(tr)
    i = sub.add_parser("imagenet", help="train plain-18/34 and ResNet-18/34 (and ResNet-34 A/B/C); write table2.md, "
                       "table3.md, figure4.png and report.md", description="Trains each network with the paper's "
                       "ImageNet recipe (skipping finished runs, resuming interrupted ones; torchrun for several "
                       "GPUs or machines), tests each with 10 crops on val, then writes the tables, figure and report.")
    i.add_argument("--data", required=True, help="an ImageNet-style folder with train/ and val/ class folders")
    i.add_argument("--out", required=True, help="output folder (runs/, table2.md, table3.md, figure4.png, report.md)")
    i.add_argument("--shortcuts", default="A", help="ResNet-34 shortcut options for Table 3: A, or A,B,C (default A)")
    i.add_argument("--iters", type=int, default=imagenet.PAPER_ITERS, help="iterations per run (the paper: up to 600000)")
    i.add_argument("--batch-size", type=int, default=256, help="global batch (the paper: 256)")
    i.add_argument("--lr", type=float, help="initial learning rate (default: the paper's 0.1 for batch 256, scaled "
                   "linearly with --batch-size)")
    i.add_argument("--eval-every", type=int, help="centre-crop validation interval (default iters/20)")
    i.add_argument("--workers", type=int, default=4, help="DataLoader workers per process")
    add_device(i)
    return p


def add_recipes_parser(sub) -> None:
    r = sub.add_parser("recipes", help="today's recipe (cifar-modern) against the paper's on CIFAR-10 ResNets, and "
                       "what each of its ingredients buys; write report.md, figure.png, results.json",
                       description="Trains each ResNet with cifar-paper and cifar-modern over seeds, and ResNet-20 "
                       "with cifar-modern less one ingredient at a time (skipping finished runs, resuming "
                       "interrupted ones; several processes split them), then reports final-iteration hold-out "
                       "errors, mean ± std.")
    r.add_argument("--out", required=True, help="output folder (runs/, report.md, figure.png, results.json)")
    r.add_argument("--data", default="cifar10", help="dataset (default cifar10, downloaded once)")
    r.add_argument("--depths", default="20,56", help="comma-separated ResNet depths 6n+2 (default 20,56)")
    r.add_argument("--seeds", type=int, default=3, help="runs per network and recipe (seeds 0..K-1; default 3)")
    r.add_argument("--iters", type=int, default=16000, help="iterations per run (default 16000)")
    r.add_argument("--ablate", default="all", help=f"ingredients to take out one at a time at ResNet-20: all, none, "
                   f"or some of {', '.join(INGREDIENTS)} (default all)")
    r.add_argument("--paper-runs", help="a `reproduce cifar` folder at the same --iters whose runs are the paper "
                   "recipe's (e.g. results/cifar10-16k); default: trained here")
    r.add_argument("--report-only", action="store_true", help="train nothing: report the runs finished so far")
    add_device(r)


def run_recipes(args) -> int:
    depths = _ints(args.depths, "--depths")
    if args.seeds < 1 or args.iters < 1:
        raise UserError("--seeds and --iters must be positive")
    command = shlex.join(["resnetlab", "reproduce", "recipes", "--out", args.out, "--data", args.data, "--depths",
                          args.depths, "--seeds", str(args.seeds), "--iters", str(args.iters), "--ablate", args.ablate]
                         + (["--paper-runs", args.paper_runs] if args.paper_runs else []))
    _say_wrote(reproduce_recipes(Recipes(args.data, args.out, depths, args.seeds, parse_ablations(args.ablate),
                                         args.iters, args.device, args.paper_runs, args.report_only, command)))
    return 0


def run_imagenet(args) -> int:
    shortcuts = [s.strip().upper() for s in args.shortcuts.split(",") if s.strip()]
    if not shortcuts or any(s not in ("A", "B", "C") for s in shortcuts):
        raise UserError(f"--shortcuts takes A, B and/or C, comma-separated, not {args.shortcuts!r}")
    if args.iters < 1 or args.batch_size < 1 or args.workers < 0 or (args.eval_every is not None and args.eval_every < 1):
        raise UserError("--iters, --batch-size and --eval-every must be positive, --workers not negative")
    if args.lr is not None and not 0 < args.lr <= 10:
        raise UserError(f"--lr must be in (0, 10], not {args.lr}")
    budget = Budget(args.data, args.out, args.iters, args.batch_size, args.lr, args.shortcuts)
    _say_wrote(reproduce_imagenet(budget, shortcuts, args.device, args.eval_every, args.workers))
    return 0


def _say_wrote(files: list) -> None:
    if files:  # none on torchrun's other ranks
        print(f"wrote {', '.join(map(str, files))}")


def _ints(text: str, flag: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{flag} takes comma-separated whole numbers, not {text!r}") from None
    bad = [d for d in values if d < 8 or (d - 2) % 6]
    if not values or bad:
        raise UserError(f"{flag}: CIFAR depths are 6n+2 (8, 14, 20, 32, ...), not {bad or text!r}")
    return values


def run_cifar(args) -> int:
    depths = _ints(args.depths, "--depths")
    nets = [n.strip() for n in args.nets.split(",") if n.strip()]
    if not nets or any(n not in ("plain", "resnet") for n in nets):
        raise UserError(f"--nets takes plain, resnet or both, not {args.nets!r}")
    if args.seeds < 1 or args.iters < 1:
        raise UserError("--seeds and --iters must be positive")
    command = shlex.join(["resnetlab", "reproduce", "cifar", "--out", args.out, "--depths", args.depths, "--nets",
                          args.nets, "--seeds", str(args.seeds), "--iters", str(args.iters), "--data", args.data,
                          "--device", args.device, "--protocol", args.protocol] + (["--eval-every", str(args.eval_every)] if args.eval_every else [])
                         + (["--report-only"] if args.report_only else []))
    _say_wrote(reproduce_cifar(Cifar(args.data, args.out, nets, depths, args.seeds, args.iters, args.device,
                                     args.eval_every, args.together, args.report_only, command, args.protocol)))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.experiment == "table1":
        rows = table1()
        print(json.dumps(rows, indent=2) if args.json else markdown(rows))
        return 0
    if args.experiment in ("transfer", "recipes"):
        return run_transfer(args) if args.experiment == "transfer" else run_recipes(args)
    return run_cifar(args) if args.experiment == "cifar" else run_imagenet(args)


def run_transfer(args) -> int:
    try:
        sizes = tuple(int(v) for v in args.per_class.split(",") if v.strip())
    except ValueError:
        raise UserError(f"--per-class takes comma-separated whole numbers, not {args.per_class!r}") from None
    if not sizes or min(sizes) < 22 or args.seeds < 1 or args.iters < 1 or args.pretrain_iters < 1:
        raise UserError("--per-class (at least 22: a batch of 128 over 6 classes), --seeds, --iters and "
                        "--pretrain-iters must be positive")
    command = shlex.join(["resnetlab", "reproduce", "transfer", "--data", args.data, "--out", args.out, "--per-class",
                          args.per_class, "--seeds", str(args.seeds), "--pretrain-iters", str(args.pretrain_iters),
                          "--iters", str(args.iters)])
    _say_wrote(reproduce_transfer(Transfer(args.data, args.out, sizes, args.seeds, args.pretrain_iters, args.iters,
                                           args.device, command)))
    return 0
