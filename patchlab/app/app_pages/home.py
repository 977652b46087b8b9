"""Home: what the testbed does, a 30-second tour, links to each page. Imports no torch."""

import streamlit as st

PAGES = {"attacks": ("app_pages/attacks.py", ":material/target:"), "patch": ("app_pages/patch_studio.py", ":material/extension:"),
         "camera": ("app_pages/live_camera.py", ":material/videocam:"), "print": ("app_pages/print_photo.py", ":material/print:")}

st.title("patchlab")
st.markdown(
    "**A testbed for machine-learning security in the physical world.** Attack an ImageNet classifier digitally, "
    "train an adversarial patch that survives printing and camera changes (EOT), print it at exact size, point "
    "your camera at it, and score photos of printed sheets — all offline, on built-in models and photos.")

st.subheader("30-second tour")
tour = [
    ("attacks", "**Digital attacks** — pick a photo, an attack (FGSM, PGD, …), ε and a target; see the original, "
                "the amplified perturbation and the adversarial image with top-5 bars, plus four classic demos."),
    ("patch", "**Patch studio** — choose a target class, shape and EOT ranges, preview the random transforms, "
              "and optimise a patch in the background with live loss and held-out success; download PNG, JSON, PDF."),
    ("camera", "**Live camera** — live classification of your webcam in the browser (top-5, target probability, "
               "FPS), an optional virtual patch overlay, recording with a summary, and a snapshot fallback."),
    ("print", "**Print & photo** — make patch sheets, Kurakin sheets and calibration charts; upload photos of "
              "the printed sheets to get the rectified page, per-cell results and the destruction rate."),
]
for n, (key, text) in enumerate(tour, 1):
    col_text, col_link = st.columns([5, 1], vertical_alignment="center")
    col_text.markdown(f"{n}. {text}")
    col_link.page_link(PAGES[key][0], label="Open", icon=PAGES[key][1])

st.subheader("Command line")
st.code("patchlab models                 # the model zoo\n"
        "patchlab app                    # this app\n"
        "patchlab --help                 # every command", language="bash")
st.caption("Models: EfficientNet-Lite0/1/2 ship with the package (ImageNet, 1000 classes). "
           "Built-in photos come from scikit-image. Nothing is downloaded.")
