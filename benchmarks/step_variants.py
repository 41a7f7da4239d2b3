"""Is a change to the trainer's step measurably faster? Times the trainer's step (its device pipeline and step,
on the fast path `train` chooses, compile time apart: `bench --what train`'s measurement) under named variants,
alternated A B A B ... in one process, so that drift of the machine hits every variant alike.

Usage: python benchmarks/step_variants.py [--model cifar_resnet20] [--rounds 3] [--steps 40] VARIANT...
A variant is `baseline`, `channels_last=off`, `fast=off` (the eager step), or `inductor:<config key>=<python
value>` (e.g. `inductor:cpp.simdlen=256`), several joined with `+`. Nothing else may run on the machine while it
times.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import statistics

import torch
import torch._dynamo
import torch._inductor.config as inductor_config

from resnetlab.bench import Options
from resnetlab.bench.throughput import trainer_rate


@contextlib.contextmanager
def variant(spec: str):
    """The inductor settings of `spec` patched for its duration; returns the Options changes it asks."""
    patches, changes = {}, {}
    for part in spec.split("+"):
        if part == "baseline":
            continue
        key, value = part.split("=", 1)
        if key.startswith("inductor:"):
            patches[key.removeprefix("inductor:")] = ast.literal_eval(value)
        else:
            changes[key] = value
    with inductor_config.patch(patches):
        yield changes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("variants", nargs="+")
    p.add_argument("--model", default="cifar_resnet20")
    p.add_argument("--data", default="../shared/data/cifar10-jpeg")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--fast", default="auto")
    args = p.parse_args()
    rates: dict[str, list[float]] = {v: [] for v in args.variants}
    for r in range(args.rounds):
        for spec in args.variants:
            torch._dynamo.reset()  # each variant compiles its own step
            with variant(spec) as changes:
                fast = changes.pop("fast", args.fast)
                opts = Options(model=args.model, data=args.data, steps=args.steps, **changes)
                out = trainer_rate(opts, torch.device("cpu"), fast)
            rates[spec].append(out["images_per_s"])
            print(f"round {r + 1} {spec}: {out['images_per_s']:,.0f} images/s ({out['mode']} {out['precision']}, "
                  f"compiled in {out['compile_seconds']:.0f} s)", flush=True)
    base = statistics.median(rates[args.variants[0]])
    for spec, values in rates.items():
        med = statistics.median(values)
        print(f"{spec}: median {med:,.0f} images/s ({', '.join(f'{v:,.0f}' for v in values)}), "
              f"{med / base:.3f}x {args.variants[0]}")


if __name__ == "__main__":
    main()
