"""Small timing helpers shared by the benchmarks."""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def time_call(fn: Callable[[], object], repeats: int = 10, warmup: int = 2) -> dict:
    """Run `fn` warmup+repeats times; return median/mean/p95 seconds of the timed runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    times.sort()
    return {"median": statistics.median(times), "mean": statistics.fmean(times),
            "p95": times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))], "n": len(times)}
