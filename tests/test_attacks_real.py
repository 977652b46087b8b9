"""Acceptance on efficientnet_lite0 and real photos: shared ImageNet sample (100 images, every 7th file) and the
built-in photos. The acceptance checks run on all 100 in the default test run (docs/attacks.md, "Measured"); `-s` prints
every report."""

from __future__ import annotations

import pytest
import torch

from patchlab.attacks import CW, FGSM, PGDL2, DeepFool, make_attack
from patchlab.attacks.robustness import accuracy_curve, evaluate_attack
from patchlab.stats import wilson_interval

# docs/attacks.md, "Measured", on these 100 images: clean top-1 87%, PGD 4/255 top-1 0%, FGSM 4/255 top-1 13%,
# PGD to toaster 100%. Asserted at the reported level with the Wilson 95% margin at n = 100 (where that is stricter
# than the acceptance threshold in that table).
REPORTED = {"clean": 0.87, "pgd": 0.0, "fgsm": 0.13, "toaster": 1.0}


def at_least(rate: float, n: int) -> float:
    return wilson_interval(rate * n, n)[0]


def at_most(rate: float, n: int) -> float:
    return wilson_interval(rate * n, n)[1]


@pytest.fixture(scope="module")
def imagenet100(imagenet_dir, lite0):
    from patchlab.data import labelled_folder
    from patchlab.models.classify import load_batch

    items = labelled_folder(imagenet_dir)[::7][:100]
    x = load_batch([it.path for it in items], lite0.input_size)
    y = torch.tensor([it.label for it in items])
    return x, y


def _subset(data, n):
    x, y = data
    return x[:n], y[:n]


def _pgd_fgsm_targeted(lite0, x, y):
    batch = {"batch_size": 20}
    pgd = evaluate_attack(lite0, make_attack("pgd", lite0, eps="4/255", steps=10, seed=0, **batch), x, y)
    fgsm = evaluate_attack(lite0, make_attack("fgsm", lite0, eps="4/255", **batch), x, y)
    toaster = evaluate_attack(lite0, make_attack("pgd", lite0, eps="8/255", steps=20, target="toaster", seed=0,
                                                 early_stop=True, **batch), x, y)
    return pgd, fgsm, toaster


def _check_acceptance(pgd, fgsm, toaster, n=100):
    assert pgd["clean_accuracy"] >= at_least(REPORTED["clean"], n), pgd                  # >= 80 of 100
    assert pgd["robust_accuracy"] <= min(0.02, at_most(REPORTED["pgd"], n)), pgd        # acceptance: <= 2 %
    assert pgd["max_linf"] <= 4 / 255 + 1e-6
    assert fgsm["robust_accuracy"] <= min(0.35, at_most(REPORTED["fgsm"], n)), fgsm     # <= 20 of 100
    assert toaster["success_rate"] >= max(0.95, at_least(REPORTED["toaster"], n)), toaster   # >= 97 of 100
    assert toaster["max_linf"] <= 8 / 255 + 1e-6


def test_acceptance_100(lite0, imagenet100):
    x, y = imagenet100
    assert len(y) == 100
    pgd, fgsm, toaster = _pgd_fgsm_targeted(lite0, x, y)
    print("\nPGD 4/255 x10:", pgd, "\nFGSM 4/255:", fgsm, "\nPGD->toaster 8/255 x20:", toaster)
    _check_acceptance(pgd, fgsm, toaster)


# -- cross-check against torchattacks: same Classifier (same normalisation), same images, no random start ------------
def test_matches_torchattacks(lite0, imagenet100):
    try:  # never a silent skip: `make test` installs it (pip install --no-deps torchattacks==3.5.1)
        import torchattacks
    except ImportError:
        pytest.fail("torchattacks is not installed: make test installs it (pip install --no-deps torchattacks==3.5.1)")
    x, y = _subset(imagenet100, 8)
    ours = make_attack("fgsm", lite0, eps="4/255")(x, y).adv
    theirs = torchattacks.FGSM(lite0, eps=4 / 255)(x, y)
    assert (ours.cpu() - theirs.cpu()).abs().max() <= 1e-5
    ours = make_attack("bim", lite0, eps="4/255", alpha="1/255", steps=5)(x, y).adv
    theirs = torchattacks.BIM(lite0, eps=4 / 255, alpha=1 / 255, steps=5)(x, y)
    assert (ours.cpu() - theirs.cpu()).abs().max() <= 1e-5
    # a weak PGD so the success rate is informative (not 100 %)
    ours = make_attack("pgd", lite0, eps="0.25/255", alpha="0.1/255", steps=3, random_start=False)(x, y)
    adv = torchattacks.PGD(lite0, eps=0.25 / 255, alpha=0.1 / 255, steps=3, random_start=False)(x, y)
    with torch.no_grad():
        theirs_rate = float((lite0(adv).argmax(1).cpu() != y).float().mean())
    assert abs(ours.success_rate - theirs_rate) <= 0.02
    targeted = make_attack("bim", lite0, eps="4/255", alpha="1/255", steps=3, target=859)(x[:4], y[:4]).adv
    ta = torchattacks.BIM(lite0, eps=4 / 255, alpha=1 / 255, steps=3)
    ta.set_mode_targeted_by_function(lambda images, labels: torch.full_like(labels, 859), quiet=True)
    assert (targeted - ta(x[:4], y[:4])).abs().max() <= 1e-5


