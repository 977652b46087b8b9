"""A writer killed with SIGKILL in the middle of writing leaves the previous file whole (issue 21).

A child process writes version A of a file, then starts writing version B through patchlab's writer; its file
writes are slowed to 64 KiB chunks so that the kill lands mid-write for certain (the child says when the first chunk
is out). The parent kills it there and checks the file still holds exactly version A. The control does the same with
a plain write to the target itself, and must find a truncated file: the kill really lands mid-write.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

CHILD = textwrap.dedent(r"""
    import json, pathlib, sys, time
    import numpy as np

    writer, target = sys.argv[1], pathlib.Path(sys.argv[2])
    chunk = 1 << 16
    slow = {"on": False}
    real_write_bytes, real_write_text = pathlib.Path.write_bytes, pathlib.Path.write_text

    def slow_write_bytes(self, data):
        if not slow["on"]:
            return real_write_bytes(self, data)
        with open(self, "wb") as fh:
            for i in range(0, len(data), chunk):
                fh.write(data[i:i + chunk])
                fh.flush()
                if i == 0:
                    print("mid", flush=True)   # the first chunk is on disk: kill now
                time.sleep(0.05)
        return len(data)

    def slow_write_text(self, text, encoding=None, errors=None, newline=None):
        return slow_write_bytes(self, text.encode(encoding or "utf-8"))

    pathlib.Path.write_bytes, pathlib.Path.write_text = slow_write_bytes, slow_write_text

    def version(v):
        rng = np.random.default_rng(v)
        if writer in ("save_image", "plain"):
            return rng.integers(0, 256, (400, 400, 3), dtype=np.uint8)   # ~480 KB of PNG
        if writer == "write_json":
            return {"version": v, "rows": rng.random(20000).tolist()}
        return bytes(rng.integers(0, 256, 300_000, dtype=np.uint8))

    def write(v):
        if writer == "save_image":
            from patchlab.data import save_image
            save_image(version(v), target, kind="perturbation")
        elif writer == "write_json":
            from patchlab.artifacts import write_json
            write_json(target, version(v), "patch-eval")
        elif writer == "write_bytes":
            from patchlab.artifacts import write_bytes
            write_bytes(target, version(v))
        elif writer == "plain":                                   # the control: no temporary file
            from patchlab.data import png_bytes
            target.write_bytes(png_bytes(version(v)))

    write(1)
    print("ready", flush=True)
    slow["on"] = True
    write(2)
    print("finished", flush=True)
""")


def _kill_mid_write(tmp_path: Path, writer: str, name: str) -> Path:
    target = tmp_path / name
    proc = subprocess.Popen([sys.executable, "-c", CHILD, writer, str(target)], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2],
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line.strip())
            if line.strip() == "mid":
                proc.send_signal(signal.SIGKILL)
                break
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert lines[-2:] == ["ready", "mid"] and proc.returncode == -signal.SIGKILL, lines
    return target


def _version(writer: str, v: int):
    import numpy as np

    rng = np.random.default_rng(v)
    if writer in ("save_image", "plain"):
        return rng.integers(0, 256, (400, 400, 3), dtype=np.uint8)
    if writer == "write_json":
        return {"version": v, "rows": rng.random(20000).tolist()}
    return bytes(rng.integers(0, 256, 300_000, dtype=np.uint8))


@pytest.mark.parametrize("writer,name", [("save_image", "adv.png"), ("write_json", "p.eval.json"),
                                         ("write_bytes", "sheet.pdf")])
def test_sigkill_mid_write_leaves_the_previous_file(tmp_path, writer, name):
    import numpy as np
    from PIL import Image

    target = _kill_mid_write(tmp_path, writer, name)
    first = _version(writer, 1)
    if writer == "save_image":
        assert np.array_equal(np.asarray(Image.open(target)), first)
    elif writer == "write_json":
        data = json.loads(target.read_text())
        assert data["version"] == 1 and data["rows"] == first["rows"] and data["artifact"] == "patch-eval"
    else:
        assert target.read_bytes() == first
    parts = list(tmp_path.glob(".*.part*"))
    assert len(parts) == 1 and 0 < parts[0].stat().st_size  # the half-written temporary file, beside it


def test_control_a_plain_write_killed_mid_write_is_truncated(tmp_path):
    """The same kill on a direct write: the test above would catch a writer that is not atomic."""
    from PIL import Image

    target = _kill_mid_write(tmp_path, "plain", "adv.png")
    with pytest.raises(Exception):
        Image.open(target).load()


def test_the_next_write_sweeps_a_killed_writers_stale_temporary(tmp_path):
    """A SIGKILLed writer leaves its hidden temporary; the next write of the same file deletes it once it is older
    than STALE_PART_SECONDS (a younger one may belong to a writer still at work, and stays)."""
    import os

    from patchlab.artifacts import STALE_PART_SECONDS, write_json

    target = _kill_mid_write(tmp_path, "write_json", "p.eval.json")
    (part,) = tmp_path.glob(".*.part*")
    write_json(target, {"version": 3}, "patch-eval", "test")
    assert part.exists()  # fresh: could be another writer's
    old = part.stat().st_mtime - STALE_PART_SECONDS - 60
    os.utime(part, (old, old))
    write_json(target, {"version": 4}, "patch-eval", "test")
    assert not part.exists() and json.loads(target.read_text())["version"] == 4
    assert not list(tmp_path.glob(".*.part*"))
