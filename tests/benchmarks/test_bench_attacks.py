"""Attack speed, side by side in one run (`patchlab.bench.attacks`, also run by `patchlab bench`): PGD-Linf per
step against torchattacks, ART and the bare forward+backward; C&W-L2 time to torchattacks' success rate.

    .venv/bin/python -m pytest -m benchmark -s tests/benchmarks/test_bench_attacks.py
    BENCH_STEPS=5 BENCH_ROUNDS=5 BENCH_CW_BATCH=8 BENCH_CW_FULL=1 ...
"""

from __future__ import annotations

import os

import pytest

from patchlab.bench.targets import check_targets, format_targets

pytestmark = pytest.mark.benchmark

STEPS = int(os.environ.get("BENCH_STEPS", 5))
ROUNDS = max(3, int(os.environ.get("BENCH_ROUNDS", 5)))


@pytest.fixture(scope="module")
def setup(imagenet_dir):
    from patchlab.bench.attacks import attack_setup

    return attack_setup(imagenet_dir)


def test_pgd_step_time(setup):
    from patchlab.bench.attacks import bench_pgd

    m = bench_pgd(setup, steps=STEPS, rounds=ROUNDS)
    print(f"\nload {os.getloadavg()[0]:.1f}\n{m.table}")
    print(format_targets(m.targets))
    check_targets(m.targets)


def test_cw_time_to_torchattacks_success(setup):
    from patchlab.bench.attacks import BATCH, bench_cw

    m = bench_cw(setup, n=int(os.environ.get("BENCH_CW_BATCH", BATCH)), rounds=max(3, ROUNDS - 2),
                 full=os.environ.get("BENCH_CW_FULL") == "1")
    print(f"\n{m.table}")
    print(format_targets(m.targets))
    check_targets(m.targets)
