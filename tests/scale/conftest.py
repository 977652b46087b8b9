"""A tiny sweep grid (4 cells: 2 areas x 2 defenses, 4 held-out images each) and a defense plugin module that
registers a real input transform, importable by pool and Ray workers alike."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PATCH = ROOT / "printables" / "toaster_efficientnet_lite0.png"

PLUGIN = '''
import torch.nn as nn
import torch.nn.functional as F

from patchlab.sweep.defenses import DEFENSES, Defended


class Blur(nn.Module):
    def forward(self, x):
        return F.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False)


if "blur5" not in DEFENSES:
    DEFENSES.register("blur5", lambda model: Defended(model, Blur(), "blur5"), title="5x5 box blur")
'''


@pytest.fixture(scope="session")
def plugin_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sweep_plugin")
    (folder / "sweep_blur_plugin.py").write_text(PLUGIN)
    sys.path.insert(0, str(folder))  # this process and spawned pool workers (they inherit sys.path)
    # Ray workers and CLI subprocesses read PYTHONPATH
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(folder), str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return folder


@pytest.fixture(scope="session")
def tiny_grid(imagenet_dir, plugin_dir) -> dict:
    return {"patch": str(PATCH), "images": str(imagenet_dir), "models": ["efficientnet_lite0"], "areas": [0.05, 0.10],
            "presets": ["print"], "defenses": ["none", "blur5"], "seeds": [3], "limit": 4, "device": "cpu",
            "plugins": ["sweep_blur_plugin"]}


@pytest.fixture(scope="session")
def pool_sweep(tiny_grid, tmp_path_factory) -> tuple[Path, dict]:
    """The tiny grid run once, uninterrupted, on a one-process pool: the reference the other runs must equal."""
    from patchlab.sweep import run_sweep

    out = tmp_path_factory.mktemp("sweep_pool")
    return out, run_sweep(tiny_grid, out, executor="pool", workers=1)


def result_only(cell: dict) -> dict:
    from patchlab.sweep.cell import TIMING_KEYS

    return {k: v for k, v in cell.items() if k not in TIMING_KEYS}
