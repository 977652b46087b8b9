"""Packaging: the app from a wheel. Build patchlab's wheel, install it into a fresh venv outside the checkout, and
start `patchlab app` there from another folder: the health endpoint answers, its .streamlit/config.toml settings
apply, Home renders in a real browser, and `patchlab --help` lists every command.

Installing torch afresh would take minutes, so the fresh venv sees this venv's third-party packages through a .pth
line (a plain path: the editable patchlab finder of this venv is not run) and gets only the wheel, --no-deps.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from .browser import free_port, wait_idle

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def run(cmd: list, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}  # nothing from the checkout
    out = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{cmd} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
    return out


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> Path:
    """A fresh venv holding only the freshly built patchlab wheel (third-party packages seen through a .pth)."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"  # a copy: building in the checkout would leave build/ and *.egg-info there
    shutil.copytree(REPO / "patchlab", src / "patchlab", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", root / "dist", src], root)
    wheel = next((root / "dist").glob("patchlab-*.whl"))
    venv = root / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv], root)
    python = venv / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel], root)
    site = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], root).stdout.strip()
    (Path(site) / "_patchlab_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def test_wheel_runs_the_app_from_any_folder(wheel_venv, browser, tmp_path):
    start = time.perf_counter()
    elsewhere = tmp_path / "elsewhere"  # no checkout, no .streamlit folder here
    elsewhere.mkdir()
    python, patchlab = wheel_venv / "bin" / "python", wheel_venv / "bin" / "patchlab"
    where = run([python, "-c", "import patchlab; print(patchlab.__file__)"], elsewhere).stdout.strip()
    assert Path(where).is_relative_to(wheel_venv), f"patchlab imported from {where}, not from the wheel"

    # every command and group is listed
    helptext = run([patchlab, "--help"], elsewhere).stdout
    for command in ("attack", "attack-demo", "camera", "camera-report", "camera-scene", "models", "classify",
                    "accuracy", "perturb", "print", "sheet", "photo-eval", "simulate-photo", "app", "patch", "eot",
                    "bench", "calibrate"):
        assert f"│ {command} " in helptext, f"`patchlab --help` does not list {command}"

    # Streamlit reads the packaged config beside the entry point, whatever the working folder
    check = ("from streamlit import config; from patchlab.app import ENTRY; config._main_script_path = str(ENTRY); "
             "config.get_config_options(force_reparse=True); "
             "print(config.get_option('runner.postScriptGC'), config.get_option('server.maxUploadSize'), "
             "config.get_option('server.fileWatcherType'))")
    assert run([python, "-c", check], elsewhere).stdout.split() == ["False", "25", "none"]

    port = free_port()
    log = tmp_path / "app.log"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    with open(log, "w") as fh:
        proc = subprocess.Popen([str(patchlab), "app", "--headless", "--port", str(port)], cwd=elsewhere, env=env,
                                stdout=fh, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, proc, log)
        # browser.serverAddress = "localhost" in the packaged config: Streamlit prints one URL, no network address
        assert f"URL: http://localhost:{port}" in log.read_text() and "Network URL" not in log.read_text()
        _home_renders(browser, url)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    print(f"\nwheel test: {time.perf_counter() - start:.1f} s after the wheel was built and installed")


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    import urllib.request

    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"`patchlab app` exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=1) as r:
                if r.status == 200 and r.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"no health answer within {timeout} s: {log.read_text()[-2000:]}")


def _home_renders(browser, url: str) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        page.goto(url)
        wait_idle(page)
        assert page.locator("h1").filter(has_text="patchlab").count() == 1
        assert page.get_by_text("30-second tour").count() == 1
        assert page.locator("[data-testid='stException']").count() == 0
    finally:
        context.close()
