"""patchlab browser app: `patchlab app` (or `streamlit run patchlab/app/streamlit_app.py`).

Pages live in app_pages/ (a folder named pages/ would also be auto-listed by Streamlit and break direct URLs).
Only streamlit is imported here, so the Home page opens without loading torch; each page imports what it needs.
"""

import streamlit as st

st.set_page_config(page_title="patchlab", page_icon=":material/extension:", layout="wide")

PAGES = {
    "home": st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True, url_path="home"),
    "attacks": st.Page("app_pages/attacks.py", title="Digital attacks", icon=":material/target:", url_path="attacks"),
    "patch": st.Page("app_pages/patch_studio.py", title="Patch studio", icon=":material/extension:", url_path="patch"),
    "camera": st.Page("app_pages/live_camera.py", title="Live camera", icon=":material/videocam:", url_path="camera"),
    "print": st.Page("app_pages/print_photo.py", title="Print & photo", icon=":material/print:", url_path="print"),
    "transfer": st.Page("app_pages/transfer.py", title="Transfer & theft", icon=":material/swap_horiz:", url_path="transfer"),
    "poisoning": st.Page("app_pages/poisoning.py", title="Poisoning", icon=":material/science:", url_path="poisoning"),
    "defenses": st.Page("app_pages/defenses.py", title="Defenses", icon=":material/shield:", url_path="defenses"),
    "privacy": st.Page("app_pages/privacy.py", title="Privacy", icon=":material/shield_lock:", url_path="privacy"),
}
st.navigation(list(PAGES.values())).run()
