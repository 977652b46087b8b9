"""Attack mechanics on a fast real model (logistic regression on digits), argument checking, CLI, demos."""

from __future__ import annotations

import json
import math

import pytest
import torch

from patchlab.attacks import (ATTACKS, BIM, CW, DIFGSM, FGM, FGSM, MIFGSM, PGD, PGDL2, TIFGSM, DeepFool, LeastLikely,
                              UniversalPerturbation, make_attack)
from patchlab.attacks.base import parse_eps
from patchlab.attacks.demos import train_linear_digits
from patchlab.attacks.robustness import accuracy_curve, evaluate_attack
from patchlab.errors import PatchlabError


@pytest.fixture(scope="module")
def digits():
    model, x, y, acc = train_linear_digits()
    assert acc > 0.9
    keep = model(x).argmax(1) == y  # correctly classified test digits
    return model, x[keep][:64], y[keep][:64]


def check_result(res, x, eps=None, norm="linf"):
    assert res.adv.shape == x.shape and res.adv.dtype == torch.float32
    assert float(res.adv.min()) >= 0 and float(res.adv.max()) <= 1
    delta = (res.adv - x).flatten(1)
    assert torch.allclose(res.linf, delta.abs().amax(1), atol=1e-6)
    assert torch.allclose(res.l2, delta.norm(dim=1), atol=1e-5)
    if eps is not None:
        bound = res.linf if norm == "linf" else res.l2
        assert float(bound.max()) <= eps + 1e-5
    assert res.success.dtype == torch.bool and len(res.success) == len(x)
    assert isinstance(res.queries, int) and res.queries >= 0


# -- ε, options and class names ------------------------------------------------------------------------------------
@pytest.mark.parametrize("text,value", [("4/255", 4 / 255), (0.0157, 0.0157), ("0.5", 0.5), (0, 0.0), ("1", 1.0)])
def test_parse_eps_accepts(text, value):
    assert math.isclose(parse_eps(text), value)


@pytest.mark.parametrize("bad", [-0.1, "-4/255", 1.5, "300/255", float("nan"), "nan", "abc", "4/0", None])
def test_parse_eps_refuses(bad):
    with pytest.raises(PatchlabError) as err:
        parse_eps(bad)
    assert "\n" not in str(err.value)


def test_l2_eps_may_exceed_one_but_not_be_negative():
    assert parse_eps("3.0", "l2") == 3.0
    for bad in (-1, float("nan"), float("inf"), "x"):
        with pytest.raises(PatchlabError):
            parse_eps(bad, "l2")


def test_bad_eps_in_make_attack(lite0):
    with pytest.raises(PatchlabError, match="eps must lie in"):
        make_attack("pgd", lite0, eps=2.0)
    with pytest.raises(PatchlabError, match="alpha"):
        make_attack("pgd", lite0, eps="4/255", alpha=-1)
    with pytest.raises(PatchlabError, match="steps"):
        make_attack("bim", lite0, eps="4/255", steps=0)


def test_target_names_and_errors(lite0):
    assert make_attack("pgd", lite0, eps="8/255", target="toaster").target == 859
    assert make_attack("pgd", lite0, eps="8/255", target="n04442312").target == 859
    assert make_attack("pgd", lite0, eps="8/255", target=859).target == 859
    with pytest.raises(PatchlabError, match="did you mean 'toaster'"):
        make_attack("pgd", lite0, eps="8/255", target="toastr")
    with pytest.raises(PatchlabError, match="out of range"):
        make_attack("pgd", lite0, eps="8/255", target=1000)
    with pytest.raises(PatchlabError, match="either"):
        make_attack("pgd", lite0, target="toaster", least_likely=True)
    with pytest.raises(PatchlabError, match="untargeted only"):
        make_attack("deepfool", lite0, target="toaster")


def test_unknown_attack_and_option(lite0):
    with pytest.raises(PatchlabError, match="did you mean 'pgd'"):
        make_attack("pgdd", lite0)
    with pytest.raises(PatchlabError, match="does not take"):
        make_attack("fgsm", lite0, steps=3)
    assert set(ATTACKS) >= {"fgsm", "fgm", "bim", "ll", "pgd", "pgdl2", "mifgsm", "difgsm", "tifgsm", "cw", "deepfool"}


