"""Benchmarks for docs/defenses.md: each test runs one experiment end to end, prints its table and writes it to
docs/results/defenses/<name>.json (read by the app's Defenses page). Hours on 2 CPU cores in total; run one at a
time, e.g.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python -m pytest tests/benchmarks/test_bench_defenses.py -m benchmark -s \\
        -k patchcleanser_certification

Sizes can be lowered for a quick look with DEFENSE_BENCH_SCALE=0.25 (fewer images and samples; the documented
numbers use 1). The fine-tuned model is read from runs/efficientnet_lite0-masked.safetensors and trained there
(minutes on a quiet 2-core machine) when it is missing.

Issue 17's goals are `patchlab.bench.targets.Target` rows: each test prints its table, then its targets, and fails
naming every missed goal (never a lowered one). Tests without a numeric goal in the issue (smoothing curves, live
FPS) only report.
"""

from __future__ import annotations

import os
from pathlib import Path

import math

import pytest

from patchlab.bench.targets import Target, check_targets, format_targets
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


def _judge(targets: list[Target]) -> None:
    print("\n" + format_targets(targets))
    check_targets(targets)


def _noise_points(p1: float, n1: int, p2: float, n2: int) -> float:
    """Half-width, in points, of the 95% band of the difference of two proportions measured at n1 and n2 (pooled
    normal approximation): two measurements closer than this agree within noise."""
    p = (p1 * n1 + p2 * n2) / (n1 + n2)
    return 100 * 1.96 * math.sqrt(max(p * (1 - p), 1e-12) * (1 / n1 + 1 / n2))


# The independent measurement the issue quotes (k = 6, 36 masks of 64 px, grey fill, 40 other ImageNet images)
INDEPENDENT = {"certified": 0.35, "clean": 0.875, "n": 40}


def test_patchcleanser_certification(imagenet_dir, lite0):
    """Off-the-shelf efficientnet_lite0, 2% patch, k = 6 (36 masks of 64 px, 666 passes), held-out images; the
    plain all-pairs computation timed on 8 of them in the same run for the speed-up."""
    from patchlab.defenses.certify import certify_images

    r = certify_images(lite0, imagenet_dir, "heldout", _n(40), 0.02, 6, baseline=_n(8))
    _show("patchcleanser", "PatchCleanser, efficientnet_lite0, 2% patch", report.patchcleanser_rows(r), r,
          "Independent measurement on 40 other images: 35% certified, 87.5% clean, 7.9 s/image on 2 cores.")
    ours, ref = r["certified_accuracy"], INDEPENDENT["certified"]
    _judge([Target("PatchCleanser 2%: certification speed-up per image vs the plain all-pairs computation",
                   r["speedup"], ">=", 3.0, "x", f"{r['seconds_per_image']:.2f} s/image vs "
                   f"{r['baseline']['seconds_per_image']:.2f} (same run, {r['baseline']['images']} images)"),
            Target(f"PatchCleanser 2%: distance of certified from the independent {100 * ref:.0f}% (n = {r['n']} vs "
                   f"{INDEPENDENT['n']})", abs(100 * (ours - ref)), "<=",
                   round(_noise_points(ours, r["n"], ref, INDEPENDENT["n"]), 1), "points",
                   f"ours {100 * ours:.1f}%; bound: 95% band of the difference")])


