"""Attack speed, side by side in one run, with the physical limit beside the competitors.

PGD-Linf (batch 8, 224 px, CPU): time per step of patchlab, torchattacks 3.5 (on the reference
efficientnet_lite_pytorch net and on patchlab's own net) and ART 1.20 ProjectedGradientDescent (PyTorchClassifier),
against the bare forward+backward of the same batch through patchlab's net (no attack can step faster than that).
A step costs (best T(1 + STEPS steps) - best T(1 step)) / STEPS, so the set-up and the one-off final forward that
patchlab spends on reporting success, predictions and norms are not counted as steps (the whole 10-step call is
printed beside it). All contenders alternate in every round; best of ROUNDS >= 3.

C&W-L2: time for patchlab's CW to reach the success rate torchattacks' CW(c=1, steps=50) reaches, best of ROUNDS.

    .venv/bin/python -m pytest -m benchmark -s tests/benchmarks/test_bench_attacks.py
    BENCH_STEPS=5 BENCH_ROUNDS=5 BENCH_CW_BATCH=8 BENCH_CW_FULL=1 ...
"""

from __future__ import annotations

import os
import statistics
import time

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from patchlab.bench.targets import Target, check_targets, format_targets
from patchlab.bench.timing import interleaved

pytestmark = pytest.mark.benchmark

BATCH, EPS, ALPHA = 8, 4 / 255, 1 / 255
STEPS = int(os.environ.get("BENCH_STEPS", 5))
ROUNDS = max(3, int(os.environ.get("BENCH_ROUNDS", 5)))


