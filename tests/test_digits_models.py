"""The shared digit models and their resumable training loop."""

from __future__ import annotations

import pytest
import torch

from patchlab.data import load_digits, split_digits
from patchlab.errors import PatchlabError
from patchlab.models.digits import (accuracy, fit, load_digits_model, make_digits_model, save_digits_model)


@pytest.fixture(scope="module")
def parts():
    return split_digits(load_digits(), {"train": 1200, "test": -1}, seed=0)


def test_split_is_disjoint_and_repeatable(parts):
    again = split_digits(load_digits(), {"train": 1200, "test": -1}, seed=0)
    assert len(parts["train"]) == 1200 and len(parts["test"]) == 1797 - 1200
    assert torch.equal(parts["train"].images, again["train"].images)
    rows = {tuple(r.flatten().tolist()) for r in parts["train"].images}
    # sklearn's digits hold a few exact duplicates; the split itself never reuses an index
    overlap = sum(tuple(r.flatten().tolist()) in rows for r in parts["test"].images)
    assert overlap < 10
    with pytest.raises(PatchlabError):
        split_digits(load_digits(), {"a": 1000, "b": 1000})


@pytest.mark.parametrize("kind", ["cnn", "mlp", "logreg", "strided"])
def test_models_learn_sklearn_digits(parts, kind):
    tr, te = parts["train"], parts["test"]
    net = make_digits_model(kind, size=8, seed=0)
    fit(net, tr.images, tr.labels, epochs=15, batch_size=64, lr=3e-3)
    assert accuracy(net, te.images, te.labels) >= 0.90


def test_resume_equals_uninterrupted(parts, tmp_path):
    tr = parts["train"]
    a = make_digits_model("cnn", size=8, seed=1)
    fit(a, tr.images, tr.labels, epochs=3, batch_size=100, lr=2e-3, seed=5)
    b = make_digits_model("cnn", size=8, seed=1)
    ckpt = tmp_path / "b.ckpt.pt"
    fit(b, tr.images, tr.labels, epochs=1, batch_size=100, lr=2e-3, seed=5, checkpoint=ckpt)
    b2 = make_digits_model("cnn", size=8, seed=99)  # a fresh process would start from other weights
    res = fit(b2, tr.images, tr.labels, epochs=3, batch_size=100, lr=2e-3, seed=5, checkpoint=ckpt)
    assert res.resumed_from == 1 and len(res.history) == 3
    for pa, pb in zip(a.state_dict().values(), b2.state_dict().values()):
        assert torch.allclose(pa, pb, atol=1e-6)
    with pytest.raises(PatchlabError, match="other settings"):
        fit(make_digits_model("cnn", size=8), tr.images, tr.labels, epochs=3, lr=1e-2, checkpoint=ckpt)


def test_save_load_roundtrip(tmp_path, parts):
    net = make_digits_model("mlp", size=8, hidden=32, activation="tanh")
    path = save_digits_model(net, tmp_path / "m.safetensors")
    back = load_digits_model(path)
    x = parts["test"].images[:5]
    assert torch.equal(net.eval()(x), back(x)) and back.config == net.config
    (tmp_path / "bad.safetensors").write_bytes(b"not a model")
    with pytest.raises(PatchlabError):
        load_digits_model(tmp_path / "bad.safetensors")
