"""The training step against this machine's ceiling.

The ceiling is measured, not taken from a data sheet: a large matmul and a large 3x3 convolution in each
precision the device computes natively, on the threads the step uses. The step's FLOPs are counted by torch's
own FlopCounterMode over one forward and backward (convolutions and matmuls, the work a peak measures;
BatchNorm, ReLU, the loss and SGD are memory-bound and counted as time, not FLOPs). The fraction of the peak
says how much a faster kernel could still give; where the step sits far below it, `profile_step` says where the
time goes.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from resnetlab.bench.throughput import Options, trainer_rate
from resnetlab.bench.timing import seconds_per_call
from resnetlab.bench.traffic import bandwidth, bound, count_step, kind_of
from resnetlab.models import create_model
from resnetlab.runtime import memory
from resnetlab.training import fastpath

os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # the profiler's own start/stop chatter, not ours to print
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


def matmul_gflops(dtype: torch.dtype, n: int = 2048, min_seconds: float = 0.5) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    return 2 * n**3 / seconds_per_call(lambda: torch.mm(a, b), min_seconds) / 1e9


# (batch, channels, size) of the 3x3 convolutions the peak is the best of: a large one, and those of the CIFAR nets'
# three stages at batch 128. Which runs fastest differs by CPU class (on an AVX2-only EPYC the 64-channel 8x8 one
# ran 4% above the 128-channel one): a peak below what the step's own convolutions reach would overstate the step.
CONV_SHAPES = ((64, 128, 28), (128, 16, 32), (128, 32, 16), (128, 64, 8))


def conv_gflops(dtype: torch.dtype, batch: int = 64, channels: int = 128, size: int = 28,
                min_seconds: float = 0.5) -> float:
    """A 3x3 convolution as ResNets have them (channels_last, as the step runs)."""
    x = torch.randn(batch, channels, size, size, dtype=dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(channels, channels, 3, 3, dtype=dtype).contiguous(memory_format=torch.channels_last)
    flops = 2 * batch * channels * channels * 9 * size * size
    with torch.no_grad():
        return flops / seconds_per_call(lambda: F.conv2d(x, w, padding=1), min_seconds) / 1e9


def conv_peak(dtype: torch.dtype, min_seconds: float = 0.5) -> float:
    """The fastest of CONV_SHAPES."""
    return max(conv_gflops(dtype, b, c, s, min_seconds=min_seconds) for b, c, s in CONV_SHAPES)


def peaks(precisions: list[str], min_seconds: float = 0.5) -> dict[str, dict[str, float]]:
    """{precision: {"matmul": GFLOP/s, "conv": GFLOP/s, "peak": the larger}} on this process's threads."""
    out = {}
    for name in precisions:
        dtype = PRECISIONS[name] or torch.float32
        mm, conv = matmul_gflops(dtype, min_seconds=min_seconds), conv_peak(dtype, min_seconds=min_seconds)
        out[name] = {"matmul": mm, "conv": conv, "peak": max(mm, conv)}
    return out


def step_flops(model_name: str, batch: int) -> float:
    """FLOPs of one training step's forward and backward, counted by FlopCounterMode (per batch)."""
    model = create_model(model_name)
    size = 32 if model_name.startswith("cifar_") else 224
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, 10, (batch,))
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    return float(counter.get_total_flops())


