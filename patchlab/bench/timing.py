"""Timing for the benchmarks: contenders run round-robin, judged on the best of N (other load only adds time)."""

from __future__ import annotations

import statistics
import time
from typing import Callable


def interleaved(contenders: dict[str, Callable[[], object]], rounds: int = 5, warmup: int = 1,
                clock: Callable[[], float] = time.perf_counter,
                cpu: dict[str, list[float]] | None = None) -> dict[str, list[float]]:
    """Seconds per call of each contender, `rounds` samples each, run round-robin (competitor, ours, limit in
    every round) so that load from other processes hits all of them alike. Judge on the best (min): on a shared
    machine other load only ever adds time. Pass a dict as `cpu` to also collect this process's CPU seconds per
    call (robust to preemption by other processes, so informative on a loaded machine)."""
    for fn in contenders.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            start, start_cpu = clock(), time.process_time()
            fn()
            samples[name].append(clock() - start)
            if cpu is not None:
                cpu.setdefault(name, []).append(time.process_time() - start_cpu)
    return samples


def best(samples: dict[str, list[float]]) -> dict[str, float]:
    return {name: min(v) for name, v in samples.items()}


def median(samples: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(v) for name, v in samples.items()}