class LiteInput(nn.Module):
    """The reference net behind the same [0, 1] input contract: (x*255 - 127) / 128 first."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net.eval()

    def forward(self, x):
        return self.net(x * (255.0 / 128.0) - (127.0 / 128.0))


@pytest.fixture(scope="module")
def setup(imagenet_dir):
    from patchlab.data import labelled_folder
    from patchlab.models import load_model, reference_model
    from patchlab.models.classify import load_batch

    model = load_model("efficientnet_lite0", "cpu")
    ref = reference_model("efficientnet_lite0").eval().requires_grad_(False)
    items = labelled_folder(imagenet_dir)[::7][:BATCH]
    x = load_batch([it.path for it in items], 224)
    y = torch.tensor([it.label for it in items])
    return model, ref, x, y


def test_pgd_step_time(setup):
    import numpy as np
    import torchattacks
    from art.attacks.evasion import ProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    from patchlab.attacks import PGD

    model, ref, x, y = setup
    ref_wrapped = LiteInput(ref)
    art_clf = PyTorchClassifier(ref, loss=nn.CrossEntropyLoss(), input_shape=(3, 224, 224), nb_classes=1000,
                                clip_values=(0.0, 1.0), preprocessing=(127 / 255, 128 / 255), device_type="cpu")
    xn, yn = x.numpy(), y.numpy()

    def bare(n):  # the physical limit: n forward+backward passes of the batch to the input, nothing else
        for _ in range(n):
            xi = x.clone().requires_grad_(True)
            torch.autograd.grad(F.cross_entropy(model(xi), y), xi)

    def ours(n):
        PGD(model, eps=EPS, alpha=ALPHA, steps=n, random_start=False)(x, y)

    def ta(net):
        return lambda n: torchattacks.PGD(net, eps=EPS, alpha=ALPHA, steps=n, random_start=False)(x, y)

    def art(n):
        ProjectedGradientDescent(art_clf, norm=np.inf, eps=EPS, eps_step=ALPHA, max_iter=n, num_random_init=0,
                                 batch_size=BATCH, verbose=False).generate(xn, yn)

    runs = {"bare fwd+bwd (patchlab lite0)": bare, "torchattacks PGD (reference lite0)": ta(ref_wrapped),
            "ART PGD (reference lite0)": art, "torchattacks PGD (patchlab lite0)": ta(model),
            "patchlab PGD (patchlab lite0)": ours}
    contenders = {}
    for name, run in runs.items():
        contenders[f"{name}|1"] = lambda run=run: run(1)
        contenders[f"{name}|n"] = lambda run=run: run(1 + STEPS)
    contenders["patchlab PGD, 10-step call|call"] = lambda: ours(10)
    contenders["torchattacks PGD (patchlab lite0), 10-step call|call"] = lambda: ta(model)(10)
    cpu: dict = {}
    samples = interleaved(contenders, rounds=ROUNDS, cpu=cpu)
    low = {k: min(v) for k, v in samples.items()}
    step = {name: (low[f"{name}|n"] - low[f"{name}|1"]) / STEPS for name in runs}
    cpu_step = {name: (min(cpu[f"{name}|n"]) - min(cpu[f"{name}|1"])) / STEPS for name in runs}
    step_med = {name: (statistics.median(samples[f"{name}|n"]) - statistics.median(samples[f"{name}|1"])) / STEPS
                for name in runs}
    ours_s = step["patchlab PGD (patchlab lite0)"]
    print(f"\nPGD-Linf time per step, batch {BATCH}, 224 px, CPU ({torch.get_num_threads()} threads, torch "
          f"{torch.__version__}), from the best of {ROUNDS} interleaved rounds of 1 and {1 + STEPS} steps, load "
          f"{os.getloadavg()[0]:.1f}")
    print(f"{'':40s} {'best ms/step':>12s} {'median':>8s} {'this / patchlab':>16s} {'CPU ms/step':>12s} "
          f"{'CPU: this / patchlab':>21s}")
    ours_c = cpu_step["patchlab PGD (patchlab lite0)"]
    for name in runs:
        print(f"{name:40s} {step[name] * 1e3:12.1f} {step_med[name] * 1e3:8.1f} {step[name] / ours_s:16.2f} "
              f"{cpu_step[name] * 1e3:12.1f} {cpu_step[name] / ours_c:21.2f}")
    for key in ("patchlab PGD, 10-step call", "torchattacks PGD (patchlab lite0), 10-step call"):
        print(f"{key:40s} {low[key + '|call'] * 1e3:12.1f} ms per call (best), "
              f"{statistics.median(samples[key + '|call']) * 1e3:.1f} median")
    def cpu_ratio(a: str, b: str) -> str:
        return f"CPU time: {cpu_step[a] / cpu_step[b]:.2f}x"

    ours_n, ta_ref, ta_ours = "patchlab PGD (patchlab lite0)", "torchattacks PGD (reference lite0)", \
        "torchattacks PGD (patchlab lite0)"
    bare_n, art_n = "bare fwd+bwd (patchlab lite0)", "ART PGD (reference lite0)"
    targets = [
        Target("PGD step, patchlab / torchattacks (reference net)", ours_s / step[ta_ref], "<=", 0.7, "x",
               cpu_ratio(ours_n, ta_ref)),
        Target("PGD step, ART / patchlab", step[art_n] / ours_s, ">=", 2.0, "x", cpu_ratio(art_n, ours_n)),
        Target("PGD step, patchlab / bare fwd+bwd (physical limit)", ours_s / step[bare_n], "<=", 1.15, "x",
               cpu_ratio(ours_n, bare_n)),
        Target("PGD step, patchlab / torchattacks on the same patchlab net", ours_s / step[ta_ours], "<=", 1.0, "x",
               f"{cpu_ratio(ours_n, ta_ours)}; torchattacks / bare fwd+bwd = {step[ta_ours] / step[bare_n]:.2f}x"),
    ]
    print(format_targets(targets))
    check_targets(targets)


def test_cw_time_to_torchattacks_success(setup):
    import torchattacks

    from patchlab.attacks import CW

    model, ref, x, y = setup
    n = int(os.environ.get("BENCH_CW_BATCH", BATCH))
    x, y = x[:n], y[:n]
    ref_wrapped = LiteInput(ref)

    class Reached(Exception):
        pass

    ta_out: dict = {}
    ours_out: dict = {"t": [], "step": []}

    def run_ta():
        adv = torchattacks.CW(ref_wrapped, c=1, kappa=0, steps=50, lr=0.01)(x, y)
        with torch.no_grad():
            ok = ref_wrapped(adv).argmax(1) != y
        ta_out["rate"] = float(ok.float().mean())
        ta_out["l2"] = float((adv - x).flatten(1).norm(dim=1)[ok].mean()) if ok.any() else float("nan")

    def run_ours():
        start = time.perf_counter()

        def progress(step, total, metrics):
            if metrics.get("success", 0) >= ta_out["rate"]:
                ours_out["t"].append(time.perf_counter() - start)
                ours_out["step"].append(step)
                raise Reached

        try:
            CW(model, progress=progress)(x, y)
        except Reached:
            pass

    run_ta()  # torchattacks first: its success rate is the goal patchlab has to reach
    samples = interleaved({"torchattacks": run_ta, "patchlab": run_ours}, rounds=max(3, ROUNDS - 2), warmup=0)
    ta_time = min(samples["torchattacks"])
    reached = len(ours_out["t"]) == len(samples["patchlab"])
    ours_time = min(ours_out["t"]) if reached else float("nan")
    line = ""
    if os.environ.get("BENCH_CW_FULL") == "1":  # the full default run (5 x 50 steps) is long on a CPU
        start = time.perf_counter()
        full = CW(model)(x, y)
        line = (f"\nfull default patchlab run: success {full.success_rate:.0%}, mean L2 "
                f"{float(full.l2[full.success].mean()):.3f}, {time.perf_counter() - start:.1f}s")
    print(f"\nC&W-L2 on {n} images, CPU, best of {len(samples['patchlab'])} interleaved rounds: torchattacks "
          f"CW(c=1, steps=50) on the reference model: success {ta_out['rate']:.0%}, mean L2 {ta_out['l2']:.3f}, "
          f"{ta_time:.1f}s; patchlab CW (defaults) reached {ta_out['rate']:.0%} after {max(ours_out['step'] or [0])} "
          f"gradient steps in {ours_time:.1f}s{line}")
    targets = [Target("C&W time to torchattacks' success rate, torchattacks / patchlab", ta_time / ours_time, ">=",
                      1.0, "x", f"success {ta_out['rate']:.0%} on {n} images; reached in every round: {reached}")]
    print(format_targets(targets))
    check_targets(targets)