def test_input_checks(digits):
    model, x, y = digits
    atk = FGSM(model, eps=0.1)
    with pytest.raises(PatchlabError, match=r"\[0, 1\]"):
        atk(x * 2, y)
    with pytest.raises(PatchlabError, match="labels"):
        atk(x[:4], y[:3])


# -- every attack and mode on digits ---------------------------------------------------------------------------------
LINF = [(FGSM, {}), (BIM, {"steps": 10, "alpha": 0.03}), (PGD, {"steps": 10}), (MIFGSM, {"steps": 10}),
        (DIFGSM, {"steps": 10, "seed": 0, "alpha": 0.06}), (TIFGSM, {"steps": 10, "seed": 0, "kernel_size": 3, "alpha": 0.06})]


@pytest.mark.parametrize("cls,kw", LINF, ids=[c.__name__ for c, _ in LINF])
def test_linf_untargeted(digits, cls, kw):
    model, x, y = digits
    res = cls(model, eps=0.3, **kw)(x, y)
    check_result(res, x, 0.3)
    assert torch.equal(res.success, res.adv_pred != y)
    # input diversity trades white-box strength for transfer (and 8x8 digits shrink to 7x7)
    assert res.success_rate >= (0.7 if cls in (DIFGSM, TIFGSM) else 0.9), res.success_rate
    assert res.queries == kw.get("steps", 1)
    weak = cls(model, eps=0.02, **kw)(x, y)
    assert weak.success_rate < res.success_rate  # the ε-ball matters


@pytest.mark.parametrize("cls,kw", LINF[1:], ids=[c.__name__ for c, _ in LINF[1:]])
def test_linf_targeted_and_least_likely(digits, cls, kw):
    model, x, y = digits
    x, y = x[y != 3], y[y != 3]
    res = cls(model, eps=0.3, target="3", **kw)(x, y)
    check_result(res, x, 0.3)
    assert torch.equal(res.target, torch.full_like(y, 3))
    assert torch.equal(res.success, res.adv_pred == 3)
    assert res.success_rate >= (0.6 if cls in (DIFGSM, TIFGSM) else 0.8), res.success_rate
    ll = cls(model, eps=0.3, least_likely=True, **kw)(x, y)
    assert torch.equal(ll.target, model(x).argmin(1))
    assert torch.equal(ll.success, ll.adv_pred == ll.target)
    assert ll.success_rate >= (0.2 if cls in (DIFGSM, TIFGSM) else 0.5), ll.success_rate


def test_fgsm_targeted(digits):
    model, x, y = digits
    res = FGSM(model, eps=0.3, target=torch.full_like(y, 5))(x, y)
    assert torch.equal(res.success, res.adv_pred == 5) and res.success_rate > 0.3


def test_least_likely_class_is_bim_targeted_at_argmin(digits):
    model, x, y = digits
    a = LeastLikely(model, eps=0.2, steps=5, alpha=0.05)(x, y)
    b = BIM(model, eps=0.2, steps=5, alpha=0.05, target=model(x).argmin(1))(x, y)
    assert torch.equal(a.adv, b.adv)


def test_bim_kurakin_defaults(digits):
    model, _, _ = digits
    atk = BIM(model, eps="16/255")
    assert atk.steps == 20 and atk.alpha == pytest.approx(1 / 255)  # min(16 + 4, 1.25 * 16)
    assert BIM(model, eps="2/255").steps == 2


@pytest.mark.parametrize("cls", [FGM, PGDL2])
def test_l2_attacks(digits, cls):
    model, x, y = digits
    kw = {} if cls is FGM else {"steps": 10}
    res = cls(model, eps=1.5, **kw)(x, y)
    check_result(res, x, 1.5, "l2")
    assert res.success_rate >= 0.8
    tgt = cls(model, eps=1.5, target=3, **kw)(x[y != 3], y[y != 3])
    assert torch.equal(tgt.success, tgt.adv_pred == 3)


