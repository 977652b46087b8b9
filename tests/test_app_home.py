"""AppTest: the entry point, navigation and the Home page (which must not import torch)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.apptest import APP_ENTRY, open_page


def test_home_renders_tour_and_links():
    at = open_page(timeout=30)
    assert at.title[0].value == "patchlab"
    text = " ".join(m.value for m in at.markdown)
    for page in ("Digital attacks", "Patch studio", "Live camera", "Print & photo"):
        assert page in text
    assert "patchlab app" in at.code[0].value


def test_home_does_not_import_torch():
    code = ("import sys; from streamlit.testing.v1 import AppTest; "
            f"at = AppTest.from_file({APP_ENTRY!r}, default_timeout=30).run(); "
            "assert not at.exception, at.exception; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_streamlit_config_disables_file_watcher():
    import tomllib

    cfg = tomllib.loads((Path(APP_ENTRY).parent / ".streamlit" / "config.toml").read_text())
    assert cfg["server"]["fileWatcherType"] == "none"
