"""AppTest helpers for the app's page tests: a fresh browser session on a page, and waiting for a page's job."""

from __future__ import annotations

import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

APP_ENTRY = str(Path(__file__).resolve().parents[1] / "patchlab" / "app" / "streamlit_app.py")


def open_page(page: str | None = None, timeout: float = 300) -> AppTest:
    """A new browser session on `app_pages/<page>.py` (None: the home page), run and checked for exceptions."""
    at = AppTest.from_file(APP_ENTRY, default_timeout=timeout).run()
    if page is not None:
        at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, at.exception
    return at


def wait_job(at: AppTest, key: str, until=lambda snap: snap.state == "done", timeout: float = 240):
    """Poll the background job in `session_state[key]` until `until(snapshot)` holds or the job ends; the
    snapshot, after asserting `until` held (the message names the state, the step and any error)."""
    job = at.session_state[key]
    deadline = time.time() + timeout
    while time.time() < deadline and not until(job.snapshot()) and job.snapshot().active:
        time.sleep(0.2)
    snap = job.snapshot()
    assert until(snap), f"job state {snap.state} at step {snap.step}/{snap.total}: {snap.error}"
    return snap
