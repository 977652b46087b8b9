"""Benchmark: patchlab EfficientNet-Lite0 vs the reference efficientnet_lite_pytorch (same weights, same run)."""

import pytest

from patchlab.bench.models import bench_models


@pytest.mark.benchmark
def test_bench_models():
    r = bench_models("efficientnet_lite0", batch=8, repeats=10, device="cpu")
    for key in ("fwd_bwd", "fwd_bwd_params", "latency"):
        row = r[key]
        print(f"{key:16s} patchlab {row['patchlab_s'] * 1e3:8.1f} ms  reference {row['reference_s'] * 1e3:8.1f} ms"
              f"  ratio {row['speedup']:.2f}x")
    assert r["fwd_bwd_params"]["speedup"] >= 1.4
