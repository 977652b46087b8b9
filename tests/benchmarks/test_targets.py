"""The benchmark machinery itself (default run, < 1 s): targets fail when missed, rounds interleave, and
`import patchlab` keeps freed memory mapped unless PATCHLAB_MALLOC=default."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from patchlab.bench.targets import Target, check_targets, format_targets
from patchlab.bench.timing import best, interleaved, step_intervals


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


def test_step_intervals_time_each_step_between_forward_calls_and_refuse_miscounted_loops():
    import torch

    net, ticks, order = torch.nn.Identity(), iter(range(0, 10_000, 1)), []

    def loop(name, cost, calls_per_step=1):  # one forward per step; the fake clock advances `cost` per call
        def run(n):
            order.append((name, n))
            for _ in range(n * calls_per_step):
                for _ in range(cost - 1):
                    next(ticks)
                net(torch.zeros(1))
        return run

    samples = step_intervals(net, {"a": loop("a", 3), "b": loop("b", 5)}, steps=4, rounds=3, clock=ticks.__next__)
    assert samples == {"a": [3] * 9, "b": [5] * 9}  # steps - 1 intervals a round, the warm-up (2 steps) not counted
    assert [o[0] for o in order if o[1] == 4] == ["a", "b", "b", "a", "a", "b"]  # order reversed every other round
    assert not net._forward_pre_hooks
    with pytest.raises(RuntimeError, match="1 model calls for 4 steps"):
        step_intervals(net, {"short": lambda n: net(torch.zeros(1)) if n > 2 else None}, steps=4, rounds=1)


def test_median_ratio_interval_separates_a_tie_from_a_slower_loop():
    import numpy as np

    from patchlab.stats import median_ratio_interval

    rng = np.random.default_rng(1)
    base = lambda n, scale: 0.100 * scale * (1 + rng.gamma(2.0, 0.03, n))  # noqa: E731 - skewed like step times
    for _ in range(5):
        ratio, low, high = median_ratio_interval(base(45, 1.0), base(45, 1.0))
        assert low <= 1.0 <= high and low < ratio < high
        _, low, _ = median_ratio_interval(base(45, 1.07), base(45, 1.0))  # the original 7% gap
        assert low > 1.0
    with pytest.raises(ValueError):
        median_ratio_interval([1.0], [1.0, 2.0])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning is Linux-only")
def test_import_tunes_malloc_unless_opted_out():
    code = "import patchlab, patchlab._malloc as m; print(m.tuned)"
    env = dict(os.environ)
    env.pop("PATCHLAB_MALLOC", None)
    on = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    off = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(env, PATCHLAB_MALLOC="default"), check=True)
    assert on.stdout.strip() == "True" and off.stdout.strip() == "False"
