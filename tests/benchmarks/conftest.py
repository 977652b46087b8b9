"""`make bench` ends with one table of every benchmark target checked in the run (also written to
test-artifacts/benchmarks.md, with the date, the command and the load average)."""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

import torch

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    from patchlab.bench.targets import RESULTS

    if not RESULTS:
        return
    head = (f"Benchmark targets, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.machine()} "
            f"{os.cpu_count()} cores, torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}; "
            f"command: {' '.join(['pytest'] + sys.argv[1:])}")
    rows = ["| target | measured | required | status | note |", "|---|---|---|---|---|"] + [t.row() for t in RESULTS]
    met = sum(t.met for t in RESULTS)
    text = "\n".join([head, "", *rows, "", f"{met} of {len(RESULTS)} targets met"])
    terminalreporter.write_sep("=", "benchmark targets")
    terminalreporter.write_line(text)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "benchmarks.md").write_text(text + "\n")


def pytest_sessionfinish(session, exitstatus):
    """`patchlab bench` runs test-only benchmarks through pytest and reads their targets back from this file."""
    import json

    from patchlab.bench.targets import RESULTS

    path = os.environ.get("PATCHLAB_BENCH_TARGETS")
    if path:
        Path(path).write_text(json.dumps([{"name": t.name, "value": t.value, "op": t.op, "bound": t.bound,
                                           "unit": t.unit, "note": t.note} for t in RESULTS], default=float))
