"""The measurements behind training/fastcheck.py's TOLERANCE: how far healthy steps lie from the eager fp32 steps,
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

import torch

from resnetlab.runtime.devices import cpu_isa
from resnetlab.training import fastcheck
from resnetlab.training import probe as checks
from resnetlab.training.config import resolve
from resnetlab.training.fastpath import FastPath
from resnetlab.training.loop import prepare

EAGER_BF16 = FastPath(None, torch.bfloat16, "eager bf16")
COMPILED_BF16 = FastPath("default", torch.bfloat16, "compiled bf16")


@contextlib.contextmanager
def frozen_batchnorm(train_step):
    """Each step leaves BatchNorm's running statistics as they were."""
    original = train_step._step

    def step(x, y):
        saved = [b.clone() for b in train_step.net.buffers()]
        out = original(x, y)
        with torch.no_grad():
            for b, s in zip(train_step.net.buffers(), saved):
                b.copy_(s)
        return out

    train_step._step = step
    try:
        yield
    finally:
        train_step._step = original


@contextlib.contextmanager
def optimizer_setting(train_step, **settings):
    """The step runs with these SGD settings (weight_decay=0: dropped; momentum=0: ignored)."""
    groups = train_step.optimizer.param_groups
    saved = [{k: g[k] for k in settings} for g in groups]
    for g in groups:
        g.update(settings)
    try:
        yield
    finally:
        for g, s in zip(groups, saved):
            g.update(s)


@contextlib.contextmanager
def gradients_replaced(train_step, how: str):
    """Before the update, every non-classifier gradient becomes noise of its norm ("noise"), or every conv
    gradient changes sign ("sign")."""
    opt = train_step.optimizer
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


@contextlib.contextmanager
def learning_rate_wrong(train_step, factor: float = 1.0, head_ignored: bool = False):
    """The step reads a wrong lr: the schedule's times `factor` (a stale or mis-scaled lr tensor in a compiled
    step), or with head_ignored the classifier at --lr instead of --head-lr."""
    trainee = train_step.trainee
    original = trainee.set_learning_rates
    groups = getattr(train_step.optimizer, "param_groups", [])
    factors = [g.get("lr_factor", 1.0) for g in groups]

    def wrong(lrs):
        for g in groups:
            g["lr_factor"] = 1.0 if head_ignored else g.get("lr_factor", 1.0)
        original([lr * factor for lr in lrs])

    trainee.set_learning_rates, train_step._lrs = wrong, None
    try:
        yield
    finally:
        del trainee.set_learning_rates
        for g, f in zip(groups, factors):
            g["lr_factor"] = f
        train_step._lrs = None
        train_step.set_learning_rates([run.lr for run in train_step.runs])


DEFECTS = {
    "BatchNorm statistics never updated": frozen_batchnorm,
    "weight decay dropped": lambda train_step: optimizer_setting(train_step, weight_decay=0.0),
    "momentum ignored": lambda train_step: optimizer_setting(train_step, momentum=0.0),
    "gradients replaced by noise of the same norm": lambda train_step: gradients_replaced(train_step, "noise"),
    "conv gradients sign-flipped": lambda train_step: gradients_replaced(train_step, "sign"),
    "lr x10 in the step": lambda train_step: learning_rate_wrong(train_step, 10.0),
    "lr x0.1 in the step": lambda train_step: learning_rate_wrong(train_step, 0.1),
}
# Needs a run with --head-lr (eager_stack(..., head_lr=...)): elsewhere there is no factor to drop.
HEAD_LR_IGNORED = ("--head-lr ignored", lambda train_step: learning_rate_wrong(train_step, head_ignored=True))


def eager_stack(model: str, data: str, out: str, channels_last: str = "on", **extra):
    """The eager fp32 train_step of the run `train --model model` would start, and its first batch and lr."""
    cfg = resolve("cifar-paper", {}, {"model": model, "data": data, "out": out, "device": "cpu", "val": "none",
                                      "fast": "off", "amp": "off", "channels_last": channels_last, **extra})
    runs, train_step = prepare([cfg])
    return train_step, [runs[0].data.train.batch(0)], [runs[0].lr], runs


def probe(train_step, batches, lrs, path: FastPath, defect=None):
    """The probe's steps on `path`, with `defect` (a context manager factory) injected after the path is set."""
    train_step.use(path)
    with defect(train_step) if defect else contextlib.nullcontext():
        step, _ = checks.Probe(train_step, batches, lrs).run()
    train_step.use(fastcheck.EAGER_FP32)
    return step


def measure(model: str, data: str, compiled: bool) -> list[str]:
    """One table row per candidate: its distances from the reference and the verdict at each precision."""
    rows = []
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        train_step, batches, lrs, runs = eager_stack(model, data, a)
        reference = probe(train_step, batches, lrs, fastcheck.EAGER_FP32)
        twin = probe(train_step, checks.perturbed(batches), lrs, fastcheck.EAGER_FP32)
        rows.append(("twin: input perturbed by 2^-8", twin))
        other, other_batches, _, other_runs = eager_stack(model, data, b, channels_last="off")
        rows.append(("fp32 contiguous (rounding only)", probe(other, other_batches, lrs, fastcheck.EAGER_FP32)))
        rows.append(("eager bf16", probe(train_step, batches, lrs, EAGER_BF16)))
        if compiled:
            rows.append(("compiled bf16", probe(train_step, batches, lrs, COMPILED_BF16)))
        for name, defect in DEFECTS.items():
            rows.append((f"defect: {name}", probe(train_step, batches, lrs, fastcheck.EAGER_FP32, defect)))
        for r in runs + other_runs:
            r.run_dir.release()
    lines = []
    for name, step in rows:
        d = checks.distances(step, reference)
        verdicts = ["pass" if checks.compare(step, reference, p, twin)[0] is None else "REJECT" for p in ("fp32", "bf16")]
        chaotic = ", ".join(p for p in ("fp32", "bf16") if checks.violations(checks.distances(twin, reference), p))
        lines.append(f"| {model} | {name} | {d['loss']:.2e} | {d['cosine']:.3f} | {d['classifier']:.3g} | "
                     f"{d['bn']:.3g} | {d['bn_moved']:.2f} | {d['update']:.3f} | {d['classifier_update']:.3f} | "
                     f"{d['sgd']:.1e} | {chaotic or '—'} | {' | '.join(verdicts)} |")
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nets", default="cifar_resnet20,cifar_resnet56,cifar_resnet110,cifar_plain20,cifar_plain56,"
                                     "cifar_plain110")
    p.add_argument("--data", default="../shared/data/cifar10-jpeg")
    p.add_argument("--compiled", action="store_true", help="also compiled bf16 (a minute or more per network)")
    p.add_argument("--out", help="append the markdown table to this file")
    args = p.parse_args()
    lines = [f"## {cpu_isa()}, torch {torch.__version__}, {torch.get_num_threads()} threads", "",
             "| network | candidate | loss off | grad cosine (10th pct) | classifier | BN stats away | BN moved | "
             "weights moved (median ratio) | classifier moved | SGD rule | chaotic at | verdict fp32 | verdict bf16 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for model in args.nets.split(","):
        for line in measure(model, args.data, args.compiled):
            lines.append(line)
            print(line, flush=True)
    if args.out:
        with open(args.out, "a") as f:
            f.write("\n".join(lines) + "\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