@dataclass
class BareStep:
    """The step and nothing around it: a fixed batch already on the device, the model in channels_last,
    forward, loss, backward and SGD (momentum, weight decay), in one precision, eager."""
    model_name: str
    precision: str
    batch: int = 128

    def __post_init__(self) -> None:
        size = 32 if self.model_name.startswith("cifar_") else 224
        self.model = create_model(self.model_name).to(memory_format=torch.channels_last).train()
        self.x = torch.randn(self.batch, 3, size, size).contiguous(memory_format=torch.channels_last)
        self.y = torch.randint(0, 10, (self.batch,))
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
        self.dtype = PRECISIONS[self.precision]

    def __call__(self) -> None:
        with torch.autocast("cpu", dtype=self.dtype or torch.bfloat16, enabled=self.dtype is not None):
            loss = F.cross_entropy(self.model(self.x).float(), self.y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()


def _one_core_worker(model_name: str, precision: str, batch: int, min_seconds: float, barrier, results) -> None:
    torch.set_num_threads(1)
    memory.keep_freed_memory()  # a spawned process starts with glibc's defaults: the same allocator as its parent
    step = BareStep(model_name, precision, batch)
    step()
    barrier.wait()  # every process times the same seconds, so they contend as torchrun's would
    results.put(batch / seconds_per_call(step, min_seconds=min_seconds, repeats=2))


def one_process_per_core(model_name: str, precision: str, processes: int, batch: int = 128,
                         min_seconds: float = 2.0) -> float:
    """images/s of `processes` one-thread processes stepping at once (torchrun's one process per core),
    summed. Their gradient all-reduce is left out: 0.27M-0.85M parameters cost milliseconds against a
    step of a second."""
    ctx = torch.multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(processes), ctx.Queue()
    workers = [ctx.Process(target=_one_core_worker, args=(model_name, precision, batch, min_seconds, barrier, results))
               for _ in range(processes)]
    for w in workers:
        w.start()
    rates = [results.get(timeout=600) for _ in workers]
    for w in workers:
        w.join()
    return sum(rates)


def native_precisions() -> list[str]:
    return ["bf16", "fp32"] if fastpath.cpu_has_native_bf16() else ["fp32"]


def _phases(step: BareStep, steps: int) -> dict[str, float]:
    """Seconds per step in forward (with the loss), backward and the SGD update, timed apart."""
    totals = {"forward": 0.0, "backward": 0.0, "optimizer (SGD)": 0.0}
    for _ in range(steps):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=step.dtype or torch.bfloat16, enabled=step.dtype is not None):
            loss = F.cross_entropy(step.model(step.x).float(), step.y)
        t1 = time.perf_counter()
        step.opt.zero_grad(set_to_none=True)
        loss.backward()
        t2 = time.perf_counter()
        step.opt.step()
        t3 = time.perf_counter()
        for key, seconds in zip(totals, (t1 - t0, t2 - t1, t3 - t2)):
            totals[key] += seconds / steps
    return totals


def profile_step(step: BareStep, steps: int = 3) -> dict[str, float]:
    """The share of the step's time in each kind of op: the SGD update timed apart, forward and backward split
    by the self time of their ATen ops under torch.profiler."""
    step()
    phases = _phases(step, steps)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            with torch.autocast("cpu", dtype=step.dtype or torch.bfloat16, enabled=step.dtype is not None):
                loss = F.cross_entropy(step.model(step.x).float(), step.y)
            loss.backward()
    step.opt.zero_grad(set_to_none=True)
    kinds: dict[str, float] = {}
    for event in prof.key_averages():
        if event.key.startswith("aten::"):
            name = event.key[len("aten::"):]
            kind = kind_of(name)
            kinds[kind] = kinds.get(kind, 0.0) + event.self_cpu_time_total
    total_step = sum(phases.values())
    compute = (phases["forward"] + phases["backward"]) / total_step
    ops = sum(kinds.values()) or 1.0
    shares = {k: compute * v / ops for k, v in kinds.items()}
    shares["optimizer (SGD)"] = phases["optimizer (SGD)"] / total_step
    return dict(sorted(shares.items(), key=lambda kv: -kv[1]))


