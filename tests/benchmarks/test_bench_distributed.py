"""Benchmark: weak scaling of data-parallel patch training (patchlab.bench.distributed), 1 vs 2 gloo processes on
this machine at a fixed per-rank batch of 4 (one thread each), 256 px patch, print preset; plus, for context, one
process with two threads at the 2-process global batch (8): the same cores used by intra-op threads instead of ranks.

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

from patchlab.bench.targets import Target, check_targets, format_targets

ROUNDS = int(os.environ.get("BENCH_ROUNDS", 2))
STEPS = int(os.environ.get("BENCH_STEPS", 5))
IDLE_LOAD = 1.0


@pytest.mark.benchmark
def test_bench_weak_scaling(imagenet_dir, tmp_path):
    from patchlab.bench.distributed import ScalingRun, format_scaling, weak_scaling

    folder = tmp_path / "scenes"
    folder.mkdir()
    for f in sorted(imagenet_dir.iterdir())[::20][:32]:
        (folder / f.name).symlink_to(f)
    load_before = os.getloadavg()[0]
    result = weak_scaling(folder, [ScalingRun(1), ScalingRun(2), ScalingRun(1, threads=2, per_rank_batch=8)],
                          steps=STEPS, rounds=ROUNDS)
    print("\n" + format_scaling(result))
    one, two = result["rows"][0], result["rows"][1]
    load = max(load_before, result["load_average"])
    idle = load < IDLE_LOAD
    targets = [Target("distributed: communication share of a 2-process step", two["comm_share"] * 100, "<=", 5.0,
                      "%", f"all-reduce {two['allreduce_s'] * 1e3:.1f} ms of a {two['wall_s']:.2f} s step"),
               Target("distributed: weak-scaling efficiency in CPU time, 2 vs 1 process", two["cpu_efficiency"], ">=",
                      0.8, "x", f"CPU s/step per rank {one['cpu_s']:.3f} -> {two['cpu_s']:.3f}"),
               Target("distributed: weak-scaling efficiency, 2 vs 1 process", two["efficiency"], ">=", 0.8, "x",
                      f"{one['steps_per_s']:.3f} -> {two['steps_per_s']:.3f} steps/s; CPU s/step "
                      f"{one['cpu_s']:.2f} -> {two['cpu_s']:.2f}" +
                      ("" if idle else f"; NOT ASSERTED: load average {load:.1f} on {result['cpus']} CPUs"))]
    print(format_targets(targets))
    check_targets(targets if idle else targets[:2])
