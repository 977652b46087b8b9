"""Fixtures of the poisoning tests: one small dog-vs-fish task (real Lite0 features of the shared photos), with its
feature cache in a per-session temporary folder so every run computes them (the default-run time is honest)."""

from __future__ import annotations

import os

import pytest

from patchlab.poisoning.task import TaskConfig

SMALL = TaskConfig(("dog", "fish"), train_per_class=24, test_per_class=8, max_sources=4)


@pytest.fixture(scope="session")
def poison_cache(tmp_path_factory):
    """A fresh feature cache for this session; also $PATCHLAB_CACHE, so the app tests (in-process) share it."""
    root = tmp_path_factory.mktemp("patchlab-cache")
    old = os.environ.get("PATCHLAB_CACHE")
    os.environ["PATCHLAB_CACHE"] = str(root)
    yield root
    if old is None:
        os.environ.pop("PATCHLAB_CACHE", None)
    else:
        os.environ["PATCHLAB_CACHE"] = old


@pytest.fixture(scope="session")
def small_task(imagenet_dir, lite0, poison_cache):
    from patchlab.poisoning.task import build_task

    return build_task(imagenet_dir, lite0, SMALL)


@pytest.fixture(scope="session")
def small_clean(small_task):
    from patchlab.poisoning.koh_liang import train_clean

    return train_clean(small_task)
