"""Packaging: one OpenCV wheel, the console script, and a fast CLI start."""

import importlib.metadata as md
import subprocess
import sys
import time


def test_exactly_one_opencv_wheel():
    names = {d.metadata["Name"].lower() for d in md.distributions() if d.metadata["Name"]}
    opencv = sorted(n for n in names if n.startswith("opencv"))
    assert opencv == ["opencv-python-headless"], opencv


def test_console_script_help_is_fast():
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "patchlab", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "classify" in out.stdout and "accuracy" in out.stdout
    assert time.perf_counter() - start < 20