def test_pgd_random_start_seed_and_restarts(digits):
    model, x, y = digits
    a = PGD(model, eps=0.05, steps=3, seed=1)(x, y)
    b = PGD(model, eps=0.05, steps=3, seed=1)(x, y)
    c = PGD(model, eps=0.05, steps=3, seed=2)(x, y)
    assert torch.equal(a.adv, b.adv) and not torch.equal(a.adv, c.adv)
    r = PGD(model, eps=0.05, steps=3, seed=1, restarts=4)(x, y)
    check_result(r, x, 0.05)
    assert r.success.sum() >= a.success.sum()
    assert 3 <= r.queries <= 12


def test_early_stop_keeps_first_adversarial(digits):
    model, x, y = digits
    full = PGD(model, eps=0.3, steps=20, random_start=False)(x, y)
    fast = PGD(model, eps=0.3, steps=20, random_start=False, early_stop=True)(x, y)
    check_result(fast, x, 0.3)
    assert fast.success.all() and full.success.all()
    assert float(fast.l2.mean()) < float(full.l2.mean())  # stops at the first success, smaller perturbations


def test_cw_defaults_minimal_l2(digits):
    model, x, y = digits
    res = CW(model)(x, y)
    check_result(res, x)
    assert res.success_rate >= 0.95
    pgd = PGDL2(model, eps=float(res.l2[res.success].mean()), steps=20)(x, y)
    assert pgd.success_rate < res.success_rate  # at C&W's mean radius PGD-L2 fools fewer
    # targeted on 8x8 digits needs large moves of saturated (0-valued) pixels: a larger Adam step
    tgt = CW(model, target="3", lr=0.05)(x[y != 3], y[y != 3])
    assert torch.equal(tgt.success, tgt.adv_pred == 3) and tgt.success_rate >= 0.9, tgt.success_rate


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_deepfool(digits, norm):
    model, x, y = digits
    res = DeepFool(model, norm=norm)(x, y)
    check_result(res, x)
    assert res.success_rate >= 0.95
    # For a linear model DeepFool's first step is exact: much smaller than FGSM's minimal ε.
    if norm == "linf":
        grid = [i / 200 for i in range(1, 121)]
        hits = torch.stack([r.success for r in FGSM(model, eps=0.0).sweep(x, y, grid)])
        first = torch.tensor(grid)[hits.float().argmax(0)]
        ok = hits.any(0) & res.success
        assert float(res.linf[ok].mean()) < float(first[ok].mean())


def test_universal_perturbation(digits):
    model, x, y = digits
    uap = UniversalPerturbation(model, eps=0.25, max_passes=3, seed=0)
    fit = uap.fit(x)
    assert float(fit.perturbation.abs().max()) <= 0.25 + 1e-6 and fit.perturbation.shape == x.shape[1:]
    noise = (torch.randint(0, 2, x.shape[1:], generator=torch.Generator().manual_seed(0)) * 2 - 1) * 0.25
    noise_rate = float((model((x + noise).clamp(0, 1)).argmax(1) != y).float().mean())
    assert fit.fooling_rate >= max(0.15, 2 * noise_rate), (fit.fooling_rate, noise_rate)
    assert fit.queries > 0
    res = uap(x, y)
    check_result(res, x, 0.25)
    assert torch.allclose(res.adv, (x + fit.perturbation).clamp(0, 1))
    assert res.success_rate == pytest.approx(fit.fooling_rate)  # all clean predictions are correct here


def test_evaluate_and_curve(digits):
    model, x, y = digits
    out = evaluate_attack(model, PGD(model, eps=0.3, steps=10), x, y)
    for key in ("clean_accuracy", "robust_accuracy", "success_rate", "mean_linf", "max_linf", "mean_l2", "max_l2",
                "n", "seconds"):
        assert key in out
    assert out["clean_accuracy"] == 1.0 and out["robust_accuracy"] <= 0.1 and out["n"] == len(y)
    assert out["max_linf"] <= 0.3 + 1e-6
    curve = accuracy_curve(model, FGSM(model), x, y, [0, "0.05", 0.1, 0.2, 0.3])
    acc = curve["robust_accuracy"]
    assert acc[0] == curve["clean_accuracy"] == 1.0 and acc[-1] < 0.2
    assert all(a >= b - 1e-9 for a, b in zip(acc, acc[1:]))
    pgd_curve = accuracy_curve(model, PGD(model, steps=5, random_start=False), x, y, [0.05, 0.2])
    assert pgd_curve["robust_accuracy"][1] < pgd_curve["robust_accuracy"][0]


