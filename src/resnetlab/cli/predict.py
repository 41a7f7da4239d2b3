"""`resnetlab predict`: classify images with a trained model: top-k class names with probabilities."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from resnetlab.cli.main import Parser
from resnetlab.cli.options import add_model_source, strict_json
from resnetlab.errors import UserError
from resnetlab.inference import expand_folders, load_model, predict
from resnetlab.runtime import memory


def build_parser() -> Parser:
    p = Parser(prog="resnetlab predict", description=__doc__.strip().split(": ", 1)[1],
               epilog="example: resnetlab predict --checkpoint runs/r20/best.pt cat.jpg ship.png --topk 3")
    p.add_argument("images", nargs="+", help="image files (JPEG or PNG), or folders: every image under them")
    add_model_source(p, "foreign weights (class indices are printed instead of names)")
    p.add_argument("--topk", type=int, default=5, help="how many classes to show per image (default 5)")
    p.add_argument("--batch-size", type=int, default=64, help="images decoded and classified at a time (default 64)")
    p.add_argument("--json", action="store_true", help="print JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.topk <= 0 or args.batch_size <= 0:
        raise UserError("--topk and --batch-size must be positive")
    paths = expand_folders([Path(p) for p in args.images])
    loaded = load_model(args.checkpoint, args.model, args.weights, weights_dir=args.weights_dir, style=args.style)
    if loaded.averaged:  # on stderr: --json's stdout stays the list of predictions
        print(f"weights: the run's averaged weights ({loaded.averaged}), as evaluate and export use",
              file=sys.stderr)
    memory.keep_freed_memory()  # predict runs on the CPU: no page faults for each batch's activations
    results = predict(loaded, paths, args.topk, args.batch_size)
    if args.json:
        print(json.dumps(strict_json(results), indent=2, allow_nan=False))
        return 0
    for r in results:
        top = ", ".join(f"{t['class']} {t['probability']:.1%}" for t in r["top"])
        print(f"{r['file']}: {top}")
    return 0
