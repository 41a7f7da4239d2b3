"""`resnetlab models [--json]`: every network with parameters and multiply-adds, counted, not typed in."""

from __future__ import annotations

import json

from resnetlab.cli.main import Parser
from resnetlab.models import count_macs, count_parameters, create_model, list_models
from resnetlab.models.pretrained import REGISTRY
from resnetlab.models.registry import model_input


def build_parser() -> Parser:
    p = Parser(prog="resnetlab models", description="List every registered network: parameters and "
               "multiply-accumulates per image at its default input (32x32 CIFAR, 224x224 ImageNet), "
               "counted by torch.utils.flop_counter on a real forward pass.")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.add_argument("--weights", action="store_true",
                   help="list the named published weights instead: source, license, what they were measured on, "
                        "their error there, the normalization they expect, and sha256")
    p.add_argument("--skip", nargs="*", default=[], metavar="NAME",
                   help="leave these out (cifar_resnet1202 takes a few seconds to count)")
    return p


def rows(names: list[str]) -> list[dict]:
    out = []
    for name in names:
        model = create_model(name)
        size = model_input(name)["size"]
        out.append({"name": name, "input": size, "params": count_parameters(model),
                    "macs": count_macs(model, size)})
    return out


def weight_rows() -> list[dict]:
    out = []
    for w in REGISTRY.values():
        model = create_model(w.model, **w.options, num_classes=len(w.classes))
        out.append({"model": w.model, "weights": w.name, "source": w.source, "license": w.license,
                    "dataset": w.dataset, **w.metrics, "normalization": w.normalization, "classes": len(w.classes),
                    "params": count_parameters(model), "macs": count_macs(model, model_input(w.model)["size"]),
                    "sha256": w.sha256, "url": w.url})
    return out


def _error(row: dict) -> str:
    """Top-1 error on what the weights were measured on; weights that saw every image of their data show their
    training error, marked (train), since there was nothing unseen to measure."""
    if "top1_error" in row:
        return f"{row['top1_error']:.2%}"
    return f"{row['train_error']:.2%} (train)"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.weights:
        table = weight_rows()
        if args.json:
            print(json.dumps(table, indent=2))
            return 0
        print(f"{'model':<17} {'weights':<15} {'params':>8} {'mult-adds':>9} {'top-1 err':>9}  {'measured on':<58} sha256")
        for r in table:
            print(f"{r['model']:<17} {r['weights']:<15} {r['params'] / 1e6:>7.2f}M {r['macs'] / 1e9:>8.2f}G "
                  f"{_error(r):>9}  {r['dataset']:<58} {r['sha256'][:16]}")
        print("use: resnetlab evaluate --model MODEL --weights WEIGHTS ...; create_model(MODEL, weights=WEIGHTS)")
        return 0
    table = rows([n for n in list_models() if n not in args.skip])
    if args.json:
        print(json.dumps(table, indent=2))
        return 0
    print(f"{'name':<18} {'input':>7} {'params':>10} {'mult-adds':>12}")
    for r in table:
        print(f"{r['name']:<18} {r['input']:>4}px {r['params'] / 1e6:>9.2f}M {r['macs'] / 1e9:>11.3f}G")
    return 0
