"""Attack speed, side by side in one run, with the physical limit beside the competitors.

PGD-Linf (batch 8, 224 px, CPU): time per step of patchlab, torchattacks 3.5 (on the reference
efficientnet_lite_pytorch net and on patchlab's own net) and ART 1.20 ProjectedGradientDescent (PyTorchClassifier),
against the bare forward+backward of the same batch through patchlab's net (no attack can step faster than that).
A step costs (best T(1 + steps) - best T(1 step)) / steps, so the set-up and the one-off final forward that
patchlab spends on reporting success, predictions and norms are not counted as steps (the whole 10-step call is
listed beside it). All contenders alternate in every round; best of `rounds` >= 3.

patchlab and torchattacks on the same net both cost one bare forward+backward per step plus a few elementwise
operations, so that comparison is a tie that the noise of best-of-N decides. It is judged on the time between the
net's successive forward calls instead (every step a sample, the same hook for both and for the bare loop), as the
ratio of median steps with its bootstrap interval: met unless patchlab is measurably slower (the interval's low end
above 1). The issue's original gap (152 vs 142 ms, 7%) is several times the interval's width.

C&W-L2: time for patchlab's CW to reach the success rate torchattacks' CW(c=1, steps=50) reaches, best of rounds.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from patchlab.bench.suite import Measured, benchmark
from patchlab.bench.targets import Target
from patchlab.bench.timing import interleaved, median, step_intervals
from patchlab.stats import median_ratio_interval

BATCH, EPS, ALPHA = 8, 4 / 255, 1 / 255


def LiteInput(net: nn.Module) -> nn.Module:  # noqa: N802 - reads as the class it stands for
    """The reference net behind patchlab's [0, 1] input contract (the packaged weights' scaling first)."""
    from patchlab.models.efficientnet_lite import LiteScale

    return nn.Sequential(LiteScale(), net.eval())


def attack_setup(images: str | Path, batch: int = BATCH):
    """patchlab's Lite0, the reference Lite0 (same weights), and `batch` labelled images at 224 px."""
    from patchlab.data import labelled_folder
    from patchlab.models import load_model, reference_model
    from patchlab.models.classify import load_batch

    model = load_model("efficientnet_lite0", "cpu")
    ref = reference_model("efficientnet_lite0").eval().requires_grad_(False)
    items = labelled_folder(images)[::7][:batch]
    x = load_batch([it.path for it in items], 224)
    y = torch.tensor([it.label for it in items])
    return model, ref, x, y


def bench_pgd(setup, steps: int = 5, rounds: int = 5, calls: bool = True) -> Measured:
    """Targets (issue #14): patchlab <= 0.7x torchattacks (reference net), ART >= 2x patchlab, <= 1.15x the bare
    forward+backward, <= 1.0x torchattacks on the same patchlab net."""
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
                                 batch_size=len(x), verbose=False).generate(xn, yn)

    ours_n, ta_ref, ta_ours = "patchlab PGD (patchlab lite0)", "torchattacks PGD (reference lite0)", \
        "torchattacks PGD (patchlab lite0)"
    bare_n, art_n = "bare fwd+bwd (patchlab lite0)", "ART PGD (reference lite0)"
    runs = {bare_n: bare, ta_ref: ta(ref_wrapped), art_n: art, ta_ours: ta(model), ours_n: ours}
    contenders = {}
    for name, run in runs.items():
        contenders[f"{name}|1"] = lambda run=run: run(1)
        contenders[f"{name}|n"] = lambda run=run: run(1 + steps)
    if calls:  # whole 10-step calls, for context (not judged)
        contenders["patchlab PGD, 10-step call|call"] = lambda: ours(10)
        contenders["torchattacks PGD (patchlab lite0), 10-step call|call"] = lambda: ta(model)(10)
    cpu: dict = {}
    samples = interleaved(contenders, rounds=rounds, cpu=cpu)
    # the three loops on the same net, timed per step between its forward calls (see the module docstring)
    per_step = step_intervals(model, {name: runs[name] for name in (bare_n, ta_ours, ours_n)}, steps=4 * steps,
                              rounds=rounds)
    low = {k: min(v) for k, v in samples.items()}
    step = {name: (low[f"{name}|n"] - low[f"{name}|1"]) / steps for name in runs}
    cpu_step = {name: (min(cpu[f"{name}|n"]) - min(cpu[f"{name}|1"])) / steps for name in runs}
    step_med = {name: (statistics.median(samples[f"{name}|n"]) - statistics.median(samples[f"{name}|1"])) / steps
                for name in runs}
    ours_s, ours_c = step[ours_n], cpu_step[ours_n]
    lines = [f"PGD-Linf time per step, batch {len(x)}, 224 px, CPU ({torch.get_num_threads()} threads), from the best "
             f"of {rounds} interleaved rounds of 1 and {1 + steps} steps", "",
             "| contender | best ms/step | median | this / patchlab | CPU ms/step | CPU: this / patchlab |",
             "|---|---|---|---|---|---|"]
    for name in runs:
        lines.append(f"| {name} | {step[name] * 1e3:.1f} | {step_med[name] * 1e3:.1f} | {step[name] / ours_s:.2f} | "
                     f"{cpu_step[name] * 1e3:.1f} | {cpu_step[name] / ours_c:.2f} |")
    for key in ("patchlab PGD, 10-step call", "torchattacks PGD (patchlab lite0), 10-step call") if calls else ():
        lines.append(f"| {key} | {low[key + '|call'] * 1e3:.1f} ms per call (best) | "
                     f"{statistics.median(samples[key + '|call']) * 1e3:.1f} | | | |")

    lines += ["", f"Per step from the time between successive forward calls of the patchlab net ({4 * steps} steps a "
              f"call, {rounds} interleaved rounds, order reversed every other round)", "",
              "| contender | steps timed | best ms | median ms | median / patchlab |", "|---|---|---|---|---|"]
    med = median(per_step)
    for name, v in per_step.items():
        lines.append(f"| {name} | {len(v)} | {min(v) * 1e3:.1f} | {med[name] * 1e3:.1f} | "
                     f"{med[name] / med[ours_n]:.3f} |")
    ratio, lo, hi = median_ratio_interval(per_step[ours_n], per_step[ta_ours])

    def cpu_ratio(a: str, b: str) -> str:
        return f"CPU time: {cpu_step[a] / cpu_step[b]:.2f}x"

    targets = [
        Target("PGD step, patchlab / torchattacks (reference net)", ours_s / step[ta_ref], "<=", 0.7, "x",
               cpu_ratio(ours_n, ta_ref)),
        Target("PGD step, ART / patchlab", step[art_n] / ours_s, ">=", 2.0, "x", cpu_ratio(art_n, ours_n)),
        Target("PGD step, patchlab / bare fwd+bwd (physical limit)", ours_s / step[bare_n], "<=", 1.15, "x",
               cpu_ratio(ours_n, bare_n)),
        Target("PGD step, patchlab / torchattacks on the same patchlab net (median step; 90% interval's low end)",
               lo, "<=", 1.0, "x",
               f"median ratio {ratio:.3f} [{lo:.3f}, {hi:.3f}] over {len(per_step[ours_n])} steps each; best-of-N "
               f"ratio {ours_s / step[ta_ours]:.3f}; both / bare fwd+bwd: {med[ours_n] / med[bare_n]:.3f}, "
               f"{med[ta_ours] / med[bare_n]:.3f}"),
    ]
    return Measured(targets, "\n".join(lines), {"step_s": step, "cpu_step_s": cpu_step, "median_step_s": step_med,
                                                 "same_net_step_intervals_s": per_step})


