"""Benchmark: live pipeline (640x480 BGR -> preprocess -> classify -> overlay, Lite0 @ 224) vs a naive pipeline
(reference efficientnet_lite_pytorch eager + PIL preprocessing) and the physical limit (the bare inference call on a
ready input), same frames, same run, interleaved rounds; targets judged on each pipeline's best round.

Targets (issue #14): >= 60 FPS, p95 <= 25 ms, >= 3x the naive pipeline, within 1.2x of the bare inference call.

    .venv/bin/python -m pytest tests/benchmarks/test_bench_camera.py -m benchmark -s
    CAMERA_BENCH_FRAMES=600 CAMERA_BENCH_ROUNDS=5 CAMERA_BENCH_THREADS=2 ...   (defaults 300, 5 and 1: the live
    default on 2 cores leaves the other core to capture, decoding and the UI)
"""

import json
import os

import pytest

from patchlab.bench.targets import Target, check_targets, format_targets
from patchlab.bench.camera import BARE, NAIVE, bench_camera, format_table


@pytest.mark.benchmark
def test_bench_camera(artifacts_dir):
    frames = int(os.environ.get("CAMERA_BENCH_FRAMES", 300))
    rounds = max(3, int(os.environ.get("CAMERA_BENCH_ROUNDS", 5)))
    threads = int(os.environ.get("CAMERA_BENCH_THREADS", 1))
    r = bench_camera("efficientnet_lite0", frames=frames, rounds=rounds, threads=threads)
    print()
    print(f"{r['frame']} frames, {r['threads']} threads, {rounds} interleaved rounds, torch {r['torch']}, load "
          f"{os.getloadavg()[0]:.1f}; backends {r['backends']}")
    print(format_table(r))
    name = "patchlab onnx" if "patchlab onnx" in r["pipelines"] else "patchlab eager"
    best = r["pipelines"][name]["best"]
    bare = r["pipelines"][BARE]["best"]
    naive = r["pipelines"][NAIVE]["best"]
    (artifacts_dir / "bench_camera.json").write_text(json.dumps(r, indent=2))
    targets = [Target(f"camera ({name}): FPS, best round", best["fps"], ">=", 60.0, "FPS"),
               Target(f"camera ({name}): p95 latency, best round", best["p95_ms"], "<=", 25.0, "ms"),
               Target(f"camera ({name}) speed-up vs naive (mean latency)", best["speedup_vs_naive"], ">=", 3.0, "x",
                      f"naive {naive['fps']:.1f} FPS"),
               Target(f"camera ({name}) / bare inference call (mean latency)", best["mean_ms"] / bare["mean_ms"], "<=",
                      1.2, "x", f"bare call {bare['mean_ms']:.2f} ms, pipeline {best['mean_ms']:.2f} ms")]
    print(format_targets(targets))
    check_targets(targets)
