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


def step_intervals(model, contenders: dict[str, Callable[[int], object]], steps: int, rounds: int = 3,
                   clock: Callable[[], float] = time.perf_counter) -> dict[str, list[float]]:
    """Seconds per step of loops that call `model` once per step, for every contender, measured the same way: the
    time between successive forward calls of the same model object (a forward pre-hook), so each call's set-up and
    any final reporting pass are left out and every step is one sample. Each contender runs `steps` steps per
    round; the order reverses every other round so that drifts in machine speed hit all alike. A contender that
    calls the model fewer than `steps` times in a call is refused (its steps would be mis-timed)."""
    stamps: list[float] = []
    handle = model.register_forward_pre_hook(lambda module, args: stamps.append(clock()))
    try:
        for fn in contenders.values():  # warm-up
            fn(2)
        samples: dict[str, list[float]] = {name: [] for name in contenders}
        items = list(contenders.items())
        for r in range(rounds):
            for name, fn in items if r % 2 == 0 else items[::-1]:
                stamps.clear()
                fn(steps)
                if len(stamps) < steps:
                    raise RuntimeError(f"{name}: {len(stamps)} model calls for {steps} steps")
                samples[name] += [b - a for a, b in zip(stamps[:steps - 1], stamps[1:steps])]
    finally:
        handle.remove()
    return samples
