"""`resnetlab models [--json]`: every network with parameters and multiply-adds, counted, not typed in."""

from __future__ import annotations

import json

from resnetlab.cli.main import Parser
from resnetlab.models import count_macs, count_parameters, create_model, is_cifar, list_models


def build_parser() -> Parser:
    p = Parser(prog="resnetlab models", description="List every registered network: parameters and "
               "multiply-accumulates per image at its default input (32x32 CIFAR, 224x224 ImageNet), "
               "counted by torch.utils.flop_counter on a real forward pass.")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.add_argument("--skip", nargs="*", default=[], metavar="NAME",
                   help="leave these out (cifar_resnet1202 takes a few seconds to count)")
    return p


def rows(names: list[str]) -> list[dict]:
    out = []
    for name in names:
        model = create_model(name)
        size = 32 if is_cifar(name) else 224
        out.append({"name": name, "input": size, "params": count_parameters(model),
                    "macs": count_macs(model, size)})
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    table = rows([n for n in list_models() if n not in args.skip])
    if args.json:
        print(json.dumps(table, indent=2))
        return 0
    print(f"{'name':<18} {'input':>7} {'params':>10} {'mult-adds':>12}")
    for r in table:
        print(f"{r['name']:<18} {r['input']:>4}px {r['params'] / 1e6:>9.2f}M {r['macs'] / 1e9:>11.3f}G")
    return 0
