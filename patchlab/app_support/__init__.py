"""Glue for the Streamlit app that must be importable and testable without a browser.

`jobs` runs long work in a background thread owned by one browser session; `uploads` validates uploaded files.
The streamlit-facing helpers live in `patchlab.app_support.ui` (imports streamlit). No computation lives here:
the app only calls the library.
"""
