"""`patchlab sweep`: the tiny grid on the process pool and on Ray gives the same cells; outputs are tagged and
merged; a sweep killed mid-run resumes without rerunning finished cells and equals an uninterrupted one; bad grids
fail with one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from patchlab.artifacts import identify
from patchlab.errors import PatchlabError
from tests.scale.conftest import ROOT, result_only


def test_pool_sweep_writes_cells_table_and_heatmap(pool_sweep, tiny_grid):
    out, merged = pool_sweep
    assert merged["status"] == "complete" and merged["executor"] == "pool"
    assert merged["cells_run"] == 4 and merged["cells_reused"] == 0
    cells = sorted((out / "cells").glob("*.cell.json"))
    assert [identify(p).kind for p in cells] == ["sweep-cell"] * 4
    assert identify(out / "grid.sweep.json").kind == "sweep-results"
    assert identify(out / "heatmap.sweep.png").kind == "sweep-heatmap"
    rows = (out / "table.sweep.csv").read_text().splitlines()
    assert rows[0].startswith("model,area,preset,defense,seed,success_rate") and len(rows) == 5
    assert (out / "table.sweep.md").read_text().count("| efficientnet_lite0 | print |") == 4
    for cell in merged["cells"]:
        assert cell["n"] == 4 and 0 <= cell["k"] <= 4 and cell["target_name"] == "toaster"
        assert cell["ci95"][0] <= cell["success_rate"] <= cell["ci95"][1]
    # the defense axis really changes the model: the blurred model sees other pixels, so p(toaster) moves
    prob = {(c["area"], c["defense"]): c["mean_target_prob"] for c in merged["cells"]}
    assert all(abs(prob[(a, "none")] - prob[(a, "blur5")]) > 1e-4 for a in (0.05, 0.10))
    # and rerunning the same grid runs nothing
    from patchlab.sweep import run_sweep

    again = run_sweep(tiny_grid, out, executor="pool", workers=1)
    assert again["cells_run"] == 0 and again["cells_reused"] == 4
    assert [result_only(c) for c in again["cells"]] == [result_only(c) for c in merged["cells"]]


def test_ray_sweep_equals_pool_sweep(pool_sweep, tiny_grid, tmp_path):
    """The command's own local Ray (2 CPUs, no dashboard), shut down at the end; the cells equal the pool's."""
    pytest.importorskip("ray", reason="Ray is the optional [cluster] extra")
    import ray

    from patchlab.sweep import run_sweep

    _, reference = pool_sweep
    merged = run_sweep(tiny_grid, tmp_path, executor="ray", workers=2)
    assert not ray.is_initialized()  # the Ray it started is gone again
    assert merged["executor"] == "ray" and merged["cells_run"] == 4
    assert {c["pid"] for c in merged["cells"]}.isdisjoint({os.getpid()})  # the cells ran in Ray workers
    assert [result_only(c) for c in merged["cells"]] == [result_only(c) for c in reference["cells"]]
    assert merged["pooled"] == reference["pooled"]


def _cli(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.Popen([sys.executable, "-m", "patchlab", "sweep", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            **kwargs)


def test_sweep_killed_mid_run_resumes_without_rerunning_finished_cells(pool_sweep, tiny_grid, tmp_path):
    _, reference = pool_sweep
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump(tiny_grid))
    out = tmp_path / "out"
    proc = _cli(str(grid), "--out", str(out), "--executor", "pool", "--workers", "1")
    deadline = time.monotonic() + 240
    while not list((out / "cells").glob("*.cell.json")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its pool worker, mid-sweep
    proc.communicate()
    finished = {p: p.read_bytes() for p in (out / "cells").glob("*.cell.json")}
    assert 1 <= len(finished) < 4, f"the kill should land mid-sweep, found {len(finished)} finished cells"
    from patchlab.sweep.cell import read_cell

    key = json.loads((out / "grid.sweep.json").read_text())["settings_key"]
    assert all(read_cell(p, key) is not None for p in finished)  # a kill leaves whole cells, never a torn one
    assert json.loads((out / "grid.sweep.json").read_text())["status"] == "running"

    proc = _cli(str(grid), "--out", str(out), "--executor", "pool", "--workers", "1", "--json")
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    merged = json.loads(stdout)
    assert merged["cells_reused"] == len(finished) and merged["cells_run"] == 4 - len(finished)
    assert all(p.read_bytes() == data for p, data in finished.items())  # finished cells were not rerun
    assert [result_only(c) for c in merged["cells"]] == [result_only(c) for c in reference["cells"]]


def test_bad_grids_fail_with_one_line(tiny_grid, tmp_path):
    from patchlab.sweep import SweepGrid, run_sweep

    cases = [({"models": ["efficientnet_lite9"]}, "did you mean 'efficientnet_lite"),
             ({"defenses": ["jpg"]}, "unknown defense 'jpg'"), ({"areas": [0.7]}, "areas must lie in (0, 0.5]"),
             ({"presets": ["prnt"]}, "prnt"), ({"seeds": []}, "seeds must list at least one value"),
             ({"aeras": [0.1]}, "unknown sweep setting 'aeras'; did you mean 'areas'"),
             ({"patch": str(tmp_path / "missing.png")}, "no such patch file")]
    for change, message in cases:
        with pytest.raises(PatchlabError, match=None) as info:
            SweepGrid.from_dict({**tiny_grid, **change}).check()
        assert message in str(info.value), (change, str(info.value))
    with pytest.raises(PatchlabError, match="executor=ray"):
        run_sweep(tiny_grid, tmp_path / "x", executor="pool", address="auto")
    # a folder holding a sweep of other settings is refused, and nothing there is touched
    (tmp_path / "o").mkdir()
    from patchlab.artifacts import write_json

    write_json(tmp_path / "o" / "grid.sweep.json", {"settings_key": "other"}, kind="sweep-results",
               written_by="patchlab sweep")
    with pytest.raises(PatchlabError, match="holds a sweep with other settings"):
        run_sweep(tiny_grid, tmp_path / "o", executor="pool")
    # the CLI: one line, exit 2, flags named as flags
    grid = tmp_path / "bad.yaml"
    grid.write_text(yaml.safe_dump({**tiny_grid, "models": ["efficientnet_lite9"]}))
    proc = _cli(str(grid), "--out", str(tmp_path / "cli"))
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 2 and stderr.strip().count("\n") == 0
    assert stderr.startswith("patchlab: error: unknown model 'efficientnet_lite9'")
