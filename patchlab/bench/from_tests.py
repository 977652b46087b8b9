"""Benchmarks that only exist as pytest files in a source checkout (tests/benchmarks/test_bench_*.py), run by
`patchlab bench` through pytest in a subprocess: the browser benchmark, whose harness (Playwright, the fake camera)
lives with the e2e tests, and any topic benchmark no library module registers yet. The file's targets come back
through tests/benchmarks/conftest.py, which writes every checked Target to $PATCHLAB_BENCH_TARGETS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from patchlab.bench.suite import BENCHMARKS, Benchmark, Measured
from patchlab.bench.targets import Target

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests" / "benchmarks"
IN_CHECKOUT = (REPO / "pyproject.toml").is_file() and TESTS.is_dir()  # not an installed wheel
TAIL_LINES = 40


def run_test_file(path: Path, env: dict[str, str] | None = None, timeout: float = 1800) -> Measured:
    """Run one benchmark test file; its targets, and the tail of its output as the table."""
    with tempfile.TemporaryDirectory(prefix="patchlab-bench-") as tmp:
        out = Path(tmp) / "targets.json"
        full_env = {**os.environ, "PATCHLAB_BENCH_TARGETS": str(out), **(env or {})}  # the caller's OpenMP settings
        full_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-m", "benchmark", "-p", "no:cacheprovider",
                               str(path)], cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout)
        rows = json.loads(out.read_text()) if out.is_file() else []
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-TAIL_LINES:])
    if not rows:
        last = tail.splitlines()[-1] if tail else ""
        raise RuntimeError(f"{path.name}: pytest exited {proc.returncode} without checking a target ({last})")
    targets = [Target(r["name"], r["value"], r["op"], tuple(r["bound"]) if isinstance(r["bound"], list) else r["bound"],
                      r["unit"], r["note"]) for r in rows]
    return Measured(targets, "```\n" + tail + "\n```", {"returncode": proc.returncode, "file": str(path)})


def _register_file(name: str, path: Path, title: str, needs: tuple[str, ...] = (), quick: bool = False,
                   quick_env: dict[str, str] | None = None) -> None:
    def run(quick_mode: bool, images=None) -> Measured:
        return run_test_file(path, quick_env if quick_mode else None)

    if name not in BENCHMARKS:
        BENCHMARKS.register(name, Benchmark(name, title, run, needs, data=False, quick=quick), title=title)


# the browser benchmark: a real Chromium through Playwright, the page's WebRTC stream (needs chromium on PATH)
BROWSER = TESTS / "test_bench_live_browser.py"
if IN_CHECKOUT and BROWSER.is_file():
    _register_file("browser-camera", BROWSER, "Live camera page in Chromium: processed FPS from a 30 fps camera",
                   needs=("playwright", "streamlit_webrtc"), quick=True, quick_env={"LIVE_BENCH_SECONDS": "8"})

# library-registered benchmarks name their test file here; any other test_bench_*.py runs through pytest
COVERED = {"test_bench_models.py", "test_bench_attacks.py", "test_bench_patch.py", "test_bench_camera.py",
           "test_bench_distributed.py", "test_bench_live_browser.py"}


def register_uncovered() -> None:
    if not IN_CHECKOUT:
        return
    for path in sorted(TESTS.glob("test_bench_*.py")):
        if path.name not in COVERED:
            stem = path.stem.removeprefix("test_bench_").replace("_", "-")
            _register_file(stem, path, f"{stem} (tests/benchmarks/{path.name}, via pytest)")


register_uncovered()
