"""`patchlab bench`: every benchmark the project defines is registered; one table of targets, JSON and markdown;
a missed target, a benchmark that cannot run or one that fails makes the command exit non-zero (toy benchmarks
stand in for the real ones, which take minutes: `make bench`, `patchlab bench --quick`)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from patchlab.bench.suite import BENCHMARKS, Benchmark, Measured, load_benchmarks, run_benchmarks, to_markdown
from patchlab.bench.targets import Target
from patchlab.registry import Registry


def test_every_benchmark_file_is_registered():
    from patchlab.bench.from_tests import COVERED, TESTS

    names = set(load_benchmarks())
    assert {"models", "pgd", "cw", "eot-patch", "camera", "distributed", "browser-camera"} <= names
    files = {p.name for p in TESTS.glob("test_bench_*.py")}
    registered_from_tests = {n for n in names if BENCHMARKS.get(n).title.endswith("via pytest)")}
    assert len(files - COVERED) == len(registered_from_tests)  # any other benchmark file runs through pytest


@pytest.fixture()
def toys(monkeypatch):
    registry = Registry("benchmark")

    def make(value: float, fail: bool = False):
        def run(quick, images):
            if fail:
                raise RuntimeError("broke")
            return Measured([Target("speed-up", value, ">=", 2.0, "x")], "| a | b |", {"quick": quick})
        return run

    for name, bench in {"fast": Benchmark("fast", "meets", make(3.0), data=False),
                        "slow": Benchmark("slow", "misses", make(1.5), data=False),
                        "broken": Benchmark("broken", "raises", make(0, fail=True), data=False),
                        "absent": Benchmark("absent", "competitor missing", make(3.0), needs=("no_such_module_xyz",),
                                            data=False),
                        "full-only": Benchmark("full-only", "not quick", make(3.0), data=False, quick=False)}.items():
        registry.register(name, bench, title=bench.title)
    monkeypatch.setattr("patchlab.bench.suite.BENCHMARKS", registry)
    monkeypatch.setattr("patchlab.bench.suite.PROVIDERS", ())
    return registry


def test_run_reports_met_missed_failed_and_not_run(toys):
    r = run_benchmarks(quick=True)
    assert [b["name"] for b in r["benchmarks"]] == ["fast", "slow", "broken", "absent"]  # full-only: not quick
    status = {b["name"]: b["status"] for b in r["benchmarks"]}
    assert status == {"fast": "ran", "slow": "ran", "broken": "failed", "absent": "not run"}
    assert r["met"] == 1 and r["missed"] == 1 and r["not_run"] == ["broken", "absent"] and not r["ok"]
    md = to_markdown(r)
    assert md.count("**MISSED**") == 1 and "**FAILED**" in md and "no_such_module_xyz" in md
    assert run_benchmarks(["fast"])["ok"]


def test_cli_exit_code_json_and_markdown(toys, tmp_path, capsys):
    from patchlab.artifacts import identify
    from patchlab.cli import app

    runner = CliRunner()
    ok = runner.invoke(app, ["bench", "--only", "fast", "--json", str(tmp_path / "r.bench.json"), "--markdown"])
    assert ok.exit_code == 0, ok.output
    assert "| fast | speed-up | 3 x | >= 2 x | met |" in ok.output
    assert identify(tmp_path / "r.bench.json").kind == "bench-results"
    assert json.loads((tmp_path / "r.bench.json").read_text())["met"] == 1
    missed = runner.invoke(app, ["bench", "--only", "fast", "--only", "slow"])
    assert missed.exit_code == 1 and "MISSED" in missed.output
    from patchlab.cli import main

    assert main(["bench", "--only", "fast", "--json", str(tmp_path / "r.bench.json")]) == 2
    assert "--force replaces it" in capsys.readouterr().err  # its own earlier JSON needs --force
    assert main(["bench", "--only", "fast", "--json", str(tmp_path / "r.bench.json"), "--force"]) == 0
    assert main(["bench", "--only", "slow"]) == 1  # what the shell sees: a missed target fails the command
