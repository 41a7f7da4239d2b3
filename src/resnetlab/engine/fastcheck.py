"""The fast path proves itself on this machine before a run uses it.

A compiled or reduced-precision step can be wrong on one machine and right on the next: on an Intel Xeon with
AMX, torch 2.14's compiled BatchNorm backward under CPU bf16 autocast gives non-finite gradients, while the
same step is exact on an AMD EPYC with AVX-512 BF16. So two real steps of the chosen path, on the run's own
network and first batch, are compared with two eager fp32 steps: everything a step changes is looked at (the
loss, each gradient's direction, the classifier's gradient, BatchNorm's running statistics, and SGD's rule with
momentum and weight decay on the step's own gradients), each within TOLERANCE; a rejected path gives way to the
next-fastest (fastpath.fallbacks). The steps change the network and optimizer in place and are undone, so
training starts from exactly the state it would have had. The compiled step compiled here is the one the run
then uses: the check costs two eager fp32 steps.

Verdicts are kept in RESNETLAB_CACHE/fastpath-verdicts.json per (torch and resnetlab version, machine and its
ISA, network as built, precision, mode) for VERDICT_DAYS: a later run on the same machine pays nothing.
"""

from __future__ import annotations

import importlib.metadata
import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
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

# How far healthy steps may be from the eager fp32 steps, per precision (measurements: see below).
TOLERANCE = {
    "fp32": {"loss": 1e-3, "cosine": 0.5, "classifier": 0.5, "bn": 0.5},
    "bf16": {"loss": 0.05, "cosine": 0.5, "classifier": 0.5, "bn": 0.5},
    "fp16": {"loss": 0.02, "cosine": 0.5, "classifier": 0.5, "bn": 0.5},
}
SGD_RULE_TOLERANCE = 1e-4
EAGER_FP32 = FastPath(None, None, "eager fp32")
VERDICTS = "fastpath-verdicts.json"
# A verdict is trusted this many days (drivers and libraries change under a fixed torch version), the cache keeps
# the newest VERDICTS_KEPT and is not read past VERDICTS_MAX_BYTES.
VERDICT_DAYS, VERDICTS_KEPT, VERDICTS_MAX_BYTES = 30, 200, 1 << 20


def verdicts_path() -> Path:
    return default_root() / VERDICTS


def _load_verdicts() -> dict[str, dict]:
    """The cached verdicts that are well-formed and younger than VERDICT_DAYS (a regular file of at most
    VERDICTS_MAX_BYTES: a FIFO or /dev/zero planted there is ignored, not read)."""
    path = verdicts_path()
    try:
        if not path.is_file() or path.stat().st_size > VERDICTS_MAX_BYTES:
            return {}
        verdicts = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # none yet, or damaged: check again
        return {}
    if not isinstance(verdicts, dict):
        return {}
    oldest = datetime.now(timezone.utc) - timedelta(days=VERDICT_DAYS)
    return {k: v for k, v in verdicts.items() if isinstance(v, dict) and isinstance(v.get("ok"), bool)
            and isinstance(v.get("checked"), str) and _parse_time(v["checked"]) > oldest}


def _parse_time(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
        return when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    except ValueError:
        return datetime.min.replace(tzinfo=timezone.utc)


def _remember(key: str, verdict: dict) -> None:
    verdicts = _load_verdicts()
    verdicts[key] = verdict
    newest = sorted(verdicts.items(), key=lambda kv: kv[1]["checked"])[-VERDICTS_KEPT:]
    path = verdicts_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(dict(newest), indent=1, sort_keys=True)))
    except (OSError, UserError):
        pass  # a read-only cache costs a check at the next run, nothing more


def resnetlab_version() -> str:
    try:
        return importlib.metadata.version("resnetlab")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "source"


def verdict_key(stack: Stack, path: FastPath) -> str:
    """Everything that changes the step: torch and resnetlab, the machine by what it computes (device_name
    names the ISA), the network as built (shortcut, style, zero-init, classes), the batch, layout and path."""
    cfg = stack.runs[0].cfg
    layout = "channels_last" if cfg.channels_last != "off" else "contiguous"
    classes = len(stack.runs[0].data.classes)
    return (f"torch {torch.__version__} | resnetlab {resnetlab_version()} | {device_name(stack.device)} | {cfg.model} "
            f"shortcut {cfg.shortcut or 'default'} style {cfg.style} zero-init {cfg.zero_init_residual} "
            f"classes {classes} x{stack.k} {layout} batch {cfg.batch_size} | {path.precision} | {path.mode}")


