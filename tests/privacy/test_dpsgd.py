"""DP-SGD on Opacus: the ε it reports is Opacus's own (and ours), runs repeat, a resumed run equals an
uninterrupted one, ghost clipping computes the same update, and it learns."""

from __future__ import annotations

import threading

import pytest
import torch

from patchlab.errors import PatchlabError
from patchlab.models.digits import accuracy, make_digits_model
from patchlab.privacy.dpsgd import DPSGDConfig, epsilon_of, train_dpsgd
from patchlab.privacy.rdp import dpsgd_epsilon
from patchlab.stats import wilson_interval

CFG = DPSGDConfig(target_epsilon=2.0, epochs=2, batch_size=100, lr=1.0, momentum=0.5, max_grad_norm=1.0)
N = 600  # private training examples used here


def _net(seed=0):
    return make_digits_model("mlp", size=8, hidden=64, activation="tanh", seed=seed)


def _same(a, b, atol=0.0):
    return all(torch.allclose(x, y, atol=atol, rtol=0) for x, y in zip(a.state_dict().values(),
                                                                       b.state_dict().values()))


@pytest.fixture(scope="module")
def run(digits_split):
    tr = digits_split.private
    return train_dpsgd(_net(), tr.images[:N], tr.labels[:N], CFG)


def test_epsilon_is_opacus_own_and_ours(run):
    from opacus.accountants import PRVAccountant, RDPAccountant

    assert run.sample_rate == pytest.approx(1 / 6) and run.steps == 12  # 600 examples, batch 100, 2 epochs
    rdp = RDPAccountant()
    rdp.history = [(run.noise_multiplier, run.sample_rate, run.steps)]
    assert run.epsilons["rdp"] == pytest.approx(rdp.get_epsilon(1e-5), rel=1e-12)
    assert run.epsilon == run.epsilons["rdp"]
    assert run.epsilons["rdp"] == pytest.approx(dpsgd_epsilon(run.noise_multiplier, run.sample_rate, run.steps,
                                                              1e-5), rel=1e-6)
    prv = PRVAccountant()
    prv.history = [(run.noise_multiplier, run.sample_rate, run.steps)]
    assert run.epsilons["prv"] == pytest.approx(prv.get_epsilon(1e-5), rel=1e-6)
    # make_private_with_epsilon calibrated sigma so that exactly the target is spent (within its tolerance)
    assert 1.98 <= run.epsilon <= 2.0 and run.epsilons["prv"] < run.epsilon
    assert [h["epoch"] for h in run.history] == [1, 2] and run.history[-1]["epsilon"] == pytest.approx(run.epsilon)
    assert run.history[0]["epsilon"] < run.history[1]["epsilon"]


def test_it_learns(run, digits_split):
    te = digits_split.test
    acc = accuracy(run.model, te.images, te.labels)
    lo, _ = wilson_interval(round(acc * len(te)), len(te))
    assert lo > 0.5, acc  # chance is 0.1


def test_seeded_runs_repeat_and_resume_equals_uninterrupted(run, digits_split, tmp_path):
    tr = digits_split.private
    x, y = tr.images[:N], tr.labels[:N]
    assert run.config.grad_sample_mode == "bk"  # the default: book-keeping clipping repeats and resumes
    again = train_dpsgd(_net(), x, y, CFG)
    assert _same(run.model, again.model) and again.epsilon == run.epsilon

    stop = threading.Event()
    ckpt = tmp_path / "dp.dpsgd.pt"

    def halt_in_epoch_two(step, total, metrics):
        if metrics["epoch"] == 2:
            stop.set()

    first = train_dpsgd(_net(), x, y, CFG, checkpoint=ckpt, stop=stop, progress=halt_in_epoch_two)
    assert first.stopped and len(first.history) == 1
    resumed = train_dpsgd(_net(seed=99), x, y, CFG, checkpoint=ckpt)  # other start weights
    assert resumed.resumed_from == 1 and len(resumed.history) == 2
    assert _same(run.model, resumed.model, atol=1e-6)
    assert resumed.epsilon == pytest.approx(run.epsilon, rel=1e-12) and resumed.steps == run.steps
    with pytest.raises(PatchlabError, match="other settings"):
        train_dpsgd(_net(), x, y, CFG, checkpoint=ckpt, lr=0.5)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_per_sample_modes_compute_the_same_update(digits_split, kind):
    """Opacus's hooks, torch's ExpandedWeights, ghost clipping and book-keeping clipping: the same clipped, noised
    steps and the same epsilon, including the empty batches Poisson sampling draws (expected batch 2 of 60: about one
    step in eight is empty here); book-keeping also with logical batches split into physical ones."""
    tr = digits_split.private
    cfg = DPSGDConfig(target_epsilon=None, noise_multiplier=1.0, epochs=2, batch_size=2, lr=0.5)
    if kind == "cnn":  # one epoch at a small rate: float rounding grows chaotically over 60 such noisy CNN steps
        cfg = DPSGDConfig(target_epsilon=None, noise_multiplier=1.0, epochs=1, batch_size=2, lr=0.1)

    def net():
        if kind == "cnn":
            return make_digits_model("cnn", size=8, width=4, hidden=16, activation="tanh", seed=0)
        return _net()

    runs = {m: train_dpsgd(net(), tr.images[:60], tr.labels[:60], cfg, grad_sample_mode=m)
            for m in ("hooks", "ew", "ghost", "bk")}
    runs["bk, physical batch 1"] = train_dpsgd(net(), tr.images[:60], tr.labels[:60], cfg, physical_batch_size=1)
    assert runs["hooks"].steps == 30 * cfg.epochs and len({r.epsilon for r in runs.values()}) == 1
    for m in ("ew", "ghost", "bk", "bk, physical batch 1"):
        assert _same(runs["hooks"].model, runs[m].model, atol=1e-5), m


