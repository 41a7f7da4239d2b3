"""What the CIFAR report says in words, each sentence computed from Table 6's rows (or Fig. 7's response
stds), so that no claim of the report can drift from its numbers."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

from resnetlab.experiments.runs import read_metrics

if TYPE_CHECKING:
    from resnetlab.experiments.cifar import RunSpec


def net_label(net: str, depth: int) -> str:
    return f"{'ResNet' if net == 'resnet' else 'plain'}-{depth}"


def by_depth(rows: list[dict], net: str) -> list[dict]:
    """The rows of one net ("plain" or "resnet"), shallowest first: a curve of Fig. 6."""
    return sorted((r for r in rows if r["net"] == net), key=lambda r: r["depth"])


def depth_curve_sentence(rows: list[dict]) -> str:
    """Fig. 6 in words, step by step over depth: does plain error grow, does ResNet error fall, at every step?"""
    out = []
    for net, key, should in (("plain", "final_train_error", "grows"), ("resnet", "mean", "falls"),
                             ("resnet", "final_train_error", "falls")):
        curve = by_depth(rows, net)
        if len(curve) < 3 or any(r[key] is None for r in curve):  # no test error under the final protocol
            continue
        steps = [(a, b) for a, b in zip(curve, curve[1:])]
        good = [(a, b) for a, b in steps if (b[key] > a[key]) == (should == "grows")]
        what = "training" if key == "final_train_error" else curve[0].get("reported", "validation")
        name = "plain" if net == "plain" else "ResNet"
        values = ", ".join(f"{r['depth']}: {r[key]:.2%}" for r in curve)
        if len(good) == len(steps):
            out.append(f"{name} {what} error {should} with depth at every step ({values}), as in the paper's Fig. 6.")
        else:
            bad = [f"{a['depth']}->{b['depth']}" for a, b in steps if (a, b) not in good]
            out.append(f"{name} {what} error does not {should[:-1]} at every step ({values}; not at {', '.join(bad)}).")
    return " ".join(out)


def run_noise(rows: list[dict]) -> float | None:
    """One run's seed noise: the largest std over seeds among the networks that ran several (taken for every
    network, the unseeded ones too: deep plain nets may vary more)."""
    # ImageNet's rows have no seeds; the final protocol's have no std without a test split
    stds = [r["std"] for r in rows if r.get("seeds", 1) > 1 and r["std"] is not None]
    return max(stds) if stds else None


def noise_threshold(rows: list[dict], a: dict | None = None, b: dict | None = None) -> float | None:
    """The least difference between two networks' errors that counts: twice that difference's own noise, with
    one run's noise s (run_noise) and the seeds n each mean is over, 2 s sqrt(1/n_a + 1/n_b): a run against a
    3-seed mean needs 2.3 s, two 3-seed means 1.6 s, two single runs 2.8 s. Without a and b: two single runs."""
    s = run_noise(rows)
    if s is None:
        return None
    n_a, n_b = (a or {}).get("seeds", 1), (b or {}).get("seeds", 1)
    return 2 * s * math.sqrt(1 / n_a + 1 / n_b)


def noise_sentence(rows: list[dict]) -> str:
    """Which differences between ResNets exceed the seed noise measured (networks with 2+ seeds)."""
    seeded = [r for r in rows if r["seeds"] > 1]
    if not seeded:
        return ("Each network ran once, so no difference between them can be told from seed noise (--seeds K "
                "measures it).")
    s = run_noise(rows)
    if s is None:
        return "Seed noise is not measured: the networks run over several seeds have no test error to compare."
    parts = [f"{net_label(r['net'], r['depth'])} {r['mean']:.2%} ± {r['std']:.2%} ({r['seeds']} seeds)" for r in seeded]
    return (f"Seed noise (std of the final validation error): {'; '.join(parts)}. A difference between two networks "
            f"counts here only beyond twice its own noise, 2 s sqrt(1/n_a + 1/n_b) with s = {s:.2%} (the largest std) "
            f"and n the seeds of each mean: {2 * s * math.sqrt(2):.2%} between two single runs, "
            f"{2 * s * math.sqrt(1 + 1 / 3):.2%} between a run and a 3-seed mean.{depth_differences(rows)}")


def depth_differences(rows: list[dict]) -> str:
    """The ResNets' validation error between every two depths, sorted into beyond and within the pair's own
    threshold (noise_threshold: it depends on how many seeds each of the two has)."""
    curve = by_depth(rows, "resnet")
    pairs = [(a, b, b["mean"] - a["mean"], noise_threshold(rows, a, b)) for i, a in enumerate(curve)
             for b in curve[i + 1:]]
    if not pairs:
        return ""
    beyond = [f"{a['depth']}->{b['depth']} ({d * 100:+.2f} points, threshold {t:.2%})" for a, b, d, t in pairs
              if abs(d) > t]
    within = [f"{a['depth']}->{b['depth']} ({d * 100:+.2f}; {t:.2%})" for a, b, d, t in pairs if abs(d) <= t]
    return (f" Between ResNet depths, beyond it: {', '.join(beyond) or 'none'}; within it: "
            f"{', '.join(within) or 'none'}.")


def seeds_reported(rows: list[dict], asked: int) -> str:
    """How many seeds each network of Table 6 has: one figure when all have the same, else the range."""
    counts = sorted({r["seeds"] for r in rows})
    if len(counts) == 1:
        asked_note = f" ({asked} asked for)" if counts[0] != asked else ""
        return f"{counts[0]} seed{'s' if counts[0] > 1 else ''} per network{asked_note}"
    return f"{counts[0]} to {counts[-1]} seeds per network, as Table 6's seeds column gives them ({asked} asked for)"


def pending_sentence(pending: list[RunSpec], out: Path) -> str:
    """The runs asked for that have not finished: where each started one stands, and the rest grouped by seeds
    (`--seeds 3` over every net, when only some nets were meant to be seeded, would otherwise name each)."""
    if not pending:
        return ""
    started, unstarted = [], {}
    for spec in pending:
        folder = out / "runs" / spec.name
        metrics = read_metrics(folder) if (folder / "metrics.jsonl").is_file() else []
        if metrics:
            started.append(f"{spec.name} (at iteration {metrics[-1]['iteration']:,})")
        else:
            unstarted.setdefault((spec.net, spec.depth), []).append(spec.seed)
    by_seeds: dict[tuple[int, ...], list[str]] = {}
    for (net, depth), seeds in unstarted.items():
        by_seeds.setdefault(tuple(seeds), []).append(net_label(net, depth))
    groups = [f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))} of {', '.join(nets)}"
              for seeds, nets in by_seeds.items()]
    parts = ([", ".join(started)] if started else []) + (["not started: " + "; ".join(groups)] if groups else [])
    return ("Not in the tables above, unfinished: " + "; ".join(parts) + "; the same command (without "
            "--report-only) trains those that no other process is training.")


def errors_phrase(r: dict) -> str:
    """A row's final errors in words: "9.59% training, 16.44% validation error", or "9.59% training error" where
    the run has no held-out split (the final protocol)."""
    held_out = f", {r['mean']:.2%} {r.get('reported', 'validation')} error" if r["mean"] is not None else ""
    return f"{r['final_train_error']:.2%} training" + (held_out or " error")


def degradation_sentence(rows: list[dict]) -> str:
    """Plain words on whether the deeper plain net trains worse, and whether residual nets fix it."""
    plain, res = by_depth(rows, "plain"), by_depth(rows, "resnet")
    sentences = []
    if len(plain) >= 2:
        a, b = plain[0], plain[-1]
        shows = b["final_train_error"] > a["final_train_error"]
        sentences.append(f"The degradation problem {'shows' if shows else 'does not show'}: plain-{b['depth']} ends "
                         f"with {errors_phrase(b)}, plain-{a['depth']} with {errors_phrase(a)}.")
    if len(res) >= 2:
        a, b = res[0], res[-1]
        # The paper's deeper ResNet is better in both training and test error (Fig. 6, Table 6): judge each.
        trains = b["final_train_error"] < a["final_train_error"]
        # None: the final protocol without a test split, where training error is all there is to judge
        generalizes = None if None in (a["mean"], b["mean"]) else b["mean"] < a["mean"]
        both = f"ResNet-{b['depth']} {errors_phrase(b)}, ResNet-{a['depth']} {errors_phrase(a)}"
        threshold = noise_threshold(rows, a, b)
        tied = generalizes is not None and threshold is not None and abs(b["mean"] - a["mean"]) <= threshold
        if tied:  # said before any "better": a difference within the noise is no ranking
            sentences.append(f"The deeper ResNet {'trains better, as in the paper' if trains else 'does not train better'}"
                             f"; their validation errors differ by {abs(b['mean'] - a['mean']) * 100:.2f} points, within "
                             f"twice the seed noise of that difference ({threshold:.2%}): not a ranking ({both}).")
        elif generalizes is None:
            sentences.append(f"The deeper ResNet {'trains better, as in the paper' if trains else 'does not train better'}"
                             f": {both}.")
        elif trains and generalizes:
            sentences.append(f"As in the paper, the deeper ResNet is better in both errors: {both}.")
        elif trains or generalizes:
            better, worse = ("training", "validation") if trains else ("validation", "training")
            sentences.append(f"The deeper ResNet is better in {better} error, as in the paper, but not in {worse} "
                             f"error: {both}.")
        else:
            sentences.append(f"Unlike the paper's full runs, ResNet-{b['depth']} ({errors_phrase(b)}) has not "
                             f"overtaken ResNet-{a['depth']} ({errors_phrase(a)}) within this budget.")
    plain_at = {r["depth"]: r for r in plain}
    for r in res:
        p = plain_at.get(r["depth"])
        if p:
            a, b = r["final_train_error"], p["final_train_error"]
            verdict = "lower error than" if a < b else "higher error than" if a > b else "the same error as"
            sentences.append(f"At depth {r['depth']} the residual net trains to {verdict} the plain one "
                             f"({a:.2%} vs {b:.2%}).")
    return " ".join(sentences) or "Only one depth per network was run, so the degradation problem cannot be judged."


# Fig. 6 (left), the paper's one figure for its deepest plain net: plain-110's error stays above 60% throughout.
PAPER_PLAIN110_ABOVE = 0.60


def deepest_plain_sentence(rows: list[dict]) -> str:
    """Plain-110 against the paper's bar: above 60% error in every error the run has (training, and the
    reported split's where there is one), or not."""
    r = next((r for r in rows if r["net"] == "plain" and r["depth"] == 110), None)
    if r is None or r["final_train_error"] is None:
        return ""
    errors = [e for e in (r["final_train_error"], r["mean"]) if e is not None]
    side, verdict = (("above", ", as in the paper") if min(errors) > PAPER_PLAIN110_ABOVE else
                     ("below", ", unlike the paper") if max(errors) <= PAPER_PLAIN110_ABOVE else
                     ("on both sides of", ""))
    return (f"Plain-110 ends with {errors_phrase(r)}: {side} the {PAPER_PLAIN110_ABOVE:.0%} the paper's Fig. 6 shows "
            f"for it{verdict}.")


def response_sentence(stds: dict[str, list[float]]) -> str:
    """Fig. 7 in words: are ResNet responses smaller than plain ones of the same depth?"""
    mean = {k: sum(v) / len(v) for k, v in stds.items()}
    parts = []
    for name, value in mean.items():
        if name.startswith("resnet-") and f"plain-{name[7:]}" in mean:
            other = mean[f"plain-{name[7:]}"]
            parts.append(f"ResNet-{name[7:]} {value:.3f} vs plain-{name[7:]} {other:.3f} "
                         f"({'smaller, as in the paper' if value < other else 'not smaller, unlike the paper'})")
    listing = ", ".join(f"{k} {v:.3f}" for k, v in mean.items())
    return f"Mean over layers of the response std: {listing}." + (f" {'; '.join(parts)}." if parts else "")


def elapsed_since(start: float) -> str:
    s = time.time() - start
    return f"{s / 60:.1f} min" if s < 3600 else f"{s / 3600:.2f} h"


