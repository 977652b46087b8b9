"""Fixtures of the transfer / theft tests: scikit-learn's built-in 8x8 digits and small models trained on them
once per session (seconds on two cores)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def d8():
    """Disjoint parts of the 8x8 digits: victim 900, attacker 500, test 397 (the theft split)."""
    from patchlab.transfer.experiments import THEFT_SPLIT, parts

    return parts("digits8", THEFT_SPLIT["digits8"])


@pytest.fixture(scope="session")
def transfer_cache(tmp_path_factory):
    """One model cache for the whole session ($PATCHLAB_CACHE for the app, its transfer/ for the CLI's --work), so
    the digits8 victim the library, CLI and app tests all use is trained once."""
    return tmp_path_factory.mktemp("patchlab-cache")


@pytest.fixture(scope="session")
def d8_victim(transfer_cache):
    """The experiments' CNN victim on the 8x8 digits (the same one `--source digits8` attacks)."""
    from patchlab.transfer.experiments import victim_cnn

    with torch.random.fork_rng(devices=[]):
        return victim_cnn("digits8", work=transfer_cache / "transfer")[0]


@pytest.fixture(scope="session")
def d8_models(d8):
    """CNN, MLP and logistic regression on the victim part (for matrices and ensembles)."""
    from patchlab.transfer.common import train_digits_model

    v = d8["victim"]
    with torch.random.fork_rng(devices=[]):
        return {kind: train_digits_model(kind, v.images, v.labels, seed=1, epochs=12, lr=3e-3, name=kind,
                                         **({"width": 16, "hidden": 64} if kind == "cnn" else {}))
                for kind in ("cnn", "mlp", "logreg")}
