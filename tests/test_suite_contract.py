"""The test suite's own contract: missing shared data is a banner (or, under CI, an error), never a silent green;
`make test` waits for apt's lock and then says what to do; tests write only under test-artifacts/."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


XDIST = ["-n", "2", "--dist", "loadfile"]  # what `make test` adds


def _run_pytest(folder: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("CI", "PATCHLAB_REQUIRE_DATA", "PYTEST_ADDOPTS")
             and not k.startswith("PYTEST_XDIST")}
    clean.update(PYTHONPATH=str(REPO), PATCHLAB_SHARED_DATA=str(folder / "no-such-data"), **env)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args, "--rootdir",
                           str(folder), str(folder)], capture_output=True, text=True, timeout=120, env=clean,
                          cwd=folder)


@pytest.fixture(scope="module")
def mini_suite(tmp_path_factory) -> Path:
    """The real tests/conftest.py with one test that needs the shared data and one that does not."""
    folder = tmp_path_factory.mktemp("suite")
    shutil.copy(REPO / "tests" / "conftest.py", folder / "conftest.py")
    (folder / "test_mini.py").write_text("def test_needs_data(imagenet_dir):\n    assert imagenet_dir.is_dir()\n\n\n"
                                         "def test_plain():\n    assert True\n")
    return folder


def test_missing_data_skips_with_a_banner_at_the_top(mini_suite):
    out = _run_pytest(mini_suite)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    banner = [i for i, line in enumerate(lines) if line.startswith("patchlab: shared data not found")]
    assert banner, out.stdout
    assert "1 of 2 tests will be SKIPPED" in lines[banner[0]] and "PATCHLAB_REQUIRE_DATA=1" in lines[banner[0]]
    result = [i for i, line in enumerate(lines) if "1 passed, 1 skipped" in line]
    assert result and banner[0] < result[0], out.stdout  # before the results, not buried in the summary


def test_missing_data_fails_the_run_under_ci(mini_suite):
    out = _run_pytest(mini_suite, CI="true")
    assert out.returncode == pytest.ExitCode.USAGE_ERROR, out.stdout + out.stderr
    errors = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("ERROR: patchlab: shared data not found"), out.stderr
    assert "1 of the 2 selected tests need it" in errors[0] and "passed" not in out.stdout


def test_makefile_runs_the_suite_on_two_xdist_workers():
    assert f"pytest -q {' '.join(XDIST)}" in (REPO / "Makefile").read_text()


def test_missing_data_under_xdist_is_a_banner_or_one_error(mini_suite):
    """`make test`'s parallel run keeps both promises, though its workers collect out of sight."""
    out = _run_pytest(mini_suite, *XDIST)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("patchlab: shared data not found") and "will be SKIPPED" in lines[0], out.stdout
    assert "1 passed, 1 skipped" in out.stdout
    out = _run_pytest(mini_suite, *XDIST, CI="true")
    assert out.returncode == pytest.ExitCode.USAGE_ERROR, out.stdout + out.stderr
    errors = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("ERROR: patchlab: shared data not found"), out.stderr
    assert "passed" not in out.stdout and "INTERNALERROR" not in out.stdout + out.stderr


@pytest.mark.parametrize("args", [(), tuple(XDIST)], ids=["serial", "xdist"])
def test_a_stray_write_fails_the_run(tmp_path, args):
    """A test that writes beside the suite instead of under test-artifacts/ fails the run, serial or parallel (an
    xdist worker's guard reports to the controller)."""
    folder = tmp_path / "suite"
    folder.mkdir()
    shutil.copy(REPO / "tests" / "conftest.py", folder / "conftest.py")  # its ROOT is tmp_path
    (folder / "test_stray.py").write_text("from pathlib import Path\n\n\ndef test_writes_a_stray_file():\n"
                                          "    (Path(__file__).parent / 'stray.txt').write_text('x')\n\n\n"
                                          "def test_plain():\n    assert True\n")
    out = _run_pytest(folder, *args)
    assert out.returncode == pytest.ExitCode.TESTS_FAILED, out.stdout + out.stderr
    assert "2 passed" in out.stdout
    assert "patchlab: tests wrote 1 file(s) outside test-artifacts/: " in out.stdout, out.stdout
    assert os.path.join("suite", "stray.txt") in out.stdout


def _load(relative: str):
    """A file of the test suite as a plain module (pytest has already imported torch, so this is cheap)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_patchlab_copy_" + Path(relative).stem, REPO / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def _conftest():
    module = _load("tests/conftest.py")
    module.WRITES.active = False  # the copy's own guard: the session's real one is already watching
    return module


@pytest.mark.parametrize("env,required", [({"CI": "true"}, True), ({"CI": "1"}, True), ({"CI": "false"}, False),
                                          ({"PATCHLAB_REQUIRE_DATA": "1"}, True), ({}, False)])
def test_which_environments_require_the_data(monkeypatch, env, required):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("PATCHLAB_REQUIRE_DATA", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert _conftest().data_required() is required


def test_required_data_only_blocks_selections_that_need_it(monkeypatch, tmp_path):
    from types import SimpleNamespace

    conftest = _conftest()
    monkeypatch.setenv("PATCHLAB_SHARED_DATA", str(tmp_path / "absent"))
    monkeypatch.setenv("PATCHLAB_REQUIRE_DATA", "1")
    plain, needs = SimpleNamespace(fixturenames=["tmp_path"]), SimpleNamespace(fixturenames=["lite0", "shared_data"])
    config = SimpleNamespace(stash=pytest.Stash())
    conftest.pytest_collection_modifyitems(config, [plain])          # nothing selected needs the data: runs
    assert conftest.pytest_report_collectionfinish(config) == []
    with pytest.raises(pytest.UsageError, match="1 of the 2 selected tests need it"):
        conftest.pytest_collection_modifyitems(config, [plain, needs])
    # only mnist/ missing: just the tests that use mnist_dir are affected
    (tmp_path / "data" / "imagenet-sample").mkdir(parents=True)
    monkeypatch.setenv("PATCHLAB_SHARED_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("PATCHLAB_REQUIRE_DATA")
    monkeypatch.delenv("CI", raising=False)
    digits = SimpleNamespace(fixturenames=["mnist_dir", "shared_data"])
    conftest.pytest_collection_modifyitems(config, [plain, needs, digits])
    [banner] = conftest.pytest_report_collectionfinish(config)
    assert "has no mnist/ folder: 1 of 3 tests will be SKIPPED" in banner


# -- apt's lock ---------------------------------------------------------------------------------------------------------
FAKE_APT = """#!/usr/bin/env bash
n=$(cat "$FAKE_COUNT" 2>/dev/null || echo 0); n=$((n + 1)); echo $n > "$FAKE_COUNT"
echo "$*" >> "$FAKE_COUNT.calls"
if [ "$n" -le "$FAKE_LOCKED_CALLS" ]; then
  echo "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 4242 (unattended-upgr)" >&2
  echo "E: Unable to acquire the dpkg frontend lock (/var/lib/dpkg/lock-frontend), is another process using it?" >&2
  exit 100