def test_patchcleanser_finetuned(imagenet_dir, lite0):
    """The mask-robust fine-tuned model against the original on the same held-out images."""
    from patchlab.defenses.certify import certify_images
    from patchlab.defenses.finetune import FinetuneConfig, finetune
    from patchlab.models import load_model

    if not FINETUNED.is_file():
        # the recipe chosen on 60 training-side images kept out (docs/results/defenses-finetune.md)
        finetune(FinetuneConfig(images=str(imagenet_dir), layers="all", loss="distill", masks="mixed", epochs=10,
                                batch_size=32, lr=1e-3), FINETUNED, FINETUNED.with_suffix(".ckpt.pt"))
    tuned = load_model(str(FINETUNED), "cpu", arch="efficientnet_lite0")
    rows, results = [], {}
    for label, net in (("original", lite0), ("fine-tuned", tuned)):
        results[label] = certify_images(net, imagenet_dir, "heldout", _n(40), 0.02, 6)
        rows += report.patchcleanser_rows(results[label], label)
    _show("patchcleanser_finetuned", "PatchCleanser at 2%: original vs mask-robust fine-tuned", rows, results,
          "Goal: >= 50% certified with clean accuracy within 3 points of the original.")
    orig, ft = results["original"], results["fine-tuned"]
    # "clean accuracy within 3 points of the original": fine-tuning may not cost more than 3 points (a gain is fine)
    _judge([Target(f"fine-tuned PatchCleanser 2%: certified (n = {ft['n']})", 100 * ft["certified_accuracy"], ">=",
                   50.0, "%", f"original {100 * orig['certified_accuracy']:.1f}%"),
            Target("fine-tuned - original: clean accuracy, undefended", 100 * (ft["undefended_accuracy"] -
                   orig["undefended_accuracy"]), ">=", -3.0, "points",
                   f"{100 * ft['undefended_accuracy']:.1f}% vs {100 * orig['undefended_accuracy']:.1f}%"),
            Target("fine-tuned - original: clean accuracy under PatchCleanser", 100 * (ft["clean_accuracy"] -
                   orig["clean_accuracy"]), ">=", -3.0, "points",
                   f"{100 * ft['clean_accuracy']:.1f}% vs {100 * orig['clean_accuracy']:.1f}%")])


def test_patch_vs_defenses(imagenet_dir, lite0):
    from patchlab.defenses.patch_eval import evaluate_defenses

    r = evaluate_defenses(PATCH, imagenet_dir, lite0, limit=_n(80))
    _show("patch_vs_defenses", "The shipped toaster patch (print EOT) against each defense", report.patch_rows(r), r,
          "PatchCleanser is sized for each nominal square area; 'patch box covered' is the share of frames whose "
          "rotated, tilted patch fits in that square (the certificate covers no others).")
    # the certificate's definition: a certified image never flips under a patch inside the square it covers
    _judge([Target(f"PatchCleanser {100 * row['area']:g}%: certified images flipped by a covered patch",
                   row["certified_flipped_covered"], "<=", 0, "",
                   f"{row['certified_flipped']} flipped by an uncovered one; covered {100 * row['covered']:.1f}%")
            for row in r["rows"] if row["defense"] == "patchcleanser"])


def test_certificates_hold_on_real_images(imagenet_dir, lite0):
    from patchlab.defenses.data import load_images, shared_split
    from patchlab.defenses.patch_eval import check_certificates

    data = shared_split(imagenet_dir, "heldout", _n(20))
    r = check_certificates(lite0, load_images(data.paths, 224), data.labels, PATCH, 0.02, 6, stride=48)
    table = [{k: r[k] for k in ("n", "certified", "placements", "checked", "violations", "undefended_flips")}]
    _show("certificate_check", "The shipped patch at every grid position on certified images (2%, axis-aligned)",
          table, r)
    _judge([Target("certified images flipped by the shipped patch at a covered grid position", r["violations"],
                   "<=", 0, "", f"{r['checked']} checks on {r['certified']} certified images"),
            Target("certificate checks run", r["checked"], ">=", 1)])


