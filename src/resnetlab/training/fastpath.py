"""The fast path of a run: whether the training step is compiled, and in which precision it runs.

Chosen per machine from what was measured, never assumed (benchmarks/results): on a 2-core AMD EPYC,
torch.compile of the step ran CIFAR ResNet-20 1.2x faster than eager after about a minute of compiling,
and bf16 autocast doubled the speed on a CPU with native bf16 but was ten times slower on one without.
On one H200 (benchmarks/results/NVIDIA_H200.jsonl) the default compile mode gained 14% at ResNet-20 and lost
11% at ResNet-56, and only CUDA graphs (reduce-overhead) paid, 2.6x at ResNet-20; until a whole run has
trained as well on them, CUDA keeps the conservative path (eager, bf16, channels_last).
"""

from __future__ import annotations

import platform
import shutil
from dataclasses import dataclass
from functools import lru_cache

import torch

from resnetlab.models.registry import is_cifar
from resnetlab.runtime.devices import cpu_isa
from resnetlab.training.config import TrainConfig
from resnetlab.training.optimizers import OPTIMIZERS

# Compiling costs about a minute on a 2-core CPU; at a 1.2x speed-up it is repaid after ~2,000 steps.
COMPILE_MIN_ITERS = 2000
# Device types on which the compiled step measured faster than eager, for CIFAR's networks (32 px). ImageNet's
# networks at 224 px measured no faster compiled on the CPU (AMX Xeon, ResNet-18, batch 32, bf16: `bench --what
# folders` 47.5 images/s compiled vs 48.2 eager; the bare step 49 vs 55): their convolutions, the same oneDNN
# kernels either way, take most of the step, and inductor's BatchNorm kernels were slower than ATen's there.
COMPILE_MEASURED_FASTER = ("cpu",)
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}
PRECISION_NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16", None: "fp32"}


@dataclass(frozen=True)
class FastPath:
    compile_mode: str | None  # a torch.compile mode, or None: eager
    amp: torch.dtype | None  # autocast dtype, or None: fp32
    why: str  # one line for the start of a run

    @property
    def compiled(self) -> bool:
        return self.compile_mode is not None

    @property
    def precision(self) -> str:
        return PRECISION_NAMES.get(self.amp, "fp32")

    @property
    def mode(self) -> str:
        """How the step runs: "eager" or "compiled" (with the torch.compile mode when not the default)."""
        if self.compile_mode is None:
            return "eager"
        return "compiled" if self.compile_mode == "default" else f"compiled ({self.compile_mode})"

    @property
    def name(self) -> str:
        return f"{self.mode} {self.precision}"


