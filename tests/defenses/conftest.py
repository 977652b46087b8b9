"""Fixtures for the defense tests: a small MNIST MLP trained once per session (seconds), the shared held-out
ImageNet images."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def mnist_parts(mnist_dir):
    from patchlab.data import load_mnist, split_digits

    return split_digits(load_mnist(mnist_dir), {"train": 3000, "test": -1}, seed=0)


@pytest.fixture(scope="session")
def mnist_mlp(mnist_parts):
    """An MLP trained with PatchCleanser's masking augmentation (two black 12 px holes per digit), so that a
    good share of digits can be certified against 4 px patches with 3 x 3 masks."""
    from patchlab.defenses.masking import cutout_loss
    from patchlab.models.digits import fit, make_digits_model

    net = make_digits_model("mlp", size=28, seed=0, hidden=128)
    tr = mnist_parts["train"]
    fit(net, tr.images, tr.labels, epochs=6, batch_size=64, lr=2e-3, loss_fn=cutout_loss(2, 12, 0.0))
    return net.eval().requires_grad_(False)


@pytest.fixture(scope="session")
def heldout_imagenet(imagenet_dir):
    from patchlab.defenses.data import load_images, shared_split

    data = shared_split(imagenet_dir, "heldout", limit=6)
    return load_images(data.paths, 224), data.labels
