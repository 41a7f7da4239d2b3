"""The fast path proves itself on this machine before a run uses it.

A compiled or reduced-precision step can be wrong on one machine and right on the next: on an Intel Xeon with
AMX, torch 2.14's compiled BatchNorm backward under CPU bf16 autocast gives non-finite gradients, while the
same step is exact on an AMD EPYC with AVX-512 BF16. So one real step of the chosen path, on the run's own
network and first batch, is compared with the eager fp32 step (finite, and gradients and weight updates within
TOLERANCE of it); a rejected path gives way to the next-fastest (fastpath.fallbacks). Both steps change the
network and optimizer in place and are undone, so training starts from exactly the state it would have had.
The compiled step compiled here is the one the run then uses: the check costs one eager fp32 step.

Verdicts are kept in RESNETLAB_CACHE/fastpath-verdicts.json per (torch version, machine, network, precision,
mode): a later run on the same machine pays nothing.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from resnetlab.data.download import default_root
from resnetlab.engine import distributed
from resnetlab.engine.checkpoint import atomic_write
from resnetlab.engine.fastpath import FastPath, device_name
from resnetlab.engine.stack import Stack
from resnetlab.errors import UserError

# How far a healthy step may be from the eager fp32 step, per precision: the loss (relative), the norm of each
# parameter's gradient and weight update (a factor), and the classifier's weight gradient (relative L2 distance;
# it depends on the forward pass alone, so it stays comparable where the rest of the backward pass is chaotic).
# Measured on the first step of CIFAR nets (2-core EPYC, bf16 autocast against fp32): loss within 0.3%, per-tensor
# gradient norms within 1.2x (ResNet-20) to 2.0x (plain-56), classifier gradient within 0.003 (ResNet-20) to 0.2
# (plain-56). An element-wise comparison of all gradients cannot serve: at initialization plain-56's gradients
# are chaotic (norm ~500; fp32 and fp64 differ by 12%, bf16 and fp64 are uncorrelated), while healthy. The broken
# AMX bf16 step gives non-finite gradients, or finite ones 49x off: both far outside these bounds.
TOLERANCE = {  # precision: (loss, norm factor, classifier gradient)
    "fp32": (1e-3, 1.5, 0.05),
    "bf16": (0.05, 4.0, 0.5),
    "fp16": (0.02, 3.0, 0.3),
}
EAGER_FP32 = FastPath(None, None, "eager fp32")
VERDICTS = "fastpath-verdicts.json"


def verdicts_path() -> Path:
    return default_root() / VERDICTS


def _load_verdicts() -> dict[str, dict]:
    try:
        verdicts = json.loads(verdicts_path().read_text())
        return verdicts if isinstance(verdicts, dict) else {}
    except (OSError, ValueError):  # none yet, or damaged: check again
        return {}


def _remember(key: str, verdict: dict) -> None:
    verdicts = _load_verdicts()
    verdicts[key] = verdict
    path = verdicts_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(verdicts, indent=1, sort_keys=True)))
    except (OSError, UserError):
        pass  # a read-only cache costs a check at the next run, nothing more


def verdict_key(stack: Stack, path: FastPath) -> str:
    cfg = stack.runs[0].cfg
    layout = "channels_last" if cfg.channels_last != "off" else "contiguous"
    return (f"torch {torch.__version__} | {device_name(stack.device)} | {cfg.model} x{stack.k} {layout} "
            f"batch {cfg.batch_size} | {path.precision} | {path.mode}")


class Probe:
    """One step of `stack` on fixed batches, undone afterwards: its losses, gradients and weight updates."""

    def __init__(self, stack: Stack, batches: list[tuple[Tensor, Tensor]], lrs: list[float]) -> None:
        self.stack, self.batches, self.lrs = stack, batches, lrs

    def run(self) -> tuple[Step, float]:
        """The step's losses, gradients and weight updates, and the seconds it took."""
        stack = self.stack
        tensors = stack.state_tensors()
        saved = [t.clone() for t in tensors]
        params = [p for _, p in stack.momenta()]
        before = [p.detach().float().clone() for p in params]
        start = time.perf_counter()
        try:
            losses, _ = stack.step(self.batches, self.lrs)
            if stack.device.type == "cuda":
                torch.cuda.synchronize(stack.device)
            seconds = time.perf_counter() - start
            step = Step(losses.detach().float().clone(),
                        [(p.grad if p.grad is not None else torch.zeros_like(p)).float().clone() for p in params],
                        [p.detach().float() - b for p, b in zip(params, before)])
        finally:  # a step that failed half-way (a compiler error) is undone too
            with torch.no_grad():
                for t, s in zip(tensors, saved):
                    t.copy_(s)
            for p in params:
                p.grad = None
        return step, seconds

    def run_scaled(self) -> tuple[Step, float]:
        """run(), and under fp16 again while the loss scale overflows (GradScaler skips such steps and halves
        the scale): the run then starts at the scale found here instead of skipping its first steps."""
        result = self.run()
        for _ in range(32):
            if not self.stack.scaler.is_enabled() or result[0].finite():
                break
            result = self.run()
        return result


