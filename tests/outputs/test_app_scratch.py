"""The app's per-session scratch folders: removed when their session ends, and at the next start when their server
is gone; never another user's, another live server's or a live session's."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

from patchlab.app import scratch


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _folder(root, name: str, owner: dict | None, age_s: float = 0.0):
    path = root / f"{scratch.PREFIX}{name}"
    path.mkdir()
    (path / "work.txt").write_text("x")
    if owner is not None:
        (path / scratch.OWNER).write_text(json.dumps(owner))
    if age_s:
        t = time.time() - age_s
        os.utime(path, (t, t))
    return path


def test_next_start_removes_folders_of_servers_that_are_gone(tmp_path):
    host = socket.gethostname()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = _folder(tmp_path, "dead", {"pid": _dead_pid(), "host": host, "session": "s"})
        alive = _folder(tmp_path, "alive", {"pid": live.pid, "host": host, "session": "s"})
        elsewhere = _folder(tmp_path, "elsewhere", {"pid": _dead_pid(), "host": host + "-other", "session": "s"})
        old = _folder(tmp_path, "old", None, age_s=2 * scratch.UNOWNED_AGE_S)  # an older version's, no owner file
        young = _folder(tmp_path, "young", None)
        other = tmp_path / "not-ours"
        other.mkdir()
        removed = scratch.sweep_stale(tmp_path)
    finally:
        live.kill()
        live.wait()
    assert sorted(removed) == sorted([dead, old])
    assert not dead.exists() and not old.exists()
    assert alive.is_dir() and elsewhere.is_dir() and young.is_dir() and other.is_dir()


def test_a_session_that_ends_loses_its_folder_after_the_grace_and_its_work_is_stopped(tmp_path, monkeypatch):
    # this process's registry starts empty here: app tests run earlier in the same worker leave their sessions in it
    for name, empty in (("_folders", {}), ("_release_hooks", {}), ("_gone_since", {}), ("_seen_live", set())):
        monkeypatch.setattr(scratch, name, empty)
    gone = scratch.create("gone", tmp_path)
    here = scratch.create("here", tmp_path)
    never = scratch.create("never-live", tmp_path)  # e.g. an AppTest session the runtime never reports
    owner = json.loads((gone / scratch.OWNER).read_text())
    assert owner["pid"] == os.getpid() and owner["session"] == "gone"
    stopped = []
    scratch.on_release(gone, lambda: stopped.append("job stopped"))
    live = {"gone": True, "here": True}
    is_live = lambda s: live.get(s, False)  # noqa: E731
    try:
        assert scratch.reap(is_live, grace_s=5, now=0) == []
        live["gone"] = False
        assert scratch.reap(is_live, grace_s=5, now=1) == []       # disconnected: may still reconnect
        live["gone"] = True
        assert scratch.reap(is_live, grace_s=5, now=4) == []       # it did: the clock restarts
        live["gone"] = False
        assert scratch.reap(is_live, grace_s=5, now=5) == []
        assert scratch.reap(is_live, grace_s=5, now=10.5) == [gone]
        assert not gone.exists() and stopped == ["job stopped"]
        assert here.is_dir() and never.is_dir()
        assert scratch.sweep_stale(tmp_path) == []                  # this server is alive: its folders stay
    finally:
        scratch.release(here)
        scratch.release(never)
    assert not here.exists() and not never.exists()


def test_app_session_dir_is_private_and_owned(tmp_path):
    """Through a real Streamlit script run: each session gets its own folder with an owner file."""
    from streamlit.testing.v1 import AppTest

    script = tmp_path / "page.py"
    script.write_text("import streamlit as st\nfrom patchlab.app import ui\nst.write(str(ui.session_dir()))\n")
    first, second = AppTest.from_file(str(script)).run(), AppTest.from_file(str(script)).run()
    paths = [at.session_state["_patchlab_dir"] for at in (first, second)]
    assert paths[0] != paths[1]
    for p in paths:
        owner = json.loads((scratch.Path(p) / scratch.OWNER).read_text())
        assert owner["pid"] == os.getpid() and owner["session"]
        scratch.release(p)
