"""The Streamlit browser app (`patchlab app`) and its glue.

`streamlit_app.py` is the entry point and `app_pages/` holds one script per page (a folder named pages/ would also
be auto-listed by Streamlit). `.streamlit/config.toml` beside the entry point holds the server settings (Streamlit
reads a config next to the script it runs, and `patchlab app` runs it from this folder).

Importable and testable without a browser: `jobs` (background work owned by one session), `uploads` (validated
uploads), `scratch` (per-session scratch folders), `scenes` (scene folders for the Patch studio). `ui` and `live`
import streamlit (cached models, widgets, the live camera's per-session frame glue). No computation lives here:
the app only calls the library.
"""

from pathlib import Path

APP_DIR = Path(__file__).resolve().parent
ENTRY = APP_DIR / "streamlit_app.py"