def roofline(models: list[str], batch: int = 128, profile: bool = True, per_core: bool = True,
             data: str | None = None, min_seconds: float = 2.0, log=print) -> dict:
    """Peaks, each model's counted FLOPs, its bare eager step in each native precision (images/s, GFLOP/s and
    the fraction of that precision's peak), the same step as one process per core, and where the step's time
    goes in the fastest precision."""
    precisions, threads = native_precisions(), torch.get_num_threads()
    # Every step below, bare or the trainer's, with the allocator the trainer sets: no page faults in any of them.
    log(f"freed memory: {memory.keep_freed_memory()} in this process")
    log(f"measuring the peak in {', '.join(precisions)} on {threads} threads...")
    result = {"threads": threads, "peaks": peaks(precisions, min_seconds / 4), "steps": []}
    for name, p in result["peaks"].items():
        p.update(bandwidth(PRECISIONS[name] or torch.float32, min_seconds=min_seconds / 4))
        log(f"  {name}: matmul {p['matmul']:,.1f} GFLOP/s, 3x3 convolution {p['conv']:,.1f} GFLOP/s (the best of "
            f"{len(CONV_SHAPES)} shapes); memory: copy {p['copy']:,.1f} GB/s, triad {p['triad']:,.1f} GB/s")
    for name in models:
        flops = step_flops(name, batch)
        for precision in precisions:
            step = BareStep(name, precision, batch)
            seconds = seconds_per_call(step, min_seconds=min_seconds, repeats=2)
            row = step_row(name, precision, flops, batch / seconds, batch, result["peaks"][precision]["peak"])
            row.update(traffic_row(step, seconds, result["peaks"][precision]))
            if per_core and threads > 1:
                row["per_core_images_per_s"] = one_process_per_core(name, precision, threads, batch, min_seconds)
            if profile and precision == precisions[0]:
                row["time_shares"] = profile_step(step)
            result["steps"].append(row)
            extra = (f"; {threads} one-thread processes: {row['per_core_images_per_s']:,.0f} images/s"
                     if "per_core_images_per_s" in row else "")
            log(f"  {name} {precision}: {row['images_per_s']:,.0f} images/s, {row['gflops']:,.1f} GFLOP/s = "
                f"{row['fraction_of_peak']:.0%} of the {precision} peak{extra}; {row['mb_per_step']:,.0f} MB moved "
                f"per step, bound {1e3 * row['bound_seconds']:.0f} ms (per kind of op {1e3 * row['bound_seconds_per_kind']:.0f}"
                f" ms), the step {1e3 * seconds:.0f} ms = {row['fraction_of_bound']:.0%} of the bound")
            if "time_shares" in row:
                log("    its time: " + ", ".join(f"{k} {v:.0%}" for k, v in row["time_shares"].items()))
        if data is not None:
            result["steps"].append(trainer_row(name, data, flops, batch, result["peaks"], log))
    return result


def traffic_row(step: BareStep, seconds: float, peak: dict) -> dict:
    """The bytes the step moves and the roofline's bound with both ceilings; the step's speed as a fraction of the
    per-kind bound (1 = as fast as the machine allows for unfused ops)."""
    counted = count_step(step)
    limits = bound(counted, peak["peak"], peak["bandwidth"])
    kinds = {k: {"gflop": v["flops"] / 1e9, "mb": v["bytes"] / 1e6, "bound_by": limits["bound_by"][k]}
             for k, v in counted["kinds"].items()}
    return {"mb_per_step": counted["bytes"] / 1e6, "bound_seconds": limits["bound_seconds"],
            "bound_seconds_per_kind": limits["bound_seconds_per_kind"],
            "fraction_of_bound": limits["bound_seconds_per_kind"] / seconds, "kinds": kinds}


def trainer_row(name: str, data: str, flops: float, batch: int, peak: dict, log) -> dict:
    """The trainer's own data pipeline and step on the fast path `train` chooses, against the same peak."""
    log(f"  {name}: the trainer's step on its fast path (compiling it may take a minute)...")
    measured = trainer_rate(Options(model=name, data=data, steps=20), torch.device("cpu"), "auto")
    precision = measured["precision"]
    row = step_row(name, precision, flops, measured["images_per_s"], batch, peak[precision]["peak"])
    row.update(kind=f"trainer {measured['mode']}", path=measured["path"], compile_seconds=measured["compile_seconds"])
    log(f"  {name} trainer {measured['mode']} {precision}: {row['images_per_s']:,.0f} images/s = "
        f"{row['fraction_of_peak']:.0%} of the {precision} peak")
    return row


def step_row(model: str, precision: str, flops: float, images_per_s: float, batch: int, peak: float) -> dict:
    gflops = flops * images_per_s / batch / 1e9
    return {"model": model, "precision": precision, "gflop_per_step": flops / 1e9, "images_per_s": images_per_s,
            "gflops": gflops, "fraction_of_peak": gflops / peak}
