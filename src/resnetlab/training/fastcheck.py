"""The fast path proves itself on this machine before a run uses it.

A compiled or reduced-precision step can be wrong on one machine and right on the next: an earlier session saw
torch 2.14's compiled BatchNorm backward under CPU bf16 autocast give non-finite gradients on an Intel Xeon with
AMX (not reproduced there on torch 2.14.1), while the same step is exact on an AMD EPYC with AVX-512 BF16. So two real steps of the chosen path, on the run's own
network and first batch, are compared with two eager fp32 steps: everything a step changes is looked at (the
loss, each gradient's direction, the classifier's gradient, BatchNorm's running statistics, and SGD's rule with
momentum and weight decay on the step's own gradients), each within probe.TOLERANCE; a net too chaotic at a
precision for that (deep plain nets at initialization) is compared where rounding cannot scramble it (probe.py).
A rejected path gives way to the next-fastest (fastpath.fallbacks). The steps change the network and optimizer
in place and are undone, so training starts from exactly the state it would have had. The compiled step
compiled here is the one the run then uses: the check costs four eager fp32 steps (the reference and its twin).

Verdicts are kept in RESNETLAB_CACHE/fastpath-verdicts.json per (torch and resnetlab version, machine and its
ISA, network as built, precision, mode) for VERDICT_DAYS: a later run on the same machine pays nothing.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import signal
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterator

import torch

from resnetlab.data.batch import Batch
from resnetlab.data.download import default_root
from resnetlab.errors import UserError
from resnetlab.files import atomic_write
from resnetlab.runtime import distributed
from resnetlab.training.fastpath import FastPath, device_name
from resnetlab.training.probe import PROBE_STEPS, Probe, Step, compare, perturbed
from resnetlab.training.settings import CHANGES_STEP
from resnetlab.training.step import TrainingStep

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


def verdict_key(train_step: TrainingStep, path: FastPath) -> str:
    """Everything that changes the step: torch and resnetlab, the machine by what it computes (device_name
    names the ISA), the classes and the runs stacked, the path, and every setting marked as changing the step
    (settings.py: step=True: the network as built, what is trained and how, the batch transforms, the
    averagers, the layout). A verdict on a from-scratch step says nothing of a frozen one, nor of a mixup one."""
    cfg = train_step.runs[0].cfg
    classes = len(train_step.runs[0].data.classes)
    settings = " ".join(f"{name}={getattr(cfg, name)!r}" for name in CHANGES_STEP)
    return (f"torch {torch.__version__} | resnetlab {resnetlab_version()} | {device_name(train_step.device)} | "
            f"classes {classes} x{train_step.k} | {settings} | {path.precision} | {path.mode}")


@contextlib.contextmanager
def interrupts_noticed() -> Iterator[list[int]]:
    """While inside, a SIGINT is remembered (and raised as KeyboardInterrupt as usual): torch.compile's worker
    processes die of the same Ctrl-C and the compile fails with another exception, which must not pass for a
    compiler failure (the first Ctrl-C would be lost)."""
    seen: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield seen
        return

    def note(signum: int, frame: object) -> None:
        seen.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, note)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, previous)


# Every (compile mode, precision) a path can have: the ranks of a torchrun job name their candidates in it.
PATH_SPACE = [(mode, precision) for mode in (None, "default", "reduce-overhead", "max-autotune",
                                             "max-autotune-no-cudagraphs") for precision in ("bf16", "fp16", "fp32")]


def common_candidates(train_step: TrainingStep, candidates: list[FastPath]) -> list[FastPath]:
    """Under torchrun, the candidates every rank has (ranks on other hardware can have others: one without
    native bf16 has eager fp32 alone), so that all ranks check the same paths in the same order and meet in
    the same collectives; a single process keeps its own."""
    if not train_step.dist.enabled:
        return candidates
    mine = torch.tensor([float(any((p.compile_mode, p.precision) == key for p in candidates)) for key in PATH_SPACE],
                        device=train_step.device)
    everywhere = distributed.all_sum(train_step.dist, mine) >= train_step.dist.world_size
    common = [p for p in candidates if everywhere[PATH_SPACE.index((p.compile_mode, p.precision))]]
    return common or [EAGER_FP32]


def _probe_path(probe: Probe, reference: Step, twin: Step, precision: str) -> tuple[str | None, str, float]:
    """(why the train_step's current path disagrees, or None; what was measured; seconds of its first step)."""
    with interrupts_noticed() as interrupted:
        try:
            result, seconds = probe.run_scaled()
            why, measured = compare(result, reference, precision, twin)
            return why, measured, seconds
        except Exception as e:  # a compiler that fails on this machine is a rejection, not a crash...
            if interrupted:  # ...but a Ctrl-C that broke the compiler's workers is the user's stop
                raise KeyboardInterrupt from None
            return f"it failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300], "", 0.0


def settle(train_step: TrainingStep, candidates: list[FastPath], batches: list[Batch], lrs: list[float],
           say: Callable[[str], None] = print) -> tuple[float, list[str]]:
    """Put `train_step` on the first of `candidates` that agrees with the eager fp32 step (cached verdicts are
    trusted); returns the seconds spent compiling and what the check found (one line per rejected path, then
    the accepted one's). Under torchrun every rank checks (no cache: ranks on other machines could hold other
    verdicts) and a path rejected on any rank is rejected on all, so the ranks step alike."""
    dist = train_step.dist
    verdicts = {} if dist.enabled else _load_verdicts()
    candidates = common_candidates(train_step, candidates)
    probe = Probe(train_step, batches, lrs)
    reference: Step | None = None
    twin: Step | None = None
    rejected: list[str] = []
    compile_seconds = 0.0
    for path in candidates:
        if not path.compiled and path.amp is None:  # eager fp32: the reference itself
            train_step.use(path)
            return compile_seconds, rejected
        key = verdict_key(train_step, path)
        verdict = verdicts.get(key)
        if verdict is not None and isinstance(verdict.get("ok"), bool):
            train_step.use(path)
            if verdict["ok"]:
                return compile_seconds, [*rejected, f"{path.name} agreed with eager fp32 on this machine earlier "
                                                    f"({verdict.get('distances') or 'cached'})"]
            rejected.append(f"{path.name} rejected on this machine earlier: {verdict.get('why')} (kept "
                            f"{VERDICT_DAYS} days in {verdicts_path()}; delete it to check again)")
            continue
        if reference is None:
            train_step.use(EAGER_FP32)
            reference, _ = probe.run()
        if twin is None:  # the reference on a rounding-perturbed input: how chaotic the net is
            train_step.use(EAGER_FP32)
            twin, _ = Probe(train_step, perturbed(batches), lrs).run()
        train_step.use(path)
        if path.compiled:
            say(f"checking the {path.name} step against eager fp32 over {PROBE_STEPS} steps (compiling it: about a minute "
                "on an idle 2-core CPU, up to 8 on a busy one)...")
        why, measured, seconds = _probe_path(probe, reference, twin, path.precision)
        if path.compiled:
            compile_seconds += seconds
            train_step.compiled_once = True
        failed = distributed.all_sum(dist, torch.tensor([float(why is not None)], device=train_step.device)).item()
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