def test_fixed_noise_and_bad_settings(digits_split):
    tr = digits_split.private
    fixed = DPSGDConfig(target_epsilon=None, noise_multiplier=2.0, epochs=1, batch_size=100)
    res = train_dpsgd(_net(), tr.images[:300], tr.labels[:300], fixed)
    assert res.noise_multiplier == 2.0 and res.epsilon == pytest.approx(epsilon_of([(2.0, 1 / 3, 3)], 1e-5, "rdp"))
    other = train_dpsgd(_net(), tr.images[:300], tr.labels[:300], fixed, seed=1)  # the seed decides sampling, noise
    assert not _same(res.model, other.model)
    for bad in ({"target_epsilon": None}, {"noise_multiplier": 1.0}, {"accountant": "gdp2"}, {"delta": 0},
                {"grad_sample_mode": "magic"}, {"epochs": 0}):
        with pytest.raises(PatchlabError):
            train_dpsgd(_net(), tr.images, tr.labels, CFG, **bad)
    with pytest.raises(PatchlabError):
        train_dpsgd(_net(), tr.images, tr.labels[:10], CFG)


def test_batchnorm_is_swapped_and_prv_accountant(digits_split):
    import torch.nn as nn

    tr = digits_split.private
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.Tanh(), nn.Linear(32, 10))
    res = train_dpsgd(net, tr.images[:300], tr.labels[:300], DPSGDConfig(target_epsilon=3.0, epochs=1, batch_size=100,
                                                                        accountant="prv"))
    assert not any(isinstance(m, nn.BatchNorm1d) for m in res.model.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in res.model.modules())  # ModuleValidator.fix
    assert res.epsilon == res.epsilons["prv"] and 2.9 <= res.epsilon <= 3.0 and res.epsilons["rdp"] > res.epsilon


def test_batch_loader_gives_the_plain_loaders_batches_and_the_speed_table_runs():
    from opacus.data_loader import DPDataLoader

    from patchlab.privacy.dpsgd import batch_loader, epoch_seconds

    x, y = torch.rand(50, 1, 8, 8), torch.arange(50) % 10
    plain = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16, shuffle=True,
                                        generator=torch.Generator().manual_seed(3))
    ours = batch_loader(x, y, 16, shuffle=True, generator=torch.Generator().manual_seed(3))
    for (xa, ya), (xb, yb) in zip(plain, ours, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    # under Opacus's Poisson sampling too, empty batches included (a tiny rate makes some)
    sizes = []
    for loader in (plain, ours):
        dp = DPDataLoader.from_data_loader(loader, generator=torch.Generator().manual_seed(5))
        dp.batch_sampler.sample_rate = 0.02
        sizes.append([(len(b[0]), b[0].shape[1:], float(b[0].sum())) for b in dp])
    assert sizes[0] == sizes[1] and any(n == 0 for n, _, _ in sizes[0])
    r = epoch_seconds(lambda: make_digits_model("logreg", size=8, seed=0), x, y, 16, repeats=1)
    assert set(r["ratio"]) == {"nonprivate", "nonprivate-nchw", "hooks", "ew", "ghost", "bk"}
    assert r["ratio"]["nonprivate"] == 1.0