def test_batched_call_matches_whole(digits):
    model, x, y = digits
    whole = BIM(model, eps=0.1, steps=3)(x, y)
    parts = BIM(model, eps=0.1, steps=3, batch_size=10)(x, y)
    assert torch.allclose(whole.adv, parts.adv, atol=1e-6) and torch.equal(whole.success, parts.success)


def test_labels_default_to_predictions(digits):
    model, x, y = digits
    res = FGSM(model, eps=0.3)(x)
    assert torch.equal(res.labels, model(x).argmax(1))


# -- CLI --------------------------------------------------------------------------------------------------------------
def _cli(args, capsys):
    from patchlab.cli import main

    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("args,message", [
    (["--eps", "-1"], "eps must lie in"),
    (["--eps", "1.5"], "eps must lie in"),
    (["--eps", "nan"], "eps must lie in"),
    (["--eps", "4/x"], "eps must be a number"),
    (["--eps", "8/255", "--target", "toastr"], "did you mean 'toaster'"),
    (["--attack", "pgdd"], "unknown attack"),
    (["--target", "toaster", "--least-likely"], "either"),
])
def test_cli_bad_input_exits_2(imagenet_dir, capsys, args, message):
    code, out, err = _cli(["attack", str(imagenet_dir), "--limit", "1"] + args, capsys)
    assert code == 2
    assert err.startswith("patchlab: error:") and message in err and err.count("\n") == 1


def test_cli_attack_json_out_and_resume(imagenet_dir, tmp_path, capsys):
    args = ["attack", str(imagenet_dir), "--attack", "fgsm", "--eps", "4/255", "--limit", "3", "--json",
            "--out", str(tmp_path / "adv")]
    code, out, err = _cli(args, capsys)
    assert code == 0, err
    first = json.loads(out)
    for key in ("clean_accuracy", "robust_accuracy", "success_rate", "mean_linf", "max_linf", "mean_l2", "max_l2",
                "n", "seconds", "model", "png_success_rate"):
        assert key in first
    assert first["n"] == 3 and first["max_linf"] == pytest.approx(4 / 255, abs=1e-6)
    pngs = sorted((tmp_path / "adv").glob("*.png"))
    assert len(pngs) == 3
    from patchlab.data import read_image

    assert read_image(pngs[0]).shape == (3, 224, 224)
    code, out, _ = _cli(args, capsys)  # resumes: nothing left to attack, same numbers
    again = json.loads(out)
    assert again["robust_accuracy"] == first["robust_accuracy"] and again["n"] == 3
    code, _, err = _cli(args[:-1] + [str(tmp_path / "adv")] + ["--steps", "3"], capsys)
    assert code == 2  # fgsm takes no steps


def test_cli_eps_curve(imagenet_dir, capsys):
    code, out, err = _cli(["attack", str(imagenet_dir), "--attack", "fgsm", "--eps", "0,1/255,4/255", "--limit", "2",
                           "--json"], capsys)
    assert code == 0, err
    curve = json.loads(out)
    assert len(curve["robust_accuracy"]) == 3 and curve["robust_accuracy"][0] == curve["clean_accuracy"]


# -- demos --------------------------------------------------------------------------------------------------------------
def test_demo_linear_model(artifacts_dir):
    from patchlab.attacks.demos import linear_model

    r = linear_model(eps=0.2, width=6)
    assert r.data["clean_accuracy"] > 0.9 and r.data["flipped"]
    acc = r.data["curve_accuracy"]
    assert acc[0] > 0.9 and acc[-1] < 0.1
    path = r.save(artifacts_dir / "attacks_linear.png", dpi=60)
    assert path.stat().st_size > 5000
