"""The one timer of the benchmarks."""

from __future__ import annotations

import time
from typing import Callable


def seconds_per_call(fn: Callable[[], object], min_seconds: float = 0.5, repeats: int = 3) -> float:
    """The best of `repeats` timings of fn, each averaged over enough calls to last min_seconds (one warm-up
    call first: oneDNN picks and caches its kernels on the first call)."""
    fn()
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-6)
    calls = max(1, int(min_seconds / once))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best
