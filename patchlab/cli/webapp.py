"""`patchlab app`: start the Streamlit browser app."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import typer

from patchlab.errors import PatchlabError

APP_DIR = Path(__file__).resolve().parents[2] / "app"


def register(app: typer.Typer) -> None:
    @app.command("app")
    def app_cmd(port: int = typer.Option(8501, "--port"), headless: bool = typer.Option(False, "--headless")) -> None:
        """Open the browser app (Streamlit) on the built-in models and photos."""
        entry = APP_DIR / "streamlit_app.py"
        if not entry.exists():
            raise PatchlabError(f"the app is not in this checkout ({entry} missing)")
        from patchlab.app_support.scratch import sweep_stale

        sweep_stale()  # scratch folders of app servers that are gone (killed, crashed)
        env = dict(os.environ, STREAMLIT_SERVER_FILE_WATCHER_TYPE="none", STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
        cmd = [sys.executable, "-m", "streamlit", "run", str(entry), "--server.port", str(port)]
        if headless:
            cmd += ["--server.headless", "true"]
        if os.name == "posix":  # become the server: Ctrl-C / SIGTERM reach Streamlit, no orphaned child
            os.chdir(APP_DIR.parent)  # the repo root, so .streamlit/config.toml applies
            os.execve(sys.executable, cmd, env)
        raise typer.Exit(subprocess.call(cmd, env=env, cwd=APP_DIR.parent))
