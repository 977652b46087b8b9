"""Per-session scratch folders of the app (`<tmp>/patchlab-app-*`): one private folder per browser session.

Each folder holds an owner file (server pid, session id). It is removed
- when its session ends: a reaper thread asks the Streamlit runtime which sessions are still active and removes the
  folders of sessions gone for longer than the server keeps a disconnected session for reconnection
  (`server.disconnectedSessionTTL`, plus a margin); work registered with `on_release` (a background job's stop) is
  stopped first;
- when the server exits normally (atexit);
- at the next start, for folders whose server is gone (killed, crashed), or, without an owner file (older versions),
  once they are an hour old.
Only folders of the current user are touched. Nothing here imports streamlit: the runtime is passed in.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

PREFIX = "patchlab-app-"
OWNER = ".patchlab-owner.json"
UNOWNED_AGE_S = 3600.0

_lock = threading.Lock()
_folders: dict[Path, str | None] = {}             # this process's folders -> session id
_release_hooks: dict[Path, list[Callable[[], None]]] = {}
_gone_since: dict[Path, float] = {}
_seen_live: set[Path] = set()                     # only folders whose session was once seen live are reaped
_reaper: threading.Thread | None = None


def _root(root: str | Path | None) -> Path:
    return Path(root) if root is not None else Path(tempfile.gettempdir())


def create(session_id: str | None, root: str | Path | None = None) -> Path:
    """A new private folder for one session, with its owner file."""
    path = Path(tempfile.mkdtemp(prefix=PREFIX, dir=_root(root)))
    owner = {"pid": os.getpid(), "host": socket.gethostname(), "session": session_id, "created": time.time()}
    from patchlab.artifacts import write_text

    write_text(path / OWNER, json.dumps(owner))
    with _lock:
        _folders[path] = session_id
    return path


def mark_live(path: str | Path) -> None:
    """The folder's session was seen connected: from now on the reaper may remove it once the session is gone.
    (A runtime that never reports the session as live, such as Streamlit's AppTest, never loses its folders.)"""
    with _lock:
        _seen_live.add(Path(path))


def on_release(path: str | Path, hook: Callable[[], None]) -> None:
    """Run `hook` (e.g. a background job's stop) before the folder is removed."""
    with _lock:
        _release_hooks.setdefault(Path(path), []).append(hook)


def release(path: str | Path) -> None:
    """Stop what was registered for the folder, then remove it."""
    path = Path(path)
    with _lock:
        hooks = _release_hooks.pop(path, [])
        _folders.pop(path, None)
        _gone_since.pop(path, None)
        _seen_live.discard(path)
    for hook in hooks:
        try:
            hook()
        except Exception:  # noqa: BLE001 - cleanup must go on
            pass
    shutil.rmtree(path, ignore_errors=True)


def release_all() -> None:
    with _lock:
        paths = list(_folders)
    for path in paths:
        release(path)


atexit.register(release_all)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def sweep_stale(root: str | Path | None = None, now: float | None = None) -> list[Path]:
    """Remove scratch folders left behind by servers that are gone; returns what was removed."""
    now = time.time() if now is None else now
    removed = []
    host = socket.gethostname()
    for path in sorted(_root(root).glob(PREFIX + "*")):
        try:
            if path.is_symlink() or not path.is_dir() or path.stat().st_uid != os.getuid():
                continue
            with _lock:
                if path in _folders:
                    continue  # this server's own: the reaper decides
            try:
                owner = json.loads((path / OWNER).read_text())
            except (OSError, ValueError):
                owner = None
            if isinstance(owner, dict) and isinstance(owner.get("pid"), int):
                if owner.get("host") == host and (owner["pid"] == os.getpid() or pid_alive(owner["pid"])):
                    continue
                if owner.get("host") not in (None, host):
                    continue  # a shared tmp seen from another machine: not ours to judge
            elif now - path.stat().st_mtime < UNOWNED_AGE_S:
                continue
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        except OSError:
            continue
    return removed


def reap(is_live: Callable[[str], bool], grace_s: float, now: float | None = None) -> list[Path]:
    """Remove the folders of sessions that were live once and have not been for `grace_s` seconds."""
    now = time.monotonic() if now is None else now
    with _lock:
        owned = [(p, s) for p, s in _folders.items() if s is not None]
    removed = []
    for path, session in owned:
        try:
            live = is_live(session)
        except Exception:  # noqa: BLE001 - when in doubt, keep the folder
            continue
        with _lock:
            if live:
                _seen_live.add(path)
                _gone_since.pop(path, None)
                continue
            if path not in _seen_live:
                continue
            first = _gone_since.setdefault(path, now)
        if now - first >= grace_s:
            release(path)
            removed.append(path)
    return removed


def start_reaper(is_live: Callable[[str], bool], grace_s: float, interval_s: float = 30.0) -> None:
    """Once per process: a daemon thread that reaps every `interval_s` seconds."""
    global _reaper
    with _lock:
        if _reaper is not None and _reaper.is_alive():
            return

        def loop() -> None:
            while True:
                time.sleep(interval_s)
                try:
                    reap(is_live, grace_s)
                except Exception:  # noqa: BLE001 - the reaper must outlive one bad pass
                    pass

        _reaper = threading.Thread(target=loop, name="patchlab-scratch-reaper", daemon=True)
        _reaper.start()
