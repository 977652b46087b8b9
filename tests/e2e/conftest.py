"""Real-browser tests: `streamlit run` on a free localhost port, Debian's Chromium driven by Playwright.

One streamlit server per test module, one browser per session (launched with Chromium's fake camera fed a
.y4m of a scene with the toaster patch), a fresh browser context (= a separate Streamlit session) per test.
Screenshots go to test-artifacts/e2e/.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .browser import CHROMIUM, SHOTS, StreamlitServer


@pytest.fixture(scope="session")
def shots_dir() -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS


@pytest.fixture(scope="module")
def server(shots_dir, request):
    srv = StreamlitServer(shots_dir / f"server-{request.module.__name__.rsplit('.', 1)[-1]}.log")
    try:
        srv.wait_healthy()
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def camera_video(shots_dir) -> Path:
    """The fake camera's video: a rendered scene with the toaster patch (see tests/e2e/video.py)."""
    from .video import make_patch_scene_video

    return make_patch_scene_video(shots_dir / "camera_scene.y4m")


@pytest.fixture(scope="session")
def browser(camera_video):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}; `make chromium` installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={camera_video.resolve()}",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--disable-gpu", "--disable-dev-shm-usage"])
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    """A fresh browser context per test: its own cookies, so its own Streamlit session."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, permissions=["camera"])
    context.set_default_timeout(30_000)
    pg = context.new_page()
    yield pg
    context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, save the page's screenshot next to the other artifacts (the server log is already there)."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed and "page" in item.funcargs:
        try:
            SHOTS.mkdir(parents=True, exist_ok=True)
            item.funcargs["page"].screenshot(path=str(SHOTS / f"FAILED-{item.name}.png"), full_page=True)
        except Exception:  # noqa: BLE001 - best effort
            pass
