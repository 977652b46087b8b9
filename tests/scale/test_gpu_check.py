"""scripts/gpu_check.sh runs end to end: `--smoke --device cpu` is the GPU check's code path (fine-tune from the
shipped patch, score held-out images at 10% area under print, time training and inference, write the JSON) at a
size that takes seconds. The real run needs a CUDA machine (docs/scale.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from patchlab.artifacts import identify
from tests.scale.conftest import ROOT


def test_gpu_check_script_smoke_on_cpu(imagenet_dir, tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OMP_WAIT_POLICY": "PASSIVE",
           "PATCHLAB_SHARED_DATA": str(imagenet_dir.parent)}
    out = tmp_path / "gpu"
    proc = subprocess.run([str(ROOT / "scripts" / "gpu_check.sh"), "--smoke", "--device", "cpu", "--out", str(out),
                           "--json"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(proc.stdout)
    assert r["smoke"] and r["device"] == "cpu" and r["steps"] == 2 and r["batch"] == 4
    assert r["steps_per_s"] > 0 and r["live_fps"] > 0 and r["batched_images_per_s"] > 0
    assert r["n"] == 8 and 0 <= r["success_rate"] <= 1 and r["shipped"]["n"] == 8
    assert identify(out / "gpu_check.gpu.json").kind == "gpu-check"
    assert identify(out / "toaster_gpu.png").kind == "patch"
    saved = json.loads((out / "gpu_check.gpu.json").read_text())
    assert saved["success_rate"] == r["success_rate"] and saved["goal"] == 0.9
