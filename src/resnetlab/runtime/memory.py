"""How the process's memory allocator treats the tensors of training and evaluation on the CPU.

A training step allocates and frees the same activations every iteration. glibc's malloc returns large blocks to
the system when they are freed (anything above its mmap threshold, and the heap's free top above its trim
threshold), so the next step takes them back one page fault at a time, each page zeroed by the kernel: ResNet-20
at batch 128 faulted ~4,700 pages a step, ResNet-18 at 224 px ~125,000. Keeping freed memory in the process
removes that work: measured with benchmarks/allocator.sh (alternated processes), ResNet-20's trainer step 1.067x
on the 2-core AVX2-only EPYC and 1.155x on the AVX-512 BF16 one; ResNet-18's bare step at 224 px 1.04-1.05x
(AVX2); `evaluate` of ResNet-20 on 50,000 images 1.07x (AVX2), where inference (no activations kept for a
backward) had spent a sixth of its CPU time in page faults; `predict` of ResNet-18 on 640 256-px JPEGs 1.5x
(AVX-512 BF16: system time 12-13 s -> 1 s, 5.1 million page faults -> 0.3 million). This is a pair of glibc
`mallopt` calls rather than jemalloc or tcmalloc, which would have to be preloaded before Python starts; it is
what glibc's own MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ tunables do, set from inside the process.

The cost: the process keeps its peak memory until it exits (the step reaches that peak every iteration anyway).
RESNETLAB_KEEP_FREED_MEMORY=0 leaves the allocator as it is, and so does any malloc setting of the user's own.
"""

from __future__ import annotations

import ctypes
import os

from resnetlab.errors import UserError

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's <malloc.h>
# Blocks above this still go straight to the system (a single 1 GiB tensor is not a step's activation).
MMAP_THRESHOLD = 1 << 30
MMAP_THRESHOLD_DOCUMENTED_MAX = 32 << 20  # older glibc refuses more than 4 MiB * sizeof(long)
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")

_kept = False


def wanted() -> bool:
    """RESNETLAB_KEEP_FREED_MEMORY: 1 (the default) or 0; anything else is refused in one line."""
    text = os.environ.get("RESNETLAB_KEEP_FREED_MEMORY", "1")
    if text not in ("0", "1"):
        raise UserError(f"RESNETLAB_KEEP_FREED_MEMORY={text!r}: give 1 (keep freed memory in the process, the "
                        "default) or 0 (leave the memory allocator as it is)")
    return text == "1"


def keep_freed_memory() -> str:
    """Ask glibc to keep freed blocks for the next step; says what was done. Once per process: the settings are
    process-wide and stay until it exits."""
    global _kept
    if not wanted():
        return "left as it is (RESNETLAB_KEEP_FREED_MEMORY=0)"
    own = [name for name in USER_SETTINGS if os.environ.get(name)]
    own += ["GLIBC_TUNABLES"] if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", "") else []
    if own:
        return f"left as it is ({own[0]} is set)"
    if _kept:
        return "kept"
    libc = _glibc()
    if libc is None:
        return "left as it is (not glibc)"
    if not libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD):
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_DOCUMENTED_MAX)
    libc.mallopt(M_TRIM_THRESHOLD, -1)  # -1: never trim (mallopt(3))
    _kept = True
    return "kept"


def _glibc() -> ctypes.CDLL | None:
    """glibc's own library, or None elsewhere (macOS, musl, Windows), where nothing is changed."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.gnu_get_libc_version  # only glibc has it
    except (OSError, AttributeError):
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return libc