def test_transforms_under_adaptive_attack(imagenet_dir, lite0):
    from patchlab.defenses.adaptive import evaluate_transforms

    r = evaluate_transforms(lite0, imagenet_dir, eps=4 / 255, steps=10, eot=_n(8), limit=_n(32))
    _show("transforms", "Input transformations: non-adaptive vs BPDA(+EOT) PGD, Linf 4/255, 10 steps",
          report.transform_rows(r), r)
    # the adaptive attack (BPDA, + EOT when randomized) is at least as strong as the transferred one
    _judge([Target(f"{row['defense']}: accuracy under BPDA - under transferred PGD", 100 * (row["bpda_accuracy"] -
                   row["transfer_accuracy"]), "<=", 0.0, "points") for row in r["rows"]])


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
    curve = [r["robust_accuracy"] for r in pgd["eps_curve"]]
    trained = next(row for row in pgd["rows"] if row["attack"].startswith("training attack"))
    _judge([Target(f"MNIST eps 0.3: PGD-40 accuracy, PGD-trained CNN (n = {n})", 100 * pgd["pgd40_accuracy"], ">=",
                   80.0, "%", f"strongest {100 * pgd['robust_accuracy']:.1f}%"),
            Target(f"MNIST eps 0.3: PGD-40 accuracy, standard CNN (n = {n})", 100 * std["pgd40_accuracy"], "<=", 5.0,
                   "%"),
            Target("PGD adversarial training time", runs[2][0]["cpu_seconds"] / 60, "<=", 20.0, "CPU-min"),
            # training minimises a lower bound: its own attack leaves more accuracy than the evaluation's attacks
            Target("PGD-trained: accuracy under the training attack - under all attacks", 100 * (trained["accuracy"] -
                   pgd["robust_accuracy"]), ">=", 0.0, "points"),
            # no gradient masking: robust accuracy falls with eps, to under half of its eps-0.1 value at the largest
            Target("eps curve: rises between consecutive eps", sum(b > a for a, b in zip(curve, curve[1:])), "<=", 0),
            Target("eps curve: last / first robust accuracy", curve[-1] / max(curve[0], 1e-9), "<=", 0.5, "x")])


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
    """`patchlab camera --defense none|patchcleanser|lgs|jpeg|median` on the synthetic 640x480 scene of a printed
    sheet with the shipped patch, through the camera command's default backend; PatchCleanser sized for a 10% patch
    with k = 6 (36 masks) and, the cheaper setting the docs offer, k = 3 (9 masks), and at k = 6 on the sheet without
    the patch (where certificates happen). Reports only: the issue sets no
    FPS goal. For timing run it un-niced on a quiet machine, e.g. /tmp/quiet.sh pytest ... -k live_fps."""
    from patchlab.defenses.live import live_fps

    frames, slow = _n(60), _n(8)
    rows = live_fps(lite0, frames=frames, slow_frames=slow, patch=str(PATCH), patch_area=0.1, masks=6)
    # PatchCleanser's cost depends on the scene: a certificate takes all 666 passes, so the sheet without the patch
    # (a unanimous first round) is its slow case
    for label, k, patch in (("patchcleanser (k = 3)", 3, str(PATCH)), ("patchcleanser, sheet without patch", 6, None)):
        row, = live_fps(lite0, defenses=("patchcleanser",), frames=frames, slow_frames=slow, patch=patch,
                        patch_area=0.1, masks=k)
        row["defense"], row["fps_vs_none"] = label, row["fps"] / rows[0]["fps"]
        rows.insert(2 + (k == 6), row)
    _show("live_fps", f"Live pipeline FPS per defense (640x480 synthetic sheet, {rows[0]['backend']}, "
          "efficientnet_lite0)",
          [{"defense": r["defense"], "frames": r["frames"], "FPS": f"{r['fps']:.2f}",
            "x bare pipeline": f"{r['fps_vs_none']:.3f}", "p50 ms": f"{r['p50_ms']:.0f}",
            "p95 ms": f"{r['p95_ms']:.0f}", "passes/frame": f"{r['passes_per_frame']:.0f}",
            "target share": report.pct(r["target_share"]), "certified share": report.pct(r["certified_share"])}
           for r in rows], {"rows": rows})
    assert all(r["fps"] > 0 and r["frames"] >= 2 for r in rows)  # every defense ran the pipeline


