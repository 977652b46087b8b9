"""MNIST parts: the shared 10k test set split in disjoint parts, or a folder with the 60k training files."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from patchlab.errors import PatchlabError
from patchlab.transfer.data import mnist_parts


def write_idx(path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


@pytest.fixture
def full_folder(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n, offset in (("train", 60, 0), ("t10k", 20, 100)):
        images = rng.integers(0, 256, (n, 28, 28))
        images[:, 0, 0] = np.arange(n) + offset  # a tag: which file and which row each image came from
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return tmp_path


def tags(d) -> set[int]:
    return set((d.images[:, 0, 0, 0] * 255).round().long().tolist())


def test_training_files_feed_the_training_side_parts(full_folder):
    p = mnist_parts({"victim": 25, "attacker": 25, "test": -1}, full_folder, seed=0)
    assert len(p["victim"]) == len(p["attacker"]) == 25 and len(p["test"]) == 20
    assert tags(p["victim"]) | tags(p["attacker"]) <= set(range(60))
    assert not tags(p["victim"]) & tags(p["attacker"])
    assert tags(p["test"]) == set(range(100, 120))  # the official test set, whole
    assert len(mnist_parts({"a": 10, "test": 5}, full_folder)["test"]) == 5


def test_test_set_only_is_split(full_folder, tmp_path_factory):
    only = tmp_path_factory.mktemp("t10k")
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (only / name).write_bytes((full_folder / name).read_bytes())
    p = mnist_parts({"victim": 8, "test": -1}, only, seed=1)
    assert len(p["victim"]) == 8 and len(p["test"]) == 12
    assert tags(p["victim"]) | tags(p["test"]) == set(range(100, 120))
    again = mnist_parts({"victim": 8, "test": -1}, only, seed=1)
    assert torch.equal(again["victim"].images, p["victim"].images)
    with pytest.raises(PatchlabError, match="no such MNIST folder"):
        mnist_parts({"a": 1}, only / "missing")
