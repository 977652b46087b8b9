"""Fixtures for the outputs tests: a small labelled scene folder made from the built-in photos (no shared data
needed), and a runner for the CLI in the current folder."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def builtin_scenes(tmp_path_factory) -> Path:
    """The four built-in photos as `<wnid>_<name>.png` (labelled ImageNet-style)."""
    from patchlab.data import imagenet_classes, load_samples, save_image

    folder = tmp_path_factory.mktemp("scenes")
    wnids = imagenet_classes().wnids
    for sample in load_samples():
        save_image(sample.image, folder / f"{wnids[sample.label]}_{sample.name}.png")
    return folder


@pytest.fixture
def cli(capsys):
    """cli(*args) -> (exit code, stdout, stderr) of `patchlab args...` run in-process."""
    from patchlab.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