def test_patchcleanser_pass_cost(lite0):
    """What one masked pass costs (10% masks, k = 6), the unit of PatchCleanser's live cost: our feature-reuse path
    against the plain masked forward at several batch sizes, and the plain forward through ONNX Runtime (the live
    backend), best of 3 interleaved rounds. Reports only (the levers PatchCleanser could still pull live)."""
    import time

    import numpy as np
    import torch

    from patchlab.capture.inference import load_backend
    from patchlab.defenses.local import MaskedForward
    from patchlab.defenses.masks import mask_set

    masks = mask_set(lite0.input_size, 0.10, 6)
    image = torch.rand((3, lite0.input_size, lite0.input_size), generator=torch.Generator().manual_seed(0))
    pairs = [(i, j) for i in range(len(masks)) for j in range(i + 1, len(masks))][:128]
    engines = {reuse: MaskedForward(lite0, masks, 0.5, reuse) for reuse in (True, False)}
    for engine in engines.values():
        engine.begin(image)
        engine.single(list(range(len(masks))))
    ort = load_backend(lite0, "onnx", threads=torch.get_num_threads())
    x = np.random.default_rng(0).random((64, 3, lite0.input_size, lite0.input_size), dtype=np.float32)

    def masked(reuse: bool, batch: int) -> int:
        for c in range(0, len(pairs), batch):
            engines[reuse].double(pairs[c:c + batch])
        return len(pairs)

    def onnx(batch: int) -> int:
        for c in range(0, len(x), batch):
            ort.session.run(None, {ort.input_name: x[c:c + batch]})
        return len(x)

    cases = {**{f"masked pass, feature reuse, batch {b}": (lambda b=b: masked(True, b)) for b in (16, 64, 128)},
             **{f"masked pass, plain forward, batch {b}": (lambda b=b: masked(False, b)) for b in (16, 64)},
             **{f"plain forward, ONNX Runtime, batch {b}": (lambda b=b: onnx(b)) for b in (1, 16, 64)}}
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(3):
        for name, run in cases.items():
            start = time.perf_counter()
            count = run()
            best[name] = min(best[name], 1000 * (time.perf_counter() - start) / count)
    table = [{"pass": name, "ms per image": f"{ms:.2f}"} for name, ms in best.items()]
    _show("patchcleanser_pass_cost", f"Cost of one masked pass, 10% masks, k = 6 ({torch.get_num_threads()} torch "
          f"threads, ORT {ort.threads})", table, {"ms_per_image": best, "threads": torch.get_num_threads()})
    assert all(math.isfinite(ms) and ms > 0 for ms in best.values())


def test_adaptive_patches(imagenet_dir, lite0):
    """The shipped patch fine-tuned (200 steps, batch 8, print EOT) against each defended model: PatchCleanser with
    EOT over its masks, LGS, JPEG and median with BPDA; shipped and adaptive patches scored at 10% on the same
    held-out frames. The certificate must hold against the adaptive PatchCleanser patch too: pasted axis-aligned at
    every 48 px grid position (and the far edges) of the square the masks cover, it may flip no certified image."""
    from patchlab.defenses.adaptive_patch import ADAPTIVE_DEFENSES, train_adaptive_patch
    from patchlab.defenses.data import load_images, shared_split
    from patchlab.defenses.patch_eval import check_certificates, evaluate_defenses

    n = _n(40)
    shipped = evaluate_defenses(PATCH, imagenet_dir, lite0, areas=(0.10,), defenses=("none", *ADAPTIVE_DEFENSES),
                                limit=n)
    rows = [{"patch": "shipped", **row} for row in report.patch_rows(shipped)]
    results, targets = {"shipped": shipped}, []
    for defense in ADAPTIVE_DEFENSES:
        out = ROOT / "runs" / f"adaptive200-{defense}.png"
        if not out.is_file():
            train_adaptive_patch(defense, imagenet_dir, out, init=PATCH, steps=_n(200), batch=8)
        r = evaluate_defenses(out, imagenet_dir, lite0, areas=(0.10,), defenses=("none", defense), limit=n)
        results[f"adaptive vs {defense}"] = r
        rows += [{"patch": f"adaptive vs {defense}", **row} for row in report.patch_rows(r)]
        if defense == "patchcleanser":
            data = shared_split(imagenet_dir, "heldout", n)
            check = check_certificates(lite0, load_images(data.paths, lite0.input_size), data.labels, out, 0.10, 6,
                                       stride=48)
            results["certificate_check"] = check
            row = next(x for x in r["rows"] if x["defense"] == "patchcleanser")
            targets += [Target("adaptive patch vs PatchCleanser 10%: certified images flipped at a covered grid "
                               "position", check["violations"], "<=", 0, "",
                               f"{check['checked']} checks on {check['certified']} certified images; "
                               f"{check['undefended_flips']} undefended flips"),
                        Target("adaptive patch vs PatchCleanser 10% (print EOT): certified images flipped by a "
                               "covered patch", row["certified_flipped_covered"], "<=", 0, "",
                               f"covered {100 * row['covered']:.1f}% of frames")]
    _show("adaptive_patches", "Adaptive patches (EOT over masks / BPDA) vs the shipped patch, 10% area", rows,
          results)
    _judge(targets)
