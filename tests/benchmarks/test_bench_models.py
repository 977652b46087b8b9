"""Benchmark: patchlab EfficientNet-Lite0 vs the reference efficientnet_lite_pytorch (same weights, same run,
interleaved rounds, best of N). Target (issue #14): forward+backward >= 1.4x the reference."""

import os

import pytest

from patchlab.bench.models import bench_models
from patchlab.bench.targets import Target, check_targets, format_targets


@pytest.mark.benchmark
def test_bench_models():
    rounds = int(os.environ.get("BENCH_ROUNDS", 10))
    r = bench_models("efficientnet_lite0", batch=8, repeats=rounds, device="cpu")
    print(f"\nefficientnet_lite0, batch {r['batch']}, {r['threads']} threads, best (median) of {rounds} interleaved "
          f"rounds, load {os.getloadavg()[0]:.1f}")
    for key in ("fwd_bwd", "fwd_bwd_params", "latency"):
        row = r[key]
        print(f"{key:16s} patchlab {row['patchlab_s'] * 1e3:7.1f} ({row['patchlab_median_s'] * 1e3:7.1f}) ms  "
              f"reference {row['reference_s'] * 1e3:7.1f} ({row['reference_median_s'] * 1e3:7.1f}) ms  "
              f"speed-up {row['speedup']:.2f}x")
    targets = [Target("model fwd+bwd to the input, reference / patchlab", r["fwd_bwd"]["speedup"], ">=", 1.4, "x"),
               Target("model fwd+bwd to the weights, reference / patchlab", r["fwd_bwd_params"]["speedup"], ">=", 1.4,
                      "x")]
    print(format_targets(targets))
    check_targets(targets)
