"""The benchmark's cell cache: a finished cell is reused (also under its older names), a cell is written tagged,
a file of another kind where a cell goes is refused before the cell runs; the markdown tables render."""

from __future__ import annotations

import json

import pytest

from patchlab.artifacts import OutputExists, identify
from patchlab.privacy.experiments import _cell, markdown


def test_cells_are_reused_tagged_and_guarded(tmp_path):
    calls = []

    def work():
        calls.append(1)
        return {"x": len(calls)}

    first = _cell(tmp_path, "speed", "a", work)
    assert first == {"cell": "a", "x": 1} and identify(tmp_path / "speed" / "a.privacy-cell.json").kind == \
        "privacy-bench-cell"
    assert _cell(tmp_path, "speed", "a", work) == first and len(calls) == 1  # reused, not rerun
    (tmp_path / "speed" / "b.json").write_text(json.dumps({"cell": "b", "x": 7}))  # an older version's name
    assert _cell(tmp_path, "speed", "b", work) == {"cell": "b", "x": 7} and len(calls) == 1
    (tmp_path / "speed" / "c.privacy-cell.json").write_text("not ours")
    with pytest.raises(OutputExists, match="cannot tell what wrote it"):
        _cell(tmp_path, "speed", "c", work)
    assert len(calls) == 1 and (tmp_path / "speed" / "c.privacy-cell.json").read_text() == "not ours"


def test_markdown_tables():
    speed = [{"model": "dpcnn", "batch_size": 256, "seconds": {"nonprivate": 2.0, "hooks": 5.0},
              "ratio": {"nonprivate": 1.0, "hooks": 2.5}, "cpu_ratio": {"nonprivate": 1.0, "hooks": 2.2}}]
    assert "| dpcnn | 256 | 2.00 | 5.00 (2.50x; 2.20x) |" in markdown("speed", speed)
    speed[0]["seconds"]["nonprivate-nchw"] = 4.0  # the NCHW baseline, shown for reference
    assert "| dpcnn | 256 | 2.00 (4.00) | 5.00 (2.50x; 2.20x) |" in markdown("speed", speed)
    dp = [{"variant": "v", "target_epsilon": None, "accuracy": 0.98},
          {"variant": "v", "target_epsilon": 2.0, "accuracy": 0.9, "epsilon": 1.99}]
    assert markdown("dpsgd", dp).splitlines()[-1] == "| v | 98.0% | 90.0% (ε 1.99) |"