def bench_cw(setup, n: int = BATCH, rounds: int = 3, full: bool = False) -> Measured:
    """Target: patchlab's CW reaches torchattacks' CW(c=1, steps=50) success rate at least as fast."""
    import torchattacks

    from patchlab.attacks import CW

    model, ref, x, y = setup
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
    samples = interleaved({"torchattacks": run_ta, "patchlab": run_ours}, rounds=rounds, warmup=0)
    ta_time = min(samples["torchattacks"])
    reached = len(ours_out["t"]) == len(samples["patchlab"])
    ours_time = min(ours_out["t"]) if reached else float("nan")
    line = ""
    if full:  # the full default run (5 x 50 steps) is long on a CPU
        start = time.perf_counter()
        result = CW(model)(x, y)
        line = (f"; full default patchlab run: success {result.success_rate:.0%}, mean L2 "
                f"{float(result.l2[result.success].mean()):.3f}, {time.perf_counter() - start:.1f}s")
    table = (f"C&W-L2 on {n} images, CPU, best of {len(samples['patchlab'])} interleaved rounds: torchattacks "
             f"CW(c=1, steps=50) on the reference model: success {ta_out['rate']:.0%}, mean L2 {ta_out['l2']:.3f}, "
             f"{ta_time:.1f}s; patchlab CW (defaults) reached {ta_out['rate']:.0%} after "
             f"{max(ours_out['step'] or [0])} gradient steps in {ours_time:.1f}s{line}")
    targets = [Target("C&W time to torchattacks' success rate, torchattacks / patchlab", ta_time / ours_time, ">=",
                      1.0, "x", f"success {ta_out['rate']:.0%} on {n} images; reached in every round: {reached}")]
    return Measured(targets, table, {"torchattacks_s": ta_time, "patchlab_s": ours_time, "rate": ta_out["rate"]})


COMPETITORS = ("torchattacks", "art", "efficientnet_lite_pytorch")


@benchmark("pgd", "PGD-Linf step: patchlab vs torchattacks and ART, and the bare forward+backward", needs=COMPETITORS)
def run_pgd_benchmark(quick: bool, images: Path, steps: int | None = None, rounds: int | None = None) -> Measured:
    return bench_pgd(attack_setup(images), steps=steps or (3 if quick else 5), rounds=rounds or (3 if quick else 5),
                     calls=not quick)


@benchmark("cw", "C&W-L2: time to torchattacks' success rate", needs=("torchattacks", "efficientnet_lite_pytorch"))
def run_cw_benchmark(quick: bool, images: Path, n: int | None = None, rounds: int = 3, full: bool = False
                     ) -> Measured:
    return bench_cw(attack_setup(images), n=n or (4 if quick else BATCH), rounds=rounds, full=full)
