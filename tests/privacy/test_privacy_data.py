"""The private / public / test split: sizes, disjointness, repeatability, and the full-MNIST layout."""

from __future__ import annotations

import shutil

import pytest
import torch

from patchlab.errors import PatchlabError
from patchlab.privacy.data import privacy_data


def test_sklearn_split(digits_split):
    assert digits_split.sizes() == {"private": 1000, "public": 400, "test": 397} and digits_split.size == 8
    again = privacy_data(None, seed=0)
    assert torch.equal(again.private.images, digits_split.private.images)
    assert not torch.equal(privacy_data(None, seed=1).private.images, digits_split.private.images)
    assert privacy_data(None, limit_private=10).sizes()["private"] == 10


def test_shared_mnist_split_and_full_mnist_layout(mnist_dir, tmp_path):
    d = privacy_data(mnist_dir)
    assert d.source == "mnist-10k" and d.sizes() == {"private": 6000, "public": 2000, "test": 2000}
    # a folder that also has the 60k train files: the train set is private, the test set is split in halves
    # (here the 10k test files stand in for the train files)
    for kind in ("images-idx3", "labels-idx1"):
        src = mnist_dir / f"t10k-{kind}-ubyte.gz"
        shutil.copy(src, tmp_path / src.name)
        shutil.copy(src, tmp_path / f"train-{kind}-ubyte.gz")
    full = privacy_data(tmp_path)
    assert full.source == "mnist-60k" and full.sizes() == {"private": 10_000, "public": 5000, "test": 5000}
    with pytest.raises(PatchlabError, match="no such folder"):
        privacy_data(tmp_path / "missing")
