"""The benchmark machinery itself (default run, < 1 s): targets fail when missed, rounds interleave, and
`import patchlab` keeps freed memory mapped unless PATCHLAB_MALLOC=default."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from patchlab.bench.targets import Target, check_targets, format_targets
from patchlab.bench.timing import best, interleaved


def test_targets_fail_when_missed_and_name_every_miss():
    ok = [Target("a", 0.5, "<=", 0.7, "x"), Target("b", 3.0, ">=", 2.0), Target("c", 1.05, "within", (0.9, 1.1))]
    check_targets(ok)
    bad = [Target("speed", 0.71, "<=", 0.7, "x"), Target("rate", 19.9, ">=", 20.0), Target("nan", float("nan"), ">=", 0),
           Target("none", None, "<=", 1.0), Target("band", 1.12, "within", (0.9, 1.1))]
    assert not any(t.met for t in bad)
    with pytest.raises(AssertionError) as info:
        check_targets(ok + bad)
    assert all(t.name in str(info.value) for t in bad) and "a = " not in str(info.value)
    table = format_targets(bad, record=False)
    assert table.count("**MISSED**") == len(bad)


def test_interleaved_runs_contenders_round_robin_and_keeps_the_best():
    order = []
    samples = interleaved({"x": lambda: order.append("x"), "y": lambda: order.append("y")}, rounds=3, warmup=1,
                          clock=iter(range(100)).__next__)
    assert order == ["x", "y"] + ["x", "y"] * 3
    assert {k: len(v) for k, v in samples.items()} == {"x": 3, "y": 3}
    assert best({"x": [3.0, 1.0, 2.0]}) == {"x": 1.0}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning is Linux-only")
def test_import_tunes_malloc_unless_opted_out():
    code = "import patchlab, patchlab._malloc as m; print(m.tuned)"
    env = dict(os.environ)
    env.pop("PATCHLAB_MALLOC", None)
    on = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    off = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(env, PATCHLAB_MALLOC="default"), check=True)
    assert on.stdout.strip() == "True" and off.stdout.strip() == "False"