@dataclass
class Step:
    losses: Tensor  # (K,)
    grads: list[Tensor]  # per parameter, in the optimizer's order
    updates: list[Tensor]

    def finite(self) -> bool:
        return bool(torch.isfinite(self.losses).all()) and all(bool(torch.isfinite(g).all()) for g in self.grads)

    def classifier(self) -> int:
        """The index of the classifier's weight: the last parameter of two or more dimensions."""
        return max(i for i, g in enumerate(self.grads) if g.dim() >= 2)


def _factor(a: Tensor, b: Tensor) -> float:
    """How many times larger or smaller a's norm is than b's (1: equal; both ~0: equal)."""
    na, nb = a.norm().item(), b.norm().item()
    if max(na, nb) < 1e-12:
        return 1.0
    return max(na, nb) / max(min(na, nb), 1e-30)


def compare(candidate: Step, reference: Step, precision: str) -> tuple[str | None, str]:
    """(why the candidate step disagrees with the reference step, or None; what was measured)."""
    if not candidate.finite():
        return "its loss or gradients are not finite", ""
    if not all(bool(torch.isfinite(u).all()) for u in candidate.updates):
        return "its weight updates are not finite", ""
    loss_tol, norm_tol, classifier_tol = TOLERANCE[precision]
    loss = ((candidate.losses - reference.losses).abs() / reference.losses.abs().clamp_min(1e-12)).max().item()
    norms = max(_factor(c, r) for pair in (zip(candidate.grads, reference.grads), zip(candidate.updates, reference.updates))
                for c, r in pair)
    i = reference.classifier()
    classifier = (candidate.grads[i] - reference.grads[i]).norm().item() / max(reference.grads[i].norm().item(), 1e-12)
    measured = (f"loss {loss:.2%} off, gradient and update norms within {norms:.2f}x, classifier gradient "
                f"{classifier:.2g} away")
    allowed = f"{precision} allows {loss_tol:.1%}, {norm_tol:g}x, {classifier_tol:g}"
    if not (loss <= loss_tol and norms <= norm_tol and classifier <= classifier_tol):
        return f"{measured} ({allowed})", measured
    return None, f"{measured}; {allowed}"


def settle(stack: Stack, candidates: list[FastPath], batches: list[tuple[Tensor, Tensor]], lrs: list[float],
           say: Callable[[str], None] = print) -> tuple[float, list[str]]:
    """Put `stack` on the first of `candidates` that agrees with the eager fp32 step (cached verdicts are
    trusted); returns the seconds spent compiling and what the check found (one line per rejected path, then
    the accepted one's). Under torchrun every rank checks (no cache: ranks on other machines could hold other
    verdicts) and a path rejected on any rank is rejected on all, so the ranks step alike."""
    dist = stack.dist
    verdicts = {} if dist.enabled else _load_verdicts()
    probe = Probe(stack, batches, lrs)
    reference = None
    rejected: list[str] = []
    compile_seconds = 0.0
    for path in candidates:
        if not path.compiled and path.amp is None:  # eager fp32: the reference itself
            stack.use(path)
            return compile_seconds, rejected
        key = verdict_key(stack, path)
        verdict = verdicts.get(key)
        if verdict is not None and isinstance(verdict.get("ok"), bool):
            stack.use(path)
            if verdict["ok"]:
                return compile_seconds, [*rejected, f"{path.name} agreed with eager fp32 on this machine earlier "
                                                    f"({verdict.get('distances') or 'cached'})"]
            rejected.append(f"{path.name} rejected on this machine earlier: {verdict.get('why')}")
            continue
        if reference is None:
            stack.use(EAGER_FP32)
            reference, _ = probe.run()
        stack.use(path)
        if path.compiled:
            say(f"checking the {path.name} step against eager fp32 on one batch (compiling it: about a minute "
                "on an idle 2-core CPU, up to 8 on a busy one)...")
        try:
            result, seconds = probe.run_scaled()
            why, measured = compare(result, reference, path.precision)
        except Exception as e:  # a compiler that fails on this machine is a rejection, not a crash
            seconds, measured = 0.0, ""
            why = f"it failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
        if path.compiled:
            compile_seconds += seconds
            stack.compiled_once = True
        failed = distributed.all_sum(dist, torch.tensor([float(why is not None)], device=stack.device)).item()
        if failed and why is None:
            why = "another rank rejected it"
        if not dist.enabled:
            _remember(key, {"ok": why is None, "why": why, "distances": measured,
                            "checked": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        if why is None:
            return compile_seconds, [*rejected, f"{path.name} agrees with eager fp32 on one batch ({measured})"]
        rejected.append(f"{path.name} rejected: {why}")
    names = ", ".join(p.name for p in candidates)
    raise UserError(f"the self-check rejected every step allowed here ({names}): {'; '.join(rejected)}. "
                    "Let resnetlab choose (drop --fast on / --amp), or use --fast off --amp off")
