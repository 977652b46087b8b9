"""Benchmark: patchlab EfficientNet-Lite0 vs the reference efficientnet_lite_pytorch (same weights, same run,
interleaved rounds, best of N): `patchlab.bench.models.run_models_benchmark`, also run by `patchlab bench`.
Target (issue #14): forward+backward >= 1.4x the reference."""

import os

import pytest

from patchlab.bench.targets import check_targets, format_targets


@pytest.mark.benchmark
def test_bench_models():
    from patchlab.bench.models import run_models_benchmark

    m = run_models_benchmark(False, rounds=int(os.environ.get("BENCH_ROUNDS", 10)))
    print(f"\nload {os.getloadavg()[0]:.1f}\n{m.table}")
    print(format_targets(m.targets))
    check_targets(m.targets)
