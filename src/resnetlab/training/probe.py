"""One probe of the training step and how it compares with another: what the self-check (fastcheck.py) and
benchmarks/selfcheck_tolerances.py measure.

A probe runs PROBE_STEPS steps on fixed batches and undoes them, keeping what they changed. Two probes compare
by the loss, each gradient's direction, the classifier's gradient, BatchNorm's running statistics, and SGD's
rule (momentum, weight decay) on the candidate's own gradients. Deep plain nets are chaotic at initialization
(the backward amplifies rounding: two fp32 computations of plain-110 that differ only in memory layout have
gradient cosines near 0 below the last block), so the reference has a "twin": the same steps on the input
perturbed at bf16's rounding level. Where the twin itself fails a precision's tolerances, the net is chaotic at
that precision, and only what rounding cannot scramble is compared: the direction of the gradients
on which the twin agrees (those next to the output), how far BatchNorm's statistics move, and SGD's rule.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor

from resnetlab.data.batch import Batch
from resnetlab.training.start import lr_factors, weight_decays
from resnetlab.training.step import TrainingStep

# How far healthy steps may be from the eager fp32 steps, per precision: the loss (relative, worst step), the
# gradient direction (10th percentile of per-tensor cosines), the classifier's gradient (relative L2), BatchNorm's
# statistics (distance over the reference's own movement). Measured on real CIFAR-10 batches of 128 by
# benchmarks/selfcheck_tolerances.py; the figures are in benchmarks/results/selfcheck.md.
TOLERANCE = {
    "fp32": {"loss": 1e-3, "cosine": 0.5, "classifier": 0.05, "bn": 0.05},
    "bf16": {"loss": 0.05, "cosine": 0.25, "classifier": 0.3, "bn": 0.3},
    "fp16": {"loss": 0.02, "cosine": 0.25, "classifier": 0.2, "bn": 0.2},
}
SGD_RULE_TOLERANCE = 1e-3  # healthy: ~1e-7 (fp32 rounding); weight decay dropped: ~0.1; momentum ignored: 1
BN_MOVED = (0.5, 2.0)  # how far the statistics move against the reference's; never updated: 0
# The weights' update over the probe, per tensor, against the reference's: its norm ratio (the median over
# tensors, and the classifier's own) within this factor. A wrong learning rate in the value the step reads moves
# every weight by that factor (lr x10: 10, x0.1: 0.1), and --head-lr dropped moves the classifier by its own;
# rounding moves the median by a few percent (benchmarks/results/selfcheck.md). Chaotic nets get up to 3x their
# twin's own deviation (chaotic_violations).
UPDATE_RATIO = 1.25
TWIN_AGREES = 0.8  # plain-110: the last block's tensors agree at 0.80-0.99 with a rounding twin, the rest near 0
# The twin's input perturbation, relative: bf16's unit roundoff, whatever the precision checked. Smaller ones
# understate chaos: at fp32's 2^-24, plain-110's second-step loss moved 10x less than under a change of memory
# layout, which rounds every layer differently; at 2^-8 as much, while ResNet-20's twin stays within fp32's
# tolerances (judged whole).
TWIN_PERTURBATION = 2.0**-8


PROBE_STEPS = 2  # the second step is the first in which momentum acts (the buffer starts at zero)


class Probe:
    """PROBE_STEPS steps of `train_step` on fixed batches, undone afterwards: what they changed (losses, the first
    step's gradients, the weights, BatchNorm's statistics) and whether SGD's rule held on the step's own
    gradients."""

    def __init__(self, train_step: TrainingStep, batches: list[tuple[Tensor, Tensor]], lrs: list[float]) -> None:
        self.stack, self.batches, self.lrs = train_step, batches, lrs

    def run(self) -> tuple[Step, float]:
        """What the steps changed, and the seconds the first one took (the compile, when compiled)."""
        train_step = self.stack
        tensors = train_step.state_tensors()
        saved = [t.clone() for t in tensors]
        scaler = train_step.scaler.state_dict() if train_step.scaler.is_enabled() else None
        pairs = train_step.momenta()
        params = [p for _, p in pairs]
        buffers = [t for t in train_step.net.buffers() if t.is_floating_point()]
        before, stats_before = [p.detach().float().clone() for p in params], [b.float().clone() for b in buffers]
        seconds, losses, grads, rule, stats = 0.0, [], [], 0.0, []
        try:
            for i in range(PROBE_STEPS):
                weights, momenta = [p.detach().float().clone() for p in params], [b.float().clone() for b, _ in pairs]
                start = time.perf_counter()
                # the averagers update as at the run's own steps (and are undone with the rest)
                loss, _ = train_step(self.batches, self.lrs, train_step.runs[0].state.step + i + 1)
                if train_step.device.type == "cuda":
                    torch.cuda.synchronize(train_step.device)
                seconds = seconds or time.perf_counter() - start
                step_grads = [(p.grad if p.grad is not None else torch.zeros_like(p)).float().clone() for p in params]
                rule = max(rule, sgd_rule_error(train_step, self.lrs, weights, momenta, step_grads))
                losses.append(loss.detach().float().clone())
                grads = grads or step_grads
                stats = stats or [b.detach().float().clone() for b in buffers]
            step = Step(torch.stack(losses), grads, [p.detach().float() - b for p, b in zip(params, before)],
                        stats, stats_before, rule)
        finally:  # a step that failed half-way (a compiler error) is undone too
            with torch.no_grad():
                for t, s in zip(tensors, saved):
                    t.copy_(s)
            for p in params:
                p.grad = None
            if scaler is not None:  # the loss scale as found: the probe's steps are not the run's
                train_step.scaler.load_state_dict(scaler)
        return step, seconds

    def run_scaled(self) -> tuple[Step, float]:
        """run(), and under fp16 again at half the loss scale while it overflows (as GradScaler would, skipping
        the run's first steps): the run then starts at the scale found here. Otherwise the scaler is left as found."""
        result = self.run()
        scaler = self.stack.scaler
        for _ in range(32):
            if not scaler.is_enabled() or result[0].finite():
                break
            scaler.update(scaler.get_scale() / 2)
            result = self.run()
        return result


def sgd_rule_error(train_step: TrainingStep, lrs: list[float], weights: list[Tensor], momenta: list[Tensor],
                   grads: list[Tensor]) -> float:
    """How far the step's momentum buffers and weights are from SGD's rule applied to its own gradients
    (buf = m * buf + g + wd * w; w -= lr * buf, or lr * (g + wd * w + m * buf) with --nesterov; each
    parameter's own wd: start.weight_decays), relative to each one's change, with the lr the schedule gave the
    step (`lrs`) and the settings' factor of each parameter: about 1e-7 for a healthy step, 1e-3 when weight decay
    is dropped, order 1 when momentum is ignored, the update not applied or the lr wrong.
    Frozen parameters (no gradient) must not move at all."""
    cfg, k = train_step.runs[0].cfg, train_step.k
    expected_lrs = scheduled_learning_rates(train_step, lrs)
    by_name = weight_decays(train_step.net, cfg)
    decays = {id(p): by_name[name.removeprefix("module.")] for name, p in train_step.net.named_parameters()}
    worst = 0.0
    for (buf, p), w, m, g in zip(train_step.momenta(), weights, momenta, grads):
        if not p.requires_grad:
            worst = max(worst, float(not torch.equal(p.detach().float(), w)))
            continue
        d = g + decays[id(p)] * w
        expected = m * cfg.momentum + d
        worst = max(worst, _relative(buf.float(), expected, expected - m))
        lr = expected_lrs[id(p)].to(w.device)
        update = d + cfg.momentum * buf.float() if cfg.nesterov else buf.float()
        moved = (w.reshape(k, -1) - lr[:, None] * update.reshape(k, -1)).reshape(w.shape)
        worst = max(worst, _relative(p.detach().float(), moved, moved - w) / 100)  # w's rounding: ~eps*|w|/|lr*buf|
    return worst


def scheduled_learning_rates(train_step: TrainingStep, lrs: list[float]) -> dict[int, Tensor]:
    """Each parameter's lr per run (by id), as the schedule and settings make it: `lrs` (one per run) times the
    parameter's factor (start.lr_factors: --head-lr, --layer-decay). Never the optimizer's own copy: a step that
    reads a wrong lr has written that copy itself, and agrees with it."""
    cfg = train_step.runs[0].cfg
    runs = torch.tensor([float(lr) for lr in lrs])
    factors = lr_factors(train_step.net, cfg)
    return {id(p): runs * factors[name.removeprefix("module.")] for name, p in train_step.net.named_parameters()}


def _relative(actual: Tensor, expected: Tensor, change: Tensor) -> float:
    scale = change.norm().item()
    return (actual - expected).norm().item() / scale if scale > 1e-20 else float((actual - expected).norm().item() > 0)


@dataclass
class Step:
    losses: Tensor  # (steps, K)
    grads: list[Tensor]  # the first step's gradient per parameter, in the optimizer's order
    updates: list[Tensor]  # each parameter's change over the probe
    stats: list[Tensor]  # BatchNorm running statistics after the first step (after the second, chaos rules them)
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
    """What compare() bounds, measured: the loss (relative, worst step), the gradients' direction (the 10th
    percentile of the per-tensor cosines: a defect in one kind of tensor, e.g. every conv's gradient, cannot
    hide behind the others, as it would behind a median or a norm-weighted mean), the classifier's
    gradient (relative L2), BatchNorm's statistics (distance to the reference's over the reference's own change:
    1.0 when they never moved; and how far they moved, over the reference's movement), and SGD's rule on the
    candidate's own gradients."""
    loss = ((candidate.losses - reference.losses).abs() / reference.losses.abs().clamp_min(1e-12)).max().item()
    cosines = sorted(_cosine(c, r) for c, r in zip(candidate.grads, reference.grads))
    i = reference.classifier()
    classifier = (candidate.grads[i] - reference.grads[i]).norm().item() / max(reference.grads[i].norm().item(), 1e-12)
    moved = sum((r - b).pow(2).sum().item() for r, b in zip(reference.stats, reference.stats_before)) ** 0.5
    apart = sum((c - r).pow(2).sum().item() for c, r in zip(candidate.stats, reference.stats)) ** 0.5
    own = sum((c - b).pow(2).sum().item() for c, b in zip(candidate.stats, candidate.stats_before)) ** 0.5
    ratios = sorted(c.norm().item() / r.norm().item() for c, r in zip(candidate.updates, reference.updates)
                    if r.norm().item() > 0)  # frozen tensors do not move
    head = reference.updates[i].norm().item()
    return {"loss": loss, "cosine": cosines[len(cosines) // 10] if cosines else 1.0, "classifier": classifier,
            "bn": apart / moved if moved > 0 else 0.0, "bn_moved": own / moved if moved > 0 else 1.0,
            "sgd": candidate.sgd_rule, "update": ratios[len(ratios) // 2] if ratios else 1.0,
            "classifier_update": candidate.updates[i].norm().item() / head if head > 0 else 1.0}


def violations(d: dict[str, float], precision: str) -> list[str]:
    """The distances of `d` beyond `precision`'s tolerance, named."""
    tol = TOLERANCE[precision]
    out = [f"loss {d['loss']:.2%} off (allowed {tol['loss']:.1%})"] if d["loss"] > tol["loss"] else []
    if d["cosine"] < tol["cosine"]:
        out.append(f"gradient directions: cosine {d['cosine']:.3f} (at least {tol['cosine']:g})")
    if d["classifier"] > tol["classifier"]:
        out.append(f"classifier gradient {d['classifier']:.2g} away (allowed {tol['classifier']:g})")
    if d["bn"] > tol["bn"]:
        out.append(f"BatchNorm statistics {d['bn']:.2g} away (allowed {tol['bn']:g})")
    return out + _always(d)


def _off_by(ratio: float) -> float:
    """How far a ratio is from 1, either way (0.5 and 2 are both 2)."""
    return max(ratio, 1 / ratio) if ratio > 0 else float("inf")


def _always(d: dict[str, float], update_ratio: float = UPDATE_RATIO) -> list[str]:
    """What holds however chaotic the net: the statistics move as far as the reference's, the weights as far as
    the reference's (within `update_ratio`), SGD's rule holds at the schedule's learning rate."""
    out = []
    for key, what in (("update", "the weights moved"), ("classifier_update", "the classifier's weights moved")):
        if _off_by(d[key]) > update_ratio:
            out.append(f"{what} {d[key]:.3g}x as far as the reference's (allowed {1 / update_ratio:.2f}-"
                       f"{update_ratio:.2f}x: a wrong learning rate?)")
    if not BN_MOVED[0] <= d["bn_moved"] <= BN_MOVED[1]:
        out.append(f"BatchNorm statistics moved {d['bn_moved']:.2g}x as far as the reference's "
                   f"(allowed {BN_MOVED[0]:g}-{BN_MOVED[1]:g}x)")
    if d["sgd"] > SGD_RULE_TOLERANCE:
        out.append(f"SGD's rule (momentum, weight decay) {d['sgd']:.1g} off (allowed {SGD_RULE_TOLERANCE:g})")
    return out


def chaotic_violations(candidate: Step, reference: Step, twin: Step, precision: str) -> list[str]:
    """For a net whose reference is chaotic at this precision (its twin fails the tolerances): the gradient
    direction on the tensors where the twin agrees with the reference (cosine >= TWIN_AGREES: those next to the
    output), the loss and classifier within 3x the twin's own distance, and what always holds."""
    tol, chaos, d = TOLERANCE[precision], distances(twin, reference), distances(candidate, reference)
    agreeing = [i for i, (t, r) in enumerate(zip(twin.grads, reference.grads)) if _cosine(t, r) >= TWIN_AGREES]
    if not agreeing:
        return ["the net is chaotic at this precision: no gradient can be compared"]
    cosines = sorted(_cosine(candidate.grads[i], reference.grads[i]) for i in agreeing)
    out = []
    if cosines[len(cosines) // 10] < tol["cosine"]:
        out.append(f"gradient directions next to the output: cosine {cosines[len(cosines) // 10]:.3f} over "
                   f"{len(agreeing)} tensors (at least {tol['cosine']:g})")
    for key in ("loss", "classifier"):
        allowed = max(tol[key], 3 * chaos[key])
        if d[key] > allowed:
            out.append(f"{key} {d[key]:.2g} away (allowed {allowed:.2g}: 3x a perturbed twin's)")
    twin_off = max(_off_by(chaos["update"]), _off_by(chaos["classifier_update"]))
    return out + _always(d, max(UPDATE_RATIO, twin_off ** 3))


def compare(candidate: Step, reference: Step, precision: str, twin: Step | None = None) -> tuple[str | None, str]:
    """(why the candidate steps disagree with the reference steps, or None; what was measured). Given the
    reference's `twin` at this precision, a net that is chaotic at it is judged by chaotic_violations."""
    if not candidate.finite():
        return "its loss or gradients are not finite", ""
    if not all(bool(torch.isfinite(u).all()) for u in candidate.updates):
        return "its weight updates are not finite", ""
    d = distances(candidate, reference)
    measured = (f"loss {d['loss']:.2%} off, gradient cosine {d['cosine']:.3f}, classifier gradient "
                f"{d['classifier']:.2g} away, BatchNorm statistics {d['bn']:.2g} away, weights moved {d['update']:.3g}x "
                f"(classifier {d['classifier_update']:.3g}x), SGD's rule {d['sgd']:.1g} off")
    wrong = violations(d, precision)
    if wrong and twin is not None and violations(distances(twin, reference), precision):
        wrong = chaotic_violations(candidate, reference, twin, precision)
        measured += "; chaotic at this precision, so judged next to the output"
    return (f"{'; '.join(wrong)} ({precision} tolerances)", measured) if wrong else (None, measured)


def perturbed(batches: list[Batch]) -> list[Batch]:
    """The batches with each input value moved by about TWIN_PERTURBATION, relative (a fixed draw)."""
    g = torch.Generator().manual_seed(0)
    out = []
    for x, y, targets in batches:
        noise = torch.randn(x.shape, generator=g).to(x.device, x.dtype)
        layout = torch.channels_last if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) \
            else torch.contiguous_format
        out.append(Batch((x * (1 + TWIN_PERTURBATION * noise)).contiguous(memory_format=layout), y, targets))
    return out
