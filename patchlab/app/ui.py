"""Streamlit helpers shared by the app's pages: cached models, error display, top-k bars, per-session files.

Imports torch lazily so the Home page stays fast.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import streamlit as st

from patchlab.errors import PatchlabError


def get_model(name: str):
    """The process-wide shared frozen eval model (`patchlab.models.shared_model`): one per (name, device) for every
    session, the camera callback thread and photo-eval alike."""
    from patchlab.models import is_shared, shared_model

    if is_shared(name):
        return shared_model(name)
    with st.spinner("Loading model…"):
        return shared_model(name)


@st.cache_data(show_spinner=False)
def available_models() -> list[str]:
    """Zoo models whose weights are on this machine (the Lite family always is)."""
    from patchlab.models import list_models

    return [spec.name for spec in list_models(available=True)]


@st.cache_data(show_spinner=False)
def class_names() -> list[str]:
    from patchlab.data import imagenet_classes

    return list(imagenet_classes().names)


@contextmanager
def user_errors() -> Iterator[None]:
    """Show a PatchlabError as one red line on the page instead of a traceback."""
    try:
        yield
    except PatchlabError as exc:
        st.error(str(exc), icon=":material/error:")


APP_WRITER = "patchlab app"


def png_bytes(image, kind: str | None = None) -> bytes:
    """(3|4, H, W) tensor in [0, 1] -> lossless PNG bytes, tagged as `kind` written by the app when given."""
    from patchlab.data import png_bytes as encode

    return encode(image, kind=kind, written_by=APP_WRITER if kind else None)


def download_name(stem: str, kind: str, data: bytes | str) -> str:
    """A download's file name: `<stem>-<hash of the content><kind's suffix>`, so two sessions' or runs' downloads
    never share a name unless they are the same bytes."""
    from patchlab.artifacts import download_name as name

    return name(stem, kind, data)


def data_uri(encoded: bytes, mime: str = "image/png") -> str:
    """An encoded image as a data: URI for st.image. Streamlit serves other images from its media store, which a
    burst of interrupted reruns (a WebRTC stream starting or stopping) can empty while the browser is fetching,
    leaving a broken image; a data URI travels inside the page update itself."""
    import base64

    return f"data:{mime};base64,{base64.b64encode(encoded).decode('ascii')}"


def to_display(image):
    """Tensor (3|4, H, W) -> HxWxC uint8 for st.image."""
    from patchlab.data import to_uint8_hwc

    return to_uint8_hwc(image)


def topk_frame(probs, labels: list[str], k: int = 5, highlight: int | None = None):
    """A small table of the top-k classes with probability bars (probs: 1-D tensor of softmax)."""
    import pandas as pd

    values, indices = probs.detach().float().cpu().topk(k)
    rows = [{"class": labels[i] + (" ◀ target" if highlight is not None and i == highlight else ""),
             "probability": float(v)} for v, i in zip(values.tolist(), indices.tolist())]
    return pd.DataFrame(rows)


def show_topk(probs, labels: list[str], k: int = 5, highlight: int | None = None, key: str | None = None) -> None:
    """Top-k classes as labelled probability bars (fits narrow columns)."""
    frame = topk_frame(probs, labels, k, highlight)
    with st.container(key=key):
        for label, prob in zip(frame["class"], frame["probability"]):
            st.progress(min(1.0, prob), text=f"{label} · {prob:.1%}")


def _session_is_live(session_id: str) -> bool:
    from streamlit.runtime import Runtime

    return Runtime.exists() and Runtime.instance().is_active_session(session_id)


def _start_scratch_care() -> None:
    """Once per server: remove folders of servers that are gone, and start the reaper for this server's sessions."""
    import os

    from patchlab.app import scratch

    scratch.sweep_stale()
    grace = float(os.environ.get("PATCHLAB_APP_SCRATCH_GRACE_S", 0) or
                  float(st.get_option("server.disconnectedSessionTTL")) + 30)
    scratch.start_reaper(_session_is_live, grace, float(os.environ.get("PATCHLAB_APP_REAP_S", 30)))


def session_dir() -> Path:
    """A private scratch folder for this browser session (job checkpoints, generated files); removed when the
    session ends (see patchlab.app.scratch)."""
    path = st.session_state.get("_patchlab_dir")
    if path is None or not Path(path).is_dir():
        from streamlit.runtime.scriptrunner import get_script_run_ctx

        from patchlab.app import scratch

        _start_scratch_care()
        ctx = get_script_run_ctx()
        session = ctx.session_id if ctx is not None else None
        created = scratch.create(session)
        if session is not None and _session_is_live(session):
            scratch.mark_live(created)
        path = str(created)
        st.session_state["_patchlab_dir"] = path
    return Path(path)


def when_session_ends(hook) -> None:
    """Run `hook` (e.g. a background job's stop) before this session's scratch folder is removed."""
    from patchlab.app import scratch

    scratch.on_release(session_dir(), hook)


# --- patches: shipped printables, this session's Patch studio result, or an upload --------------------------------
PRINTABLES = Path(__file__).resolve().parents[2] / "printables"  # in a checkout; a wheel ships no printables
STUDIO_PATCH_KEY = "studio_patch"  # Patch studio stores {"rgba", "meta", "name"} here for the other pages


def shipped_patches() -> list[Path]:
    """Patch PNGs in printables/ that have a sidecar (a patch, not a sheet)."""
    if not PRINTABLES.is_dir():
        return []
    from patchlab.patch.io import find_sidecar

    def is_patch(png: Path) -> bool:
        side = find_sidecar(png)
        return side is not None and '"target' in side.read_text()[:100_000]

    return sorted(p for p in PRINTABLES.glob("*.png") if is_patch(p))


def choose_patch(key: str, allow_none: bool = False, label: str = "Patch"):
    """A patch picker; returns {"rgba": (4, H, W) tensor, "meta": dict, "name": str} or None."""
    from patchlab.app.uploads import read_uploaded_json, read_uploaded_rgba

    shipped = shipped_patches()
    options = [f"shipped: {p.name}" for p in shipped]
    studio = st.session_state.get(STUDIO_PATCH_KEY)
    if studio is not None:
        options.insert(0, f"from Patch studio: {studio['name']}")
    options.append("upload a patch PNG")
    if allow_none:
        options.insert(0, "none")
    choice = st.selectbox(label, options, key=f"{key}_choice")
    if choice == "none":
        return None
    if choice.startswith("from Patch studio"):
        return studio
    if choice.startswith("shipped: "):
        from patchlab.patch.io import load_patch

        path = PRINTABLES / choice.removeprefix("shipped: ")
        rgba, meta = load_patch(path)
        return {"rgba": rgba, "meta": meta, "name": path.stem}
    up = st.file_uploader("Patch PNG (RGBA; alpha = shape)", type=["png"], key=f"{key}_png")
    side = st.file_uploader("Its JSON sidecar (optional: target class)", type=["json"], key=f"{key}_json")
    if up is None:
        return None
    meta = read_uploaded_json(side, max_mb=1, what="a patch sidecar") if side is not None else {}
    return {"rgba": read_uploaded_rgba(up), "meta": meta, "name": Path(up.name).stem}


def patch_target(meta: dict) -> str | None:
    """The target class name recorded in a patch sidecar, if any."""
    name = meta.get("target_name") or meta.get("target")
    if isinstance(name, int):
        return class_names()[name]
    return name if isinstance(name, str) else None
