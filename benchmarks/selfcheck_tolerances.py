"""The measurements behind engine/fastcheck.py's TOLERANCE: how far healthy steps lie from the eager fp32 steps,
and how far broken ones do, on real CIFAR-10 batches of 128.

    python benchmarks/selfcheck_tolerances.py [--nets cifar_resnet20,cifar_plain110] [--compiled] [--out FILE]

For each network it builds the run `train` would (same seed, same first batch) and probes the eager fp32 steps
(the reference), then healthy candidates (fp32 contiguous instead of channels_last: rounding only; eager bf16;
compiled bf16 with --compiled) and the defects a review injected into the candidate step (BatchNorm statistics
never updated, weight decay dropped, momentum ignored, gradients replaced by noise of the same norm, conv
gradients sign-flipped). It prints fastcheck.distances for each, and the verdict at each precision's tolerance.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

import torch

from resnetlab.engine import fastcheck
from resnetlab.engine.config import resolve
from resnetlab.engine.devices import cpu_isa
from resnetlab.engine.fastpath import FastPath
from resnetlab.engine.trainer import prepare

EAGER_BF16 = FastPath(None, torch.bfloat16, "eager bf16")
COMPILED_BF16 = FastPath("default", torch.bfloat16, "compiled bf16")


@contextlib.contextmanager
def frozen_batchnorm(stack):
    """Each step leaves BatchNorm's running statistics as they were."""
    original = stack._step

    def step(x, y):
        saved = [b.clone() for b in stack.net.buffers()]
        out = original(x, y)
        with torch.no_grad():
            for b, s in zip(stack.net.buffers(), saved):
                b.copy_(s)
        return out

    stack._step = step
    try:
        yield
    finally:
        stack._step = original


@contextlib.contextmanager
def optimizer_setting(stack, **settings):
    """The step runs with these SGD settings (weight_decay=0: dropped; momentum=0: ignored)."""
    groups = stack.optimizer.param_groups
    saved = [{k: g[k] for k in settings} for g in groups]
    for g in groups:
        g.update(settings)
    try:
        yield
    finally:
        for g, s in zip(groups, saved):
            g.update(s)


@contextlib.contextmanager
def gradients_replaced(stack, how: str):
    """Before the update, every non-classifier gradient becomes noise of its norm ("noise"), or every conv
    gradient changes sign ("sign")."""
    opt = stack.optimizer
    original = opt.step
    params = [p for group in opt.param_groups for p in group["params"]]
    classifier = max(i for i, p in enumerate(params) if p.dim() >= 2)

    def step(*args, **kwargs):
        with torch.no_grad():
            for i, p in enumerate(params):
                if p.grad is None or i in (classifier, classifier + 1):
                    continue
                if how == "noise":
                    noise = torch.randn_like(p.grad)
                    p.grad.copy_(noise * p.grad.norm() / noise.norm().clamp_min(1e-30))
                elif p.dim() == 4:
                    p.grad.neg_()
        return original(*args, **kwargs)

    opt.step = step
    try:
        yield
    finally:
        del opt.step


DEFECTS = {
    "BatchNorm statistics never updated": frozen_batchnorm,
    "weight decay dropped": lambda stack: optimizer_setting(stack, weight_decay=0.0),
    "momentum ignored": lambda stack: optimizer_setting(stack, momentum=0.0),
    "gradients replaced by noise of the same norm": lambda stack: gradients_replaced(stack, "noise"),
    "conv gradients sign-flipped": lambda stack: gradients_replaced(stack, "sign"),
}


def eager_stack(model: str, data: str, out: str, channels_last: str = "on", **extra):
    """The eager fp32 stack of the run `train --model model` would start, and its first batch and lr."""
    cfg = resolve("cifar-paper", {}, {"model": model, "data": data, "out": out, "device": "cpu", "val": "none",
                                      "fast": "off", "amp": "off", "channels_last": channels_last, **extra})
    runs, stack = prepare([cfg])
    return stack, [runs[0].data.train.batch(0)], [runs[0].lr], runs


def probe(stack, batches, lrs, path: FastPath):
    stack.use(path)
    step, _ = fastcheck.Probe(stack, batches, lrs).run()
    stack.use(fastcheck.EAGER_FP32)
    return step


def measure(model: str, data: str, compiled: bool) -> list[tuple[str, dict]]:
    rows = []
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        stack, batches, lrs, runs = eager_stack(model, data, a)
        reference = probe(stack, batches, lrs, fastcheck.EAGER_FP32)
        other, other_batches, _, other_runs = eager_stack(model, data, b, channels_last="off")
        rows.append(("fp32 contiguous (rounding only)", probe(other, other_batches, lrs, fastcheck.EAGER_FP32)))
        rows.append(("eager bf16", probe(stack, batches, lrs, EAGER_BF16)))
        if compiled:
            rows.append(("compiled bf16", probe(stack, batches, lrs, COMPILED_BF16)))
        for name, defect in DEFECTS.items():
            with defect(stack):
                rows.append((f"defect: {name}", probe(stack, batches, lrs, fastcheck.EAGER_FP32)))
        for r in runs + other_runs:
            r.run_dir.release()
    return [(name, fastcheck.distances(step, reference)) for name, step in rows]


def verdict(d: dict, precision: str) -> str:
    tol = fastcheck.TOLERANCE[precision]
    ok = (d["loss"] <= tol["loss"] and d["cosine"] >= tol["cosine"] and d["classifier"] <= tol["classifier"]
          and d["bn"] <= tol["bn"] and d["sgd"] <= fastcheck.SGD_RULE_TOLERANCE)
    return "pass" if ok else "REJECT"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nets", default="cifar_resnet20,cifar_resnet56,cifar_resnet110,cifar_plain20,cifar_plain56,"
                                     "cifar_plain110")
    p.add_argument("--data", default="../shared/data/cifar10-jpeg")
    p.add_argument("--compiled", action="store_true", help="also compiled bf16 (a minute or more per network)")
    p.add_argument("--out", help="append the markdown table to this file")
    args = p.parse_args()
    lines = [f"## {cpu_isa()}, torch {torch.__version__}, {torch.get_num_threads()} threads", "",
             "| network | candidate | loss off | median grad cosine | classifier | BN stats | SGD rule | fp32 | bf16 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for model in args.nets.split(","):
        for name, d in measure(model, args.data, args.compiled):
            line = (f"| {model} | {name} | {d['loss']:.2e} | {d['cosine']:.3f} | {d['classifier']:.3g} | "
                    f"{d['bn']:.3g} | {d['sgd']:.1e} | {verdict(d, 'fp32')} | {verdict(d, 'bf16')} |")
            lines.append(line)
            print(line, flush=True)
    if args.out:
        with open(args.out, "a") as f:
            f.write("\n".join(lines) + "\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