fi
echo "fake apt-get $*"
"""


def _apt_install(tmp_path: Path, locked_calls: int, timeout_s: int) -> tuple[subprocess.CompletedProcess, float, list]:
    fake = tmp_path / "apt-get"
    fake.write_text(FAKE_APT)
    fake.chmod(0o755)
    env = dict(os.environ, APT_GET=str(fake), APT_LOCK_TIMEOUT=str(timeout_s), APT_LOCK_POLL="0.1",
               FAKE_COUNT=str(tmp_path / "count"), FAKE_LOCKED_CALLS=str(locked_calls))
    if os.geteuid() != 0:  # the script would prefix sudo; a stand-in that just runs the command
        shim = tmp_path / "bin"
        shim.mkdir()
        (shim / "sudo").write_text('#!/bin/sh\nexec "$@"\n')
        (shim / "sudo").chmod(0o755)
        env["PATH"] = f"{shim}:{env['PATH']}"
    start = time.perf_counter()
    out = subprocess.run([str(REPO / "scripts" / "apt-install.sh"), "chromium"], capture_output=True, text=True,
                         timeout=60, env=env)
    calls = (tmp_path / "count.calls").read_text().splitlines()
    return out, time.perf_counter() - start, calls


def test_apt_install_waits_for_the_lock_then_installs(tmp_path):
    out, _, calls = _apt_install(tmp_path, locked_calls=3, timeout_s=30)
    assert out.returncode == 0, out.stderr
    assert "apt is locked (held by process 4242 (unattended-upgr)); waiting up to 30 s" in out.stderr
    assert calls[:4] == ["update -q"] * 4 and calls[4].endswith("install -y -q chromium") and len(calls) == 5


def test_apt_install_gives_up_after_its_timeout_and_says_what_to_do(tmp_path):
    out, seconds, _ = _apt_install(tmp_path, locked_calls=10_000, timeout_s=1)
    assert out.returncode != 0
    assert 1.0 <= seconds < 15
    assert "patchlab: apt is still locked after 1 s (held by process 4242 (unattended-upgr))" in out.stderr
    assert "apt-get install chromium" in out.stderr and "APT_LOCK_TIMEOUT" in out.stderr


def test_makefile_installs_chromium_through_the_lock_wait():
    makefile = (REPO / "Makefile").read_text()
    assert "scripts/apt-install.sh chromium" in makefile and "\nscreenshots:" in makefile


# -- tests write only under test-artifacts/ -----------------------------------------------------------------------------
def test_write_guard_flags_writes_outside_test_artifacts(tmp_path):
    """The guard in tests/conftest.py (an audit hook) sees real opens for writing, and only those outside the
    allowed folders count."""
    guard = _conftest().WriteGuard(tmp_path, ["test-artifacts"])
    sys.addaudithook(guard)
    try:
        (tmp_path / "docs").mkdir()
        (tmp_path / "test-artifacts").mkdir()
        (tmp_path / "docs" / "shot.png").write_bytes(b"x")                 # outside: flagged
        (tmp_path / "test-artifacts" / "shot.png").write_bytes(b"x")       # allowed
        os.close(os.open(tmp_path / "docs" / "raw.bin", os.O_WRONLY | os.O_CREAT))   # os.open counts too
        (tmp_path / "docs" / "shot.png").read_bytes()                      # reading is fine
        from PIL import Image

        Image.new("RGB", (4, 4)).save(tmp_path / "docs" / "pil.png")       # library writes count
    finally:
        guard.active = False
    assert guard.written == {os.path.join("docs", "shot.png"), os.path.join("docs", "raw.bin"),
                             os.path.join("docs", "pil.png")}


def test_docs_screenshots_are_copied_only_on_request(monkeypatch, tmp_path):
    browser = _load("tests/e2e/browser.py")
    shot = tmp_path / "home.png"
    shot.write_bytes(b"png")
    monkeypatch.setattr(browser, "REPO", tmp_path)
    monkeypatch.setattr(browser, "DOCS_SHOTS", None)
    browser._publish(shot, docs=True)
    assert not (tmp_path / "docs").exists()
    monkeypatch.setattr(browser, "DOCS_SHOTS", "docs/screenshots")
    browser._publish(shot, docs=True)
    assert (tmp_path / "docs" / "screenshots" / "home.png").read_bytes() == b"png"
