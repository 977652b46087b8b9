"""Helpers for the real-browser tests: a `streamlit run` subprocess and Playwright page utilities."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("PATCHLAB_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
SHOTS = REPO / "test-artifacts" / "e2e"
# Tests write only under test-artifacts/; `make screenshots` sets this to refresh docs/screenshots/ on purpose.
DOCS_SHOTS = os.environ.get("PATCHLAB_DOCS_SCREENSHOTS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StreamlitServer:
    """The app as users start it, `patchlab app --headless --port N` (which execs `streamlit run` on the app's entry
    point, whose .streamlit/config.toml applies from any working folder)."""

    def __init__(self, log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.started = time.perf_counter()
        env = dict(os.environ, PYTHONUNBUFFERED="1", STREAMLIT_SERVER_ADDRESS="127.0.0.1")
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "patchlab", "app", "--headless", "--port", str(self.port)],
                                     cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_healthy(self, timeout: float = 60) -> float:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {self.proc.returncode}; log: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/_stcore/health", timeout=1) as r:
                    if r.status == 200:
                        return time.perf_counter() - self.started
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"streamlit did not answer on {self.url} within {timeout} s")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._log.close()


def wait_idle(page, timeout: float = 60_000) -> None:
    """Wait until the app is connected and the script has finished its run."""
    page.wait_for_selector("[data-testid='stApp'][data-test-connection-state='CONNECTED']", timeout=timeout)
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=timeout)


def open_page(page, server, url_path: str = "", timeout: float = 60_000) -> None:
    page.goto(f"{server.url}/{url_path}")
    wait_idle(page, timeout)


def shoot(page, name: str, docs: bool = False, max_height: int = 3000, fit: bool = True) -> Path:
    """Screenshot the whole page into test-artifacts/e2e/ (docs=True: one of docs/screenshots/, see _publish).
    Streamlit scrolls inside its main container, so grow the viewport to fit it
    (fit=False keeps the viewport: resizing restarts a live WebRTC stream)."""
    path = SHOTS / f"{name}.png"
    size = page.viewport_size
    if not fit:
        page.screenshot(path=str(path))
        return _publish(path, docs)
    height = page.evaluate("() => Math.max(...['stMain', 'stSidebarContent'].map(id => "
                           "(document.querySelector(`[data-testid='${id}']`) || {scrollHeight: 0}).scrollHeight))")
    page.set_viewport_size({"width": size["width"], "height": min(max(size["height"], int(height)), max_height)})
    wait_images_loaded(page)
    page.wait_for_timeout(400)
    page.screenshot(path=str(path))
    page.set_viewport_size(size)
    return _publish(path, docs)


def _publish(path: Path, docs: bool) -> Path:
    """A docs screenshot is also copied to $PATCHLAB_DOCS_SCREENSHOTS (relative to the repo) when that is set."""
    if docs and DOCS_SHOTS:
        dest = REPO / DOCS_SHOTS
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dest / path.name)
    return path


def wait_images_loaded(page, timeout: float = 15_000) -> None:
    """Wait until every st.image on the page has loaded; on timeout, name the images that did not."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function("() => [...document.querySelectorAll(\"[data-testid='stImage'] img\")]"
                               ".every(img => img.complete && img.naturalWidth > 0)", timeout=timeout)
    except PlaywrightTimeout:
        broken = page.evaluate("() => [...document.querySelectorAll(\"[data-testid='stImage'] img\")]"
                               ".filter(img => !(img.complete && img.naturalWidth > 0))"
                               ".map(img => `${img.src} complete=${img.complete} width=${img.naturalWidth}`)")
        raise AssertionError(f"images not loaded after {timeout / 1000:.0f} s: {broken}") from None


def choose(page, label: str, option: str, attempts: int = 3) -> None:
    """Pick an option of a Streamlit selectbox by its label (reopens the list if a rerun closed it)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    box = page.locator("[data-testid='stSelectbox']").filter(has_text=label).first
    for attempt in range(attempts):
        wait_idle(page)
        box.locator("[role='combobox'], input").first.click()
        item = page.get_by_role("option", name=option)
        try:
            item.wait_for(timeout=10_000)
        except PlaywrightTimeout:
            if attempt == attempts - 1:
                raise
            page.keyboard.press("Escape")
            continue
        item.click()
        break
    wait_idle(page)


def fill(page, label: str, value: str) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(value)
    box.press("Enter")
    wait_idle(page)
