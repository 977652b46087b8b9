"""Benchmark: EOT patch optimisation throughput (samples/s, forward+backward through transforms and model) against
IBM ART 1.20 AdversarialPatchPyTorch. Same efficientnet_lite0 weights, batch 8, 224 px square patch, CPU, one run.
ART runs on the reference `efficientnet_lite_pytorch` net (what an ART user loads) and, to separate the library from
the model, on patchlab's own model (timm, static padding, BatchNorm folded, ReLU6 fused, channels_last). Each
contender's per-step cost is (T(1 + N steps) - T(1 step)) / N, in wall and CPU seconds; rounds are interleaved and
the median is kept, because the machine is shared.

Run: OMP_WAIT_POLICY=PASSIVE .venv/bin/python -m pytest tests/benchmarks/test_bench_patch.py -m benchmark -s
(BENCH_ROUNDS=5 BENCH_STEPS=8 for a steadier median on a shared machine)
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np
import pytest
import torch

BATCH, PATCH = 8, 224
STEPS = int(os.environ.get("BENCH_STEPS", 6))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 3))


def _clock(fn):
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def _per_step(run) -> tuple[float, float]:
    w1, c1 = _clock(lambda: run(1))
    wn, cn = _clock(lambda: run(1 + STEPS))
    return max(wn - w1, 1e-9) / STEPS, max(cn - c1, 1e-9) / STEPS


@pytest.mark.benchmark
def test_bench_patch_throughput_vs_art(imagenet_dir, lite0, tmp_path):
    from art.attacks.evasion import AdversarialPatchPyTorch
    from art.estimators.classification import PyTorchClassifier

    from patchlab.models.classify import load_batch
    from patchlab.patch import PatchConfig, train_patch

    files = sorted(imagenet_dir.iterdir())[::50][:BATCH]
    folder = tmp_path / "scenes"
    folder.mkdir()
    for f in files:
        (folder / f.name).symlink_to(f)
    x = load_batch(files, 224).numpy().astype(np.float32)
    y = np.zeros((BATCH, 1000), dtype=np.float32)
    y[:, 859] = 1

    def bare(net):
        def run(n):
            for _ in range(n):
                xb = torch.from_numpy(x).requires_grad_(True)
                net(xb).log_softmax(-1)[:, 859].sum().backward()
        return run

    from patchlab.models.efficientnet_lite import LiteScale, reference_model

    reference = torch.nn.Sequential(LiteScale(), reference_model("efficientnet_lite0")).eval().requires_grad_(False)

    def art(net):
        est = PyTorchClassifier(net, loss=torch.nn.CrossEntropyLoss(), input_shape=(3, 224, 224), nb_classes=1000,
                                clip_values=(0.0, 1.0), device_type="cpu")

        def run(n):  # square patch, rotation +-22.5, scale around 10% area, Adam
            attack = AdversarialPatchPyTorch(est, rotation_max=22.5, scale_min=0.25, scale_max=0.4, learning_rate=0.03,
                                             max_iter=n, batch_size=BATCH, patch_shape=(3, PATCH, PATCH),
                                             patch_type="square", optimizer="Adam", targeted=True, verbose=False)
            attack.generate(x=x, y=y)
        return run

    def ours(preset, bf16):
        def run(n):
            cfg = PatchConfig(images=str(folder), models=["efficientnet_lite0"], patch_size=PATCH, batch=BATCH,
                              steps=n, holdout=0.0, eot=preset, bf16=bf16, out=None)
            train_patch(cfg, models=[lite0])
        return run

    contenders = {"bare fwd+bwd, reference net": bare(reference), "bare fwd+bwd, patchlab net": bare(lite0),
                  "ART AdversarialPatchPyTorch": art(reference),
                  "ART on patchlab's model": art(lite0),
                  "patchlab digital fp32": ours("digital", False), "patchlab digital bf16": ours("digital", True),
                  "patchlab print fp32": ours("print", False),
                  "patchlab print bf16": ours("print", True)}
    for run in contenders.values():
        run(1)  # warm-up
    samples = {name: [] for name in contenders}
    for _ in range(ROUNDS):
        for name, run in contenders.items():
            samples[name].append(_per_step(run))
    med = {name: (statistics.median(s[0] for s in v), statistics.median(s[1] for s in v)) for name, v in samples.items()}
    art_w, art_c = med["ART AdversarialPatchPyTorch"]
    print(f"\nthreads={torch.get_num_threads()} batch={BATCH} patch={PATCH}px steps={STEPS} rounds={ROUNDS} (median)")
    print(f"{'':28s} {'wall s/step':>11s} {'samples/s':>9s} {'CPU s/step':>10s} {'vs ART (wall)':>13s} {'vs ART (CPU)':>12s}")
    for name, (w, c) in med.items():
        print(f"{name:28s} {w:11.3f} {BATCH / w:9.1f} {c:10.3f} {art_w / w:12.2f}x {art_c / c:11.2f}x")
    assert all(w > 0 for w, _ in med.values())