PROBE_STEPS = 2  # the second step is the first in which momentum acts (the buffer starts at zero)


class Probe:
    """PROBE_STEPS steps of `stack` on fixed batches, undone afterwards: what they changed (losses, the first
    step's gradients, the weights, BatchNorm's statistics) and whether SGD's rule held on the step's own
    gradients."""

    def __init__(self, stack: Stack, batches: list[tuple[Tensor, Tensor]], lrs: list[float]) -> None:
        self.stack, self.batches, self.lrs = stack, batches, lrs

    def run(self) -> tuple[Step, float]:
        """What the steps changed, and the seconds the first one took (the compile, when compiled)."""
        stack = self.stack
        tensors = stack.state_tensors()
        saved = [t.clone() for t in tensors]
        pairs = stack.momenta()
        params = [p for _, p in pairs]
        buffers = [t for t in stack.net.buffers() if t.is_floating_point()]
        before, stats_before = [p.detach().float().clone() for p in params], [b.float().clone() for b in buffers]
        seconds, losses, grads, rule = 0.0, [], [], 0.0
        try:
            for i in range(PROBE_STEPS):
                weights, momenta = [p.detach().float().clone() for p in params], [b.float().clone() for b, _ in pairs]
                start = time.perf_counter()
                loss, _ = stack.step(self.batches, self.lrs)
                if stack.device.type == "cuda":
                    torch.cuda.synchronize(stack.device)
                seconds = seconds or time.perf_counter() - start
                step_grads = [(p.grad if p.grad is not None else torch.zeros_like(p)).float().clone() for p in params]
                rule = max(rule, sgd_rule_error(stack, weights, momenta, step_grads))
                losses.append(loss.detach().float().clone())
                grads = grads or step_grads
            step = Step(torch.stack(losses), grads, [p.detach().float() - b for p, b in zip(params, before)],
                        [b.detach().float().clone() for b in buffers], stats_before, rule)
        finally:  # a step that failed half-way (a compiler error) is undone too
            with torch.no_grad():
                for t, s in zip(tensors, saved):
                    t.copy_(s)
            for p in params:
                p.grad = None
        return step, seconds

    def run_scaled(self) -> tuple[Step, float]:
        """run(), and under fp16 again while the loss scale overflows (GradScaler skips such steps and halves
        the scale): the run then starts at the scale found here instead of skipping its first steps. The
        scaler's state is put back as it was found, but for that scale."""
        result = self.run()
        for _ in range(32):
            if not self.stack.scaler.is_enabled() or result[0].finite():
                break
            result = self.run()
        return result


def sgd_rule_error(stack: Stack, weights: list[Tensor], momenta: list[Tensor], grads: list[Tensor]) -> float:
    """How far the step's momentum buffers and weights are from SGD's rule applied to its own gradients
    (buf = m * buf + g + wd * w; w -= lr * buf), relative to each one's change: about 1e-7 for a healthy
    step, 1e-3 when weight decay is dropped, order 1 when momentum is ignored or the update not applied."""
    cfg, k = stack.runs[0].cfg, stack.k
    lrs = torch.tensor([float(lr) for lr in (stack._lrs or [stack.runs[0].lr])])
    worst = 0.0
    for (buf, p), w, m, g in zip(stack.momenta(), weights, momenta, grads):
        expected = m * cfg.momentum + g + cfg.weight_decay * w
        worst = max(worst, _relative(buf.float(), expected, expected - m))
        moved = (w.reshape(k, -1) - lrs[:, None].to(w.device) * buf.float().reshape(k, -1)).reshape(w.shape)
        worst = max(worst, _relative(p.detach().float(), moved, moved - w) / 100)  # w's rounding: ~eps*|w|/|lr*buf|
    return worst


def _relative(actual: Tensor, expected: Tensor, change: Tensor) -> float:
    scale = change.norm().item()
    return (actual - expected).norm().item() / scale if scale > 1e-20 else float((actual - expected).norm().item() > 0)


