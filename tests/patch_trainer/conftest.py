"""Fixtures for the trainer tests: 8 shared ImageNet photos (not toasters) in a labelled folder of their own."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def scenes(tmp_path_factory, imagenet_dir):
    from patch_trainer.scenarios import scene_folders

    labelled, _ = scene_folders(imagenet_dir, tmp_path_factory.mktemp("scenes"))
    return labelled
