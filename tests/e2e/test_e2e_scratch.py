"""The app's scratch folders in a real server (issue 21): a folder left by a server that is gone is removed when
the next server starts; a browser session's folder is removed once the session ends; sessions never share one."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .browser import SHOTS, StreamlitServer, open_page

pytestmark = pytest.mark.e2e


def _session_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("patchlab-app-*") if p.is_dir())


def test_session_folders_are_removed_when_sessions_end_and_at_the_next_start(browser, tmp_path, monkeypatch):
    from patchlab.app.scratch import OWNER

    root = tmp_path / "tmp"
    root.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = root / "patchlab-app-left-by-a-killed-server"
    stale.mkdir()
    (stale / OWNER).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "session": "x"}))
    # the server's temporary folder is `root`; a disconnected session is kept 1 s for reconnection, reaped at once
    monkeypatch.setenv("TMPDIR", str(root))
    monkeypatch.setenv("STREAMLIT_SERVER_DISCONNECTED_SESSION_TTL", "1")
    monkeypatch.setenv("PATCHLAB_APP_REAP_S", "0.5")
    monkeypatch.setenv("PATCHLAB_APP_SCRATCH_GRACE_S", "2")
    server = StreamlitServer(SHOTS / "server-scratch.log")
    try:
        server.wait_healthy()
        assert not stale.exists(), "the next start did not remove the folder of a server that is gone"
        contexts, folders = [], []
        for _ in range(2):  # two browser sessions on the Patch studio page, which makes its scene folder there
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            open_page(page, server, "patch", timeout=120_000)
            page.get_by_role("heading", name="Patch studio").wait_for()
            contexts.append(context)
            mine = [p for p in _session_folders(root) if p not in folders]
            assert len(mine) == 1, f"expected one new session folder, found {mine}"
            folders += mine
        owners = [json.loads((f / OWNER).read_text()) for f in folders]
        assert owners[0]["session"] != owners[1]["session"] and owners[0]["pid"] == owners[1]["pid"]
        assert all(any(f.rglob("*.png")) or any(f.rglob("*.jpg")) for f in folders)  # their scene images
        contexts[0].close()  # the first session ends; the second stays
        deadline = time.monotonic() + 60
        while folders[0].exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not folders[0].exists(), "the ended session's folder is still there after 60 s"
        assert folders[1].is_dir(), "a live session lost its folder"
        contexts[1].close()
    finally:
        server.stop()
    deadline = time.monotonic() + 10
    while _session_folders(root) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _session_folders(root) == [], "the server left session folders behind at exit"