@dataclass
class Step:
    losses: Tensor  # (steps, K)
    grads: list[Tensor]  # the first step's gradient per parameter, in the optimizer's order
    updates: list[Tensor]  # each parameter's change over the probe
    stats: list[Tensor]  # BatchNorm running statistics after the probe
    stats_before: list[Tensor]
    sgd_rule: float  # sgd_rule_error's worst over the steps

    def finite(self) -> bool:
        return bool(torch.isfinite(self.losses).all()) and all(bool(torch.isfinite(g).all()) for g in self.grads)

    def classifier(self) -> int:
        """The index of the classifier's weight: the last parameter of two or more dimensions."""
        return max(i for i, g in enumerate(self.grads) if g.dim() >= 2)


def _cosine(a: Tensor, b: Tensor) -> float:
    na, nb = a.norm().item(), b.norm().item()
    if max(na, nb) < 1e-12:
        return 1.0
    return (a.flatten() @ b.flatten()).item() / max(na * nb, 1e-30)


def distances(candidate: Step, reference: Step) -> dict[str, float]:
    """What compare() bounds, measured: the loss (relative, worst step), the gradients' direction (median
    cosine over tensors; each weighted alike, so a few large tensors cannot hide the rest), the classifier's
    gradient (relative L2), BatchNorm's statistics (distance to the reference's over the reference's own change:
    1.0 when they never moved), and SGD's rule on the candidate's own gradients."""
    loss = ((candidate.losses - reference.losses).abs() / reference.losses.abs().clamp_min(1e-12)).max().item()
    cosines = sorted(_cosine(c, r) for c, r in zip(candidate.grads, reference.grads))
    i = reference.classifier()
    classifier = (candidate.grads[i] - reference.grads[i]).norm().item() / max(reference.grads[i].norm().item(), 1e-12)
    moved = sum((r - b).pow(2).sum().item() for r, b in zip(reference.stats, reference.stats_before)) ** 0.5
    apart = sum((c - r).pow(2).sum().item() for c, r in zip(candidate.stats, reference.stats)) ** 0.5
    return {"loss": loss, "cosine": cosines[len(cosines) // 2] if cosines else 1.0, "classifier": classifier,
            "bn": apart / moved if moved > 0 else 0.0, "sgd": candidate.sgd_rule}


def compare(candidate: Step, reference: Step, precision: str) -> tuple[str | None, str]:
    """(why the candidate steps disagree with the reference steps, or None; what was measured)."""
    if not candidate.finite():
        return "its loss or gradients are not finite", ""
    if not all(bool(torch.isfinite(u).all()) for u in candidate.updates):
        return "its weight updates are not finite", ""
    d, tol = distances(candidate, reference), TOLERANCE[precision]
    measured = (f"loss {d['loss']:.2%} off, median gradient cosine {d['cosine']:.3f}, classifier gradient "
                f"{d['classifier']:.2g} away, BatchNorm statistics {d['bn']:.2g} away, SGD's rule {d['sgd']:.1g} off")
    allowed = (f"{precision} allows {tol['loss']:.1%}, cosine >= {tol['cosine']:g}, {tol['classifier']:g}, "
               f"{tol['bn']:g}, {SGD_RULE_TOLERANCE:g}")
    ok = (d["loss"] <= tol["loss"] and d["cosine"] >= tol["cosine"] and d["classifier"] <= tol["classifier"]
          and d["bn"] <= tol["bn"] and d["sgd"] <= SGD_RULE_TOLERANCE)
    return (None, f"{measured}; {allowed}") if ok else (f"{measured} ({allowed})", measured)


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
            rejected.append(f"{path.name} rejected on this machine earlier: {verdict.get('why')} (kept "
                            f"{VERDICT_DAYS} days in {verdicts_path()}; delete it to check again)")
            continue
        if reference is None:
            stack.use(EAGER_FP32)
            reference, _ = probe.run()
        stack.use(path)
        if path.compiled:
            say(f"checking the {path.name} step against eager fp32 over {PROBE_STEPS} steps (compiling it: about a minute "
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
            return compile_seconds, [*rejected, f"{path.name} agrees with eager fp32 over {PROBE_STEPS} steps ({measured})"]
        rejected.append(f"{path.name} rejected: {why}")
    names = ", ".join(p.name for p in candidates)
    raise UserError(f"the self-check rejected every step allowed here ({names}): {'; '.join(rejected)}. "
                    "Let resnetlab choose (drop --fast on / --amp), or use --fast off --amp off")
