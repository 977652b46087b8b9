"""Benchmark: EOT patch optimisation throughput against IBM ART 1.20 AdversarialPatchPyTorch and the bare
forward+backward (`patchlab.bench.patch`, also run by `patchlab bench`; its docstring has the method).

Targets (issue #14): patchlab's `digital` step >= 2x faster than ART's AdversarialPatchPyTorch (reference net), and
within 1.1x of the bare forward+backward (digital) and 1.5x (print).

Run on an idle machine with the OpenMP default (see docs/benchmarks.md): .venv/bin/python -m pytest tests/benchmarks/test_bench_patch.py -m benchmark -s
(BENCH_ROUNDS=5 BENCH_STEPS=8; BENCH_BF16=1 adds the bf16-autocast rows)
"""

from __future__ import annotations

import os

import pytest

from patchlab.bench.targets import check_targets, format_targets


@pytest.mark.benchmark
def test_bench_patch_throughput_vs_art(imagenet_dir, lite0):
    from patchlab.bench.patch import bench_patch

    m = bench_patch(imagenet_dir, steps=int(os.environ.get("BENCH_STEPS", 6)),
                    rounds=max(3, int(os.environ.get("BENCH_ROUNDS", 3))), bf16=os.environ.get("BENCH_BF16") == "1",
                    model=lite0)
    print(f"\nload {os.getloadavg()[0]:.1f}\n{m.table}")
    print(format_targets(m.targets))
    check_targets(m.targets)
