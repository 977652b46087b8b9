"""`patchlab app`: start the Streamlit browser app."""

from __future__ import annotations

import os
import subprocess
import sys

import typer


def app_cmd(port: int = typer.Option(8501, "--port"), headless: bool = typer.Option(False, "--headless")) -> None:
    """Open the browser app (Streamlit) on the built-in models and photos."""
    import importlib.util

    from patchlab.app import ENTRY
    from patchlab.app.scratch import sweep_stale
    from patchlab.errors import PatchlabError

    if importlib.util.find_spec("streamlit") is None:
        raise PatchlabError("the app needs Streamlit: pip install 'patchlab[app]'")

    sweep_stale()  # scratch folders of app servers that are gone (killed, crashed)
    # the app's settings are in .streamlit/config.toml beside ENTRY, which Streamlit reads from any working folder
    cmd = [sys.executable, "-m", "streamlit", "run", str(ENTRY), "--server.port", str(port)]
    if headless:
        cmd += ["--server.headless", "true"]
    if os.name == "posix":  # become the server: Ctrl-C / SIGTERM reach Streamlit, no orphaned child
        os.execv(sys.executable, cmd)
    raise typer.Exit(subprocess.call(cmd))


def register(app: typer.Typer) -> None:
    app.command("app")(app_cmd)
