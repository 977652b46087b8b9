"""Shared fixtures: real models and real images, loaded once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from patchlab.data import shared_data_dir

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = shared_data_dir()
    if root is None:
        pytest.skip("shared data (../shared/data with imagenet-sample/) is absent")
    return root


@pytest.fixture(scope="session")
def imagenet_dir(shared_data) -> Path:
    return shared_data / "imagenet-sample"


@pytest.fixture(scope="session")
def mnist_dir(shared_data) -> Path:
    path = shared_data / "mnist"
    if not path.is_dir():
        pytest.skip("shared data has no mnist/ folder")
    return path


@pytest.fixture(scope="session")
def lite0():
    from patchlab.models import load_model

    return load_model("efficientnet_lite0", "cpu")


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