@lru_cache(maxsize=None)
def device_name(device: torch.device) -> str:
    """The machine as a report names it: the GPU's name, or the CPU's model (from /proc/cpuinfo on Linux) and
    its class by instruction set ("AMD EPYC (CPU, AVX-512 BF16)"), which decides its speed in each precision."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            models = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    except OSError:
        models = []
    return f"{models[0] if models else platform.processor() or platform.machine()} (CPU, {cpu_isa()})"


def cpu_has_native_bf16() -> bool:
    """AVX-512 BF16 or AMX: the CPUs whose bf16 is fast. Plain AVX-512 (or AVX2) emulates it, ten times slower."""
    cpu = getattr(torch, "cpu", None)
    try:
        return bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())
    except AttributeError:  # an older torch: ask oneDNN
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False


def cuda_has_bf16(device: torch.device) -> bool:
    """bf16 tensor cores from compute capability 8.0 (A100) on; older GPUs only emulate it."""
    return torch.cuda.get_device_capability(device)[0] >= 8


def native_precisions(device: torch.device) -> list[torch.dtype | None]:
    """The precisions this device computes at full speed, fastest first (None: fp32)."""
    if device.type == "cuda":
        return [torch.bfloat16 if cuda_has_bf16(device) else torch.float16, None]
    return [torch.bfloat16, None] if cpu_has_native_bf16() else [None]


def precision(cfg: TrainConfig, device: torch.device, runs: int = 1) -> tuple[torch.dtype | None, str]:
    if cfg.amp != "auto":
        return DTYPES[cfg.amp], f"{cfg.amp if cfg.amp != 'off' else 'fp32'} (--amp {cfg.amp})"
    if device.type == "cuda":
        if cuda_has_bf16(device):
            return torch.bfloat16, "bf16 autocast (CUDA)"
        if runs == 1:
            return torch.float16, "fp16 autocast with a loss scale (this GPU has no bf16 tensor cores)"
        return None, "fp32 (this GPU has no bf16, and fp16's loss scale cannot serve runs trained together)"
    if cpu_has_native_bf16():
        return torch.bfloat16, "bf16 autocast (this CPU computes bf16 natively)"
    return None, "fp32 (this CPU has no native bf16, where bf16 autocast measured 10x slower)"


def compilation(cfg: TrainConfig, device: torch.device) -> tuple[str | None, str]:
    mode = "default" if cfg.compile in ("off", "default") else cfg.compile
    if cfg.fast == "off" or cfg.compile == "off":
        return None, "eager (--fast off)"
    if not OPTIMIZERS[cfg.opt].self_checked:
        return None, f"eager (--opt {cfg.opt}: the self-check of the compiled step knows SGD's update rule only)"
    if cfg.fast == "on":
        return mode, f"the whole step compiled (torch.compile mode {mode}, --fast on)"
    if cfg.iters < COMPILE_MIN_ITERS:
        return None, f"eager ({cfg.iters:,} iterations are too few to repay compiling; it pays from {COMPILE_MIN_ITERS:,})"
    if device.type not in COMPILE_MEASURED_FASTER:
        return None, f"eager (compiling has not been measured faster on {device.type.upper()} yet)"
    if not is_cifar(cfg.model):
        return None, f"eager ({cfg.model} at ImageNet's sizes measured no faster compiled on the {device.type.upper()})"
    if device.type == "cpu" and not (shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")):
        return None, "eager (torch.compile needs a C++ compiler on the CPU, and none is installed)"
    return mode, f"the whole step compiled (torch.compile mode {mode}: measured faster on this device type)"


def choose(cfg: TrainConfig, device: torch.device, runs: int = 1, recorded: str | None = None) -> FastPath:
    """The fast path of a run of `cfg` on `device`; --fast auto|on|off, --amp and --compile steer it.
    `recorded`: the precision a resumed run trained in, kept where this device computes it natively."""
    amp, amp_why = precision(cfg, device, runs)
    if cfg.amp == "auto" and recorded is not None and recorded != PRECISION_NAMES.get(amp, "fp32"):
        kept = {name: dtype for dtype, name in PRECISION_NAMES.items()}.get(recorded)
        if kept in native_precisions(device) and not (kept == torch.float16 and runs > 1):
            # fp16's loss scale is one per optimizer: K runs stacked into one step cannot each keep their own
            amp, amp_why = kept, f"{recorded} (the precision this run trained in so far)"
    if cfg.amp == "auto" and amp is not None and not OPTIMIZERS[cfg.opt].self_checked:
        amp, amp_why = None, f"fp32 (--opt {cfg.opt}: the self-check of reduced precision knows SGD's update rule only)"
    mode, compile_why = compilation(cfg, device)
    return FastPath(mode, amp, f"{compile_why}; {amp_why}")


def fallbacks(cfg: TrainConfig, path: FastPath) -> list[FastPath]:
    """`path`, then the paths to try if the self-check rejects it, fastest first: the same precision eager,
    then fp32 compiled, then fp32 eager (the reference itself). A choice the user made (--fast on, --amp) is
    kept. The order is measured: on an Intel Xeon with AMX, eager bf16 880 images/s, compiled fp32 450, eager
    fp32 420 (ResNet-20, 2 cores)."""
    out = [path]
    if path.compiled and cfg.fast != "on":
        out.append(FastPath(None, path.amp, f"eager, as compiled {path.precision} was rejected; " + path.why.split("; ")[-1]))
    if path.amp is not None and cfg.amp == "auto":
        if path.compiled:
            out.append(FastPath(path.compile_mode, None, f"compiled fp32, as {path.precision} was rejected"))
        if cfg.fast != "on" or not path.compiled:
            out.append(FastPath(None, None, f"eager fp32, as {path.precision} was rejected"))
    return out


def configure_cuda(amp: torch.dtype | None) -> None:
    """What a CUDA user expects: cuDNN picks the fastest kernels for our fixed shapes, and where fp32 is asked
    matmuls and convolutions use TF32 tensor cores (10 mantissa bits: ample for SGD's noisy gradients)."""
    torch.backends.cudnn.benchmark = True
    if amp is None:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
