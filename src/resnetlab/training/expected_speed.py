"""How long a run will take on this CPU, said at its start, before it has measured itself (the figure measured
on the machine follows after the first log interval). CPUs of one name differ tenfold in bf16 (an AVX2-only EPYC
and one with AVX-512 BF16 both say "AMD EPYC"), so the figure is looked up by the class of CPU, as
runtime.devices.cpu_isa names it."""

from __future__ import annotations

import torch

from resnetlab.models import count_macs, create_model
from resnetlab.runtime.devices import cpu_isa

# The trainer's whole step for CIFAR ResNet-20 (batch 128, the fast path train picks), images/s on 2 cores:
# AVX2-only EPYC 249 (its fp32 eager step; measured with `resnetlab train`), AVX-512 BF16 EPYC 950 (compiled bf16,
# benchmarks/results/AMD_EPYC_CPU_AVX-512_BF16.jsonl), AMX Xeon 1,287-1,513 (compiled bf16, on different machines
# of that class; the lower end taken, benchmarks/results/roofline.md). Other CIFAR nets are
# scaled by their multiply-adds: ResNet-56 measured 317-335 on the AVX-512 BF16 class where the scaling says
# 309, ResNet-110 183-188 where it says 155: the estimate errs long, never short.
MEASURED_CORES = 2
RESNET20_IMAGES_PER_S = {"AVX2": 249, "AVX-512 BF16": 950, "AMX": 1300}
RESNET20_MACS = 40_551_040  # count_macs(create_model("cifar_resnet20"), 32), checked by a test


def expected_images_per_s(model: str, isa: str, threads: int, size: int = 32) -> float | None:
    """Images/s a CIFAR net's training should reach on `threads` cores of this CPU class at `size` px (in
    memory); None where no figure was measured (another class, an ImageNet net, streamed images: their data
    pipeline changes the answer)."""
    if isa not in RESNET20_IMAGES_PER_S or not model.startswith("cifar_") or size > 64:
        return None
    macs = count_macs(create_model(model), size)
    # Two threads on two cores was measured; fewer cores scale it down, more are not claimed to scale it up.
    return RESNET20_IMAGES_PER_S[isa] * RESNET20_MACS / macs * min(threads, MEASURED_CORES) / MEASURED_CORES


def expectation(model: str, iterations: int, batch: int, device: torch.device, size: int = 32) -> str | None:
    """The start-up line: the figure for this CPU class and the time it gives, or None (a GPU, an unmeasured
    class or network: the measured figure after the first log interval is all there is)."""
    if device.type != "cpu" or iterations <= 0:
        return None
    isa, threads = cpu_isa(), torch.get_num_threads()
    speed = expected_images_per_s(model, isa, threads, size)
    if speed is None:
        return None
    scaled = "" if model == "cifar_resnet20" and size == 32 else ", scaled from ResNet-20's by multiply-adds"
    return (f"expected on this CPU ({isa}, {threads} thread{'s' if threads > 1 else ''}): about {speed:,.0f} "
            f"images/s (measured on {MEASURED_CORES} cores of this class{scaled}), so {iterations:,} iterations "
            f"take about {duration(iterations * batch / speed)}; this machine's own figure follows")


def duration(seconds: float) -> str:
    """A time as a person says it: 40 s, 12 min, 2.3 h."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"
