"""Benchmark: EOT patch optimisation throughput (samples/s, forward+backward through transforms and model) against
IBM ART 1.20 AdversarialPatchPyTorch. Same efficientnet_lite0 weights, batch 8, 224 px square patch, CPU, one run.
ART runs on the reference `efficientnet_lite_pytorch` net (what an ART user loads) and, to separate the library from
the model, on patchlab's own model (timm, static padding, BatchNorm folded, ReLU6 fused, channels_last). Each
contender's per-step cost is (best T(1 + N steps) - best T(1 step)) / N, in wall and CPU seconds, over ROUNDS >= 3
interleaved rounds (every contender runs in every round, so load from other processes hits all alike). The physical
limit is printed beside them: a bare forward+backward of the same batch through the same net.

Targets (issue #14): patchlab's `digital` step >= 2x faster than ART's AdversarialPatchPyTorch (reference net), and
within 1.1x of the bare forward+backward (digital) and 1.5x (print).

Run: OMP_WAIT_POLICY=PASSIVE .venv/bin/python -m pytest tests/benchmarks/test_bench_patch.py -m benchmark -s
(BENCH_ROUNDS=5 BENCH_STEPS=8; BENCH_BF16=1 adds the bf16-autocast rows)
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from patchlab.bench.targets import Target, check_targets, format_targets
from patchlab.bench.timing import interleaved

BATCH, PATCH = 8, 224
STEPS = int(os.environ.get("BENCH_STEPS", 6))
ROUNDS = max(3, int(os.environ.get("BENCH_ROUNDS", 3)))


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
                  "patchlab digital fp32": ours("digital", False), "patchlab print fp32": ours("print", False)}
    if os.environ.get("BENCH_BF16") == "1":
        contenders.update({"patchlab digital bf16": ours("digital", True), "patchlab print bf16": ours("print", True)})
    timed = {}
    for name, run in contenders.items():
        timed[(name, 1)] = lambda run=run: run(1)
        timed[(name, 1 + STEPS)] = lambda run=run: run(1 + STEPS)
    cpu: dict = {}
    wall = interleaved(timed, rounds=ROUNDS, cpu=cpu)
    step = {name: (min(wall[(name, 1 + STEPS)]) - min(wall[(name, 1)])) / STEPS for name in contenders}
    cpu_step = {name: (min(cpu[(name, 1 + STEPS)]) - min(cpu[(name, 1)])) / STEPS for name in contenders}
    art_w = step["ART AdversarialPatchPyTorch"]
    bare_w = step["bare fwd+bwd, patchlab net"]
    print(f"\nthreads={torch.get_num_threads()} batch={BATCH} patch={PATCH}px steps={STEPS}: per step from the best of "
          f"{ROUNDS} interleaved rounds, load {os.getloadavg()[0]:.1f}")
    print(f"{'':28s} {'wall s/step':>11s} {'samples/s':>9s} {'vs ART':>7s} {'/ bare patchlab fwd+bwd':>24s} "
          f"{'CPU s/step':>10s} {'CPU: vs ART':>11s} {'/ bare':>7s}")
    art_c, bare_c = cpu_step["ART AdversarialPatchPyTorch"], cpu_step["bare fwd+bwd, patchlab net"]
    for name, w in step.items():
        c = cpu_step[name]
        print(f"{name:28s} {w:11.3f} {BATCH / w:9.1f} {art_w / w:6.2f}x {w / bare_w:23.2f}x {c:10.3f} "
              f"{art_c / c:10.2f}x {c / bare_c:6.2f}x")
    digital, printed = step["patchlab digital fp32"], step["patchlab print fp32"]
    cpu_note = lambda name, ref: f"CPU time: {cpu_step[name] / cpu_step[ref]:.2f}x"  # noqa: E731
    targets = [Target("EOT step, ART / patchlab digital", art_w / digital, ">=", 2.0, "x",
                      f"ART / its own bare fwd+bwd = {art_w / step['bare fwd+bwd, reference net']:.2f}x; CPU time: "
                      f"{art_c / cpu_step['patchlab digital fp32']:.2f}x"),
               Target("EOT step, patchlab digital / bare fwd+bwd (physical limit)", digital / bare_w, "<=", 1.1, "x",
                      cpu_note("patchlab digital fp32", "bare fwd+bwd, patchlab net")),
               Target("EOT step, patchlab print / bare fwd+bwd (physical limit)", printed / bare_w, "<=", 1.5, "x",
                      cpu_note("patchlab print fp32", "bare fwd+bwd, patchlab net"))]
    print(format_targets(targets))
    check_targets(targets)