def test_transfer_family_and_l2_on_lite0(lite0, imagenet100):
    x, y = _subset(imagenet100, 4)
    for name in ("mifgsm", "difgsm", "tifgsm", "ll"):
        res = make_attack(name, lite0, eps="4/255", steps=5, seed=0)(x, y)
        assert float(res.linf.max()) <= 4 / 255 + 1e-6
        assert res.success_rate >= 0.75, (name, res.success_rate)
    res = make_attack("pgdl2", lite0, eps=1.0, steps=5, seed=0)(x, y)
    assert float(res.l2.max()) <= 1.0 + 1e-4 and res.success_rate >= 0.75


def test_deepfool_below_fgsm_minimal_eps(lite0, imagenet100):
    x, y = _subset(imagenet100, 4)
    with torch.no_grad():
        keep = lite0(x).argmax(1) == y
    x, y = x[keep], y[keep]
    grid = [k / 1020 for k in range(1, 65)]  # 0.25/255 .. 16/255
    sweep = FGSM(lite0, eps=0.0).sweep(x, y, grid)
    hits = torch.stack([r.success for r in sweep])
    assert hits.any(0).all()
    fgsm_min = torch.tensor(grid)[hits.float().argmax(0)]
    linf = DeepFool(lite0, norm="linf", steps=20)(x, y)
    assert linf.success.all()
    assert (linf.linf.cpu() < fgsm_min).float().mean() >= 0.75, (linf.linf, fgsm_min)
    assert float(linf.linf.mean()) < float(fgsm_min.mean())
    l2 = DeepFool(lite0, steps=20)(x, y)  # the L2 version too, against FGSM's perturbation at its minimal ε
    assert l2.success.all()
    fgsm_l2 = torch.stack([r.l2 for r in sweep]).cpu()
    fgsm_min_l2 = fgsm_l2.gather(0, hits.float().argmax(0)[None])[0]
    assert float(l2.l2.mean()) < float(fgsm_min_l2.mean())


def _cw_vs_pgdl2(lite0, x, y):
    cw = CW(lite0)(x, y)
    curve = accuracy_curve(lite0, PGDL2(lite0, steps=10, seed=0), x, y, [0.125, 0.25, 0.5, 1.0, 2.0])
    return cw, curve


def _check_cw(cw, curve):
    assert cw.success_rate >= 0.95, cw.success_rate
    cw_l2 = float(cw.l2[cw.success].mean())
    # PGD-L2 at the smallest ε of the grid where it reaches C&W's success rate: its mean L2 is larger
    equal = [i for i, s in enumerate(curve["success_rate"]) if s >= cw.success_rate - 1e-9]
    assert equal, curve
    assert cw_l2 < curve["mean_l2"][equal[0]], (cw_l2, curve)


def test_cw_defaults_lite0(lite0, imagenet100):
    x, y = _subset(imagenet100, 16)
    cw, curve = _cw_vs_pgdl2(lite0, x, y)
    print("\nC&W:", cw.success_rate, float(cw.l2[cw.success].mean()), cw.queries, "\nPGD-L2 curve:", curve)
    _check_cw(cw, curve)


R2_TOP, R2_ALL = 0.758, 0.588  # docs/attacks.md, "The classic demos" (logits along the gradient, span ±0.02)


# -- the demos, small ----------------------------------------------------------------------------------------------
def test_demo_panda(lite0, artifacts_dir):
    from patchlab.attacks.demos import panda_gibbon

    r = panda_gibbon(lite0, width=6)
    assert r.data["flipped"] and r.data["linf"] == pytest.approx(0.007, abs=1e-6)
    # docs/attacks.md (demos): tiger cat 39.5% -> Egyptian cat 97.0% (deterministic: one gradient, no randomness)
    assert (r.data["clean_class"], r.data["adv_class"]) == ("tiger cat", "Egyptian cat"), r.data
    assert r.data["adv_conf"] > 0.9, r.data
    assert r.save(artifacts_dir / "attacks_panda.png", dpi=50).stat().st_size > 5000


def test_demo_logits_linear(lite0, artifacts_dir):
    from patchlab.attacks.demos import logits_along_gradient

    r = logits_along_gradient(lite0, span=0.02, width=5)
    # measured, not assumed: EfficientNet-Lite's logits are far from linear (docs/attacks.md: R² of a linear fit over
    # ±0.02, 41 points: R2_TOP for the classes that are top-1 somewhere, R2_ALL over all 1000). Deterministic, but
    # sensitive: sub-level input changes move it by ~0.03, hence the tolerance
    assert r.data["r2_top"] == pytest.approx(R2_TOP, abs=0.05), r.data["r2_top"]
    assert r.data["r2_all"] == pytest.approx(R2_ALL, abs=0.05), r.data["r2_all"]
    assert r.data["adv_class_at_span"] != r.data["clean_class"]
    assert len(r.data["eps"]) == 41 and r.data["eps"][0] == pytest.approx(-0.02)
    assert r.save(artifacts_dir / "attacks_logits.png", dpi=50).stat().st_size > 5000


def test_demo_airplanes(lite0, artifacts_dir):
    from patchlab.attacks.demos import objects_to_airplanes

    r = objects_to_airplanes(lite0, steps=10, width=6)
    turned = [row["adv_class"] == "airliner" for row in r.data["images"]]
    assert r.data["target"] == "airliner" and len(turned) == 4
    assert r.data["success_rate"] == pytest.approx(sum(turned) / 4)   # the figure's count is the model's top-1
    # docs/attacks.md, "The classic demos": all 4 turned; allowed: that minus the Wilson 95% margin at n = 4 (>= 3 of 4)
    assert r.data["success_rate"] >= at_least(1.0, 4), r.data
    assert r.save(artifacts_dir / "attacks_airplanes.png", dpi=50).stat().st_size > 5000
