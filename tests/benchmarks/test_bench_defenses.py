"""Benchmarks for docs/defenses.md: each test runs one experiment end to end, prints its table and writes it to
docs/results/defenses/<name>.json (read by the app's Defenses page). Hours on 2 CPU cores in total; run one at a
time, e.g.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python -m pytest tests/benchmarks/test_bench_defenses.py -m benchmark -s \\
        -k patchcleanser_certification

Sizes can be lowered for a quick look with DEFENSE_BENCH_SCALE=0.25 (fewer images and samples; the documented
numbers use 1). The fine-tuned model is read from runs/efficientnet_lite0-masked.safetensors and trained there
(about an hour on a quiet 2-core machine) when it is missing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from patchlab.defenses import report

pytestmark = [pytest.mark.benchmark, pytest.mark.timeout(0)]  # hours on a CPU; the trainings resume
SCALE = float(os.environ.get("DEFENSE_BENCH_SCALE", 1))
ROOT = Path(__file__).resolve().parents[2]
PATCH = ROOT / "printables" / "toaster_efficientnet_lite0.png"
FINETUNED = ROOT / "runs" / "efficientnet_lite0-masked.safetensors"


def _n(n: int) -> int:
    return max(2, int(round(n * SCALE)))


def _show(name: str, title: str, table: list[dict], result: dict, note: str = "") -> None:
    report.save_result(name, title, table, result, note)
    print(f"\n{title}\n{report.markdown(table)}")


def test_patchcleanser_certification(imagenet_dir, lite0):
    """Off-the-shelf efficientnet_lite0, 2% patch, k = 6 (36 masks of 64 px, 666 passes), held-out images; the
    plain all-pairs computation timed on 8 of them in the same run for the speed-up."""
    from patchlab.defenses.certify import certify_images

    r = certify_images(lite0, imagenet_dir, "heldout", _n(40), 0.02, 6, baseline=_n(8))
    _show("patchcleanser", "PatchCleanser, efficientnet_lite0, 2% patch", report.patchcleanser_rows(r), r,
          "Independent measurement on 40 other images: 35% certified, 87.5% clean, 7.9 s/image on 2 cores.")
    assert r["speedup"] >= 3.0
    lo, hi = r["certified_ci95"]
    assert lo <= 0.35 + 0.15 and hi >= 0.35 - 0.15  # agrees with the independent 35% within noise (its n = 40)


def test_patchcleanser_finetuned(imagenet_dir, lite0):
    """The mask-robust fine-tuned model against the original on the same held-out images."""
    from patchlab.defenses.certify import certify_images
    from patchlab.defenses.finetune import FinetuneConfig, finetune
    from patchlab.models import load_model

    if not FINETUNED.is_file():
        finetune(FinetuneConfig(images=str(imagenet_dir), layers="all", loss="distill", masks="pairs", epochs=4),
                 FINETUNED, FINETUNED.with_suffix(".ckpt.pt"))
    tuned = load_model(str(FINETUNED), "cpu", arch="efficientnet_lite0")
    rows, results = [], {}
    for label, net in (("original", lite0), ("fine-tuned", tuned)):
        results[label] = certify_images(net, imagenet_dir, "heldout", _n(40), 0.02, 6)
        rows += report.patchcleanser_rows(results[label], label)
    _show("patchcleanser_finetuned", "PatchCleanser at 2%: original vs mask-robust fine-tuned", rows, results,
          "Goal: >= 50% certified with clean accuracy within 3 points of the original.")


def test_patch_vs_defenses(imagenet_dir, lite0):
    from patchlab.defenses.patch_eval import evaluate_defenses

    r = evaluate_defenses(PATCH, imagenet_dir, lite0, limit=_n(80))
    _show("patch_vs_defenses", "The shipped toaster patch (print EOT) against each defense", report.patch_rows(r), r,
          "PatchCleanser is sized for each nominal square area; 'patch box covered' is the share of frames whose "
          "rotated, tilted patch fits in that square (the certificate covers no others).")
    for row in r["rows"]:
        if row["defense"] == "patchcleanser":
            assert row["certified_flipped_covered"] == 0  # a certified image never flips under a covered patch


def test_certificates_hold_on_real_images(imagenet_dir, lite0):
    from patchlab.defenses.data import load_images, shared_split
    from patchlab.defenses.patch_eval import check_certificates

    data = shared_split(imagenet_dir, "heldout", _n(20))
    r = check_certificates(lite0, load_images(data.paths, 224), data.labels, PATCH, 0.02, 6, stride=48)
    table = [{k: r[k] for k in ("n", "certified", "placements", "checked", "violations", "undefended_flips")}]
    _show("certificate_check", "The shipped patch at every grid position on certified images (2%, axis-aligned)",
          table, r)
    assert r["violations"] == 0 and r["checked"] > 0


def test_transforms_under_adaptive_attack(imagenet_dir, lite0):
    from patchlab.defenses.adaptive import evaluate_transforms

    r = evaluate_transforms(lite0, imagenet_dir, eps=4 / 255, steps=10, eot=_n(8), limit=_n(32))
    _show("transforms", "Input transformations: non-adaptive vs BPDA(+EOT) PGD, Linf 4/255, 10 steps",
          report.transform_rows(r), r)
    by = {row["defense"]: row for row in r["rows"]}
    assert all(by[d]["bpda_accuracy"] <= by[d]["transfer_accuracy"] for d in by)


def test_adversarial_training(mnist_dir):
    """The default recipe (`AdvTrainConfig()`: strided CNN 32/64/256, PGD-8 with a random start, eps ramped over
    10 epochs, random 2 px shifts, Adam with cosine decay) against a standard and an FGSM-RS model of the same
    shape; every model scored on the same 1000 test-side images, the PGD one also across eps."""
    from patchlab.defenses.adversarial import (AdvTrainConfig, eps_curve, evaluate_robustness, mnist_split,
                                               train_adversarial)
    from patchlab.models.digits import load_digits_model

    runs = []
    configs = (AdvTrainConfig(method="standard", epochs=10, ramp_epochs=0),
               AdvTrainConfig(method="fgsm_rs"),
               AdvTrainConfig(method="pgd"))
    n = _n(1000)
    for cfg in configs:
        out = ROOT / "runs" / f"mnist-{cfg.method}.safetensors"
        train = train_adversarial(cfg, mnist_dir, out, out.with_suffix(".ckpt.pt"))
        test = mnist_split(mnist_dir, cfg)["test"]
        net = load_digits_model(out).requires_grad_(False)
        ev = evaluate_robustness(net, test.images[:n], test.labels[:n], 0.3, restarts=10, train_cfg=cfg,
                                 long_restarts=2)
        if cfg.method == "pgd":
            ev["eps_curve"] = eps_curve(net, test.images[:n], test.labels[:n], (0.1, 0.2, 0.3, 0.4), restarts=2)
        runs.append((train, ev))
    _show("adversarial_training", "MNIST CNN, eps = 0.3: accuracy under attack, training time",
          report.adversarial_rows(runs), {"runs": [{"train": t, "eval": e} for t, e in runs]})
    std, pgd = runs[0][1], runs[2][1]
    assert std["pgd40_accuracy"] <= 0.05 and pgd["pgd40_accuracy"] >= 0.80
    assert runs[2][0]["cpu_seconds"] <= 20 * 60
    curve = [r["robust_accuracy"] for r in pgd["eps_curve"]]
    assert curve == sorted(curve, reverse=True) and curve[-1] < 0.5 * curve[0]  # no masking: falls with eps


def test_smoothing_curves(mnist_dir, imagenet_dir, lite0):
    from patchlab.data import load_mnist, split_digits
    from patchlab.defenses.data import load_images, shared_split
    from patchlab.defenses.smoothing import certified_curve, train_noisy_digits
    from patchlab.models.digits import load_digits_model

    test = split_digits(load_mnist(mnist_dir), {"train": 8000, "test": -1}, seed=0)["test"]
    curves = []
    for sigma in (0.25, 0.5, 1.0):
        out = ROOT / "runs" / f"mnist-noise-{sigma}.safetensors"
        train_noisy_digits(mnist_dir, sigma, out, epochs=10, checkpoint=out.with_suffix(".ckpt.pt"))
        curves.append(certified_curve(load_digits_model(out), test.images[:_n(500)], test.labels[:_n(500)], sigma,
                                      n0=100, n=_n(1000), alpha=0.001))
    r = {"model": "digits-cnn (noise-trained per sigma)", "n": curves[0]["n"], "samples": curves[0]["samples"],
         "alpha": 0.001, "curves": curves}
    _show("smoothing_mnist", "Randomized smoothing on MNIST: certified accuracy vs l2 radius",
          report.smoothing_rows(r), r)
    data = shared_split(imagenet_dir, "heldout", _n(8))
    demo = certified_curve(lite0, load_images(data.paths, 224), data.labels, 0.25, n0=10, n=_n(100), alpha=0.001,
                           batch_size=50)
    r2 = {"model": "efficientnet_lite0 (not noise-trained)", "n": demo["n"], "samples": demo["samples"],
          "alpha": 0.001, "curves": [demo]}
    _show("smoothing_imagenet_demo", "Randomized smoothing on ImageNet (demo, small N)", report.smoothing_rows(r2), r2)


def test_live_fps_per_defense(lite0):
    from patchlab.defenses.live import live_fps

    rows = live_fps(lite0, frames=_n(20), patch=str(PATCH), patch_area=0.1, masks=6)
    _show("live_fps", "Live pipeline FPS per defense (640x480 synthetic sheet, eager, efficientnet_lite0)",
          [{"defense": r["defense"], "FPS": f"{r['fps']:.2f}", "p50 ms": f"{r['p50_ms']:.0f}",
            "p95 ms": f"{r['p95_ms']:.0f}", "target share": report.pct(r["target_share"]),
            "certified share": report.pct(r["certified_share"])} for r in rows], {"rows": rows})


def test_adaptive_patches(imagenet_dir, lite0):
    from patchlab.defenses.adaptive_patch import train_adaptive_patch
    from patchlab.defenses.patch_eval import evaluate_defenses

    rows, results = [], {}
    for defense in ("lgs", "patchcleanser"):
        out = ROOT / "runs" / f"adaptive-{defense}.png"
        if not out.is_file():
            train_adaptive_patch(defense, imagenet_dir, out, init=PATCH, steps=_n(200), batch=8)
        for name, patch in (("shipped", PATCH), ("adaptive", out)):
            r = evaluate_defenses(patch, imagenet_dir, lite0, areas=(0.10,), defenses=("none", defense),
                                  limit=_n(80))
            results[f"{name} vs {defense}"] = r
            for row in report.patch_rows(r):
                rows.append({"patch": name, **row})
    _show("adaptive_patches", "Adaptive patches (EOT over masks / BPDA) vs the shipped patch, 10% area", rows,
          results)
