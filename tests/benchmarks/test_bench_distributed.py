"""Benchmark: weak scaling of data-parallel patch training (patchlab.bench.distributed, also run by `patchlab
bench`), 1 vs 2 gloo processes on this machine at a fixed per-rank batch of 4 (one thread each), 256 px patch, print
preset; plus, for context, one process with two threads at the 2-process global batch (8): the same cores used by
intra-op threads instead of ranks.

Targets (issue #20):
- communication share of a 2-process step (the all-reduce of the patch gradient alone / step wall time) <= 5%:
  asserted always. It is measurable on a loaded machine: the transfer is timed right after a barrier, so waiting
  for a slower rank is not counted, and load slows the denominator rather than the loopback copy.
- weak-scaling efficiency in CPU time (a rank's CPU seconds per step, 1 process / 2 processes) >= 0.8: asserted
  always. CPU time does not depend on the scheduler's share of the cores, so load from other processes hardly moves
  it; what it shows is the ranks' contention for memory bandwidth and caches and any work a rank repeats.
- weak-scaling efficiency in wall time (steps/s with 2 processes / with 1) >= 0.8: asserted only on an idle machine
  (1-minute load average < 1.0): with other work on the 2 cores, 2 ranks get less than 2 cores and the ratio
  measures the load, not the code. The row is printed either way, marked when not asserted.

Run: OMP_WAIT_POLICY=PASSIVE .venv/bin/python -m pytest tests/benchmarks/test_bench_distributed.py -m benchmark -s
(BENCH_ROUNDS=2 BENCH_STEPS=5)
"""

from __future__ import annotations

import os

import pytest

from patchlab.bench.targets import check_targets, format_targets


@pytest.mark.benchmark
def test_bench_weak_scaling(imagenet_dir):
    from patchlab.bench.distributed import run_distributed_benchmark

    m = run_distributed_benchmark(False, imagenet_dir, steps=int(os.environ.get("BENCH_STEPS", 5)),
                                  rounds=int(os.environ.get("BENCH_ROUNDS", 2)), with_threads=True)
    print("\n" + m.table)
    print(format_targets(m.targets))
    check_targets(m.targets)
