"""Defenses: PatchCleanser's certificate on one photo (with or without a patch), input transformations side by side,
and the measured benchmark tables. The work is `patchlab.defenses`; this page only wires widgets to it."""

import json

import streamlit as st

from patchlab.app import ui
from patchlab.app.uploads import IMAGE_TYPES, read_uploaded_image

st.title("Defenses")
st.caption("Which defenses stop a patch, which only seem to, and what a certificate buys. PatchCleanser (Xiang et "
           "al. 2022) certifies that no patch of a given size, anywhere, can change its answer; input "
           "transformations only blur the patch and fall to adaptive (BPDA + EOT) attacks.")

from patchlab.defenses.registry import DEFENSES, defense_names  # noqa: E402
from patchlab.defenses.report import RESULTS_DIR as RESULTS  # noqa: E402 - the benchmarks' tables (a source checkout)


@st.cache_data(show_spinner=False, max_entries=8)
def builtin_photo(name: str):
    from patchlab.data import load_sample

    return load_sample(name).image


def pick_photo(prefix: str):
    from patchlab.data import sample_names

    source = st.radio("Photo", ["Built-in", "Upload"], horizontal=True, key=f"{prefix}_source")
    if source == "Built-in":
        return builtin_photo(st.selectbox("Built-in photo", sample_names(), key=f"{prefix}_sample"))
    up = st.file_uploader("Your photo", type=list(IMAGE_TYPES), key=f"{prefix}_upload")
    return read_uploaded_image(up) if up else None


def model_input(image, model, patch, area: float, top: float, left: float):
    """The model's input, with the patch pasted (axis-aligned square of `area`) at a fractional position."""
    from patchlab.defenses.masks import patch_side
    from patchlab.defenses.patch_eval import paste_square
    from patchlab.models import preprocess

    x = preprocess(image, model)
    if patch is None:
        return x
    size = model.input_size
    side = patch_side(area, size)
    return paste_square(x, patch["rgba"], side, round(top * (size - side)), round(left * (size - side)))


def mask_grid(x, masks, covering: list[int]):
    """The input with every mask's outline drawn (the ones covering the patch in green)."""
    import numpy as np

    from patchlab.data import to_uint8_hwc

    img = np.ascontiguousarray(to_uint8_hwc(x))
    m = masks.size
    for i, (t, left) in enumerate(masks.boxes):
        colour = (60, 220, 60) if i in covering else (240, 200, 40)
        img[t, left:left + m] = img[t + m - 1, left:left + m] = colour
        img[t:t + m, left] = img[t:t + m, left + m - 1] = colour
    return img


cleanser_tab, transform_tab, results_tab = st.tabs(["PatchCleanser", "Input transformations", "Measured results"])

with cleanser_tab, ui.user_errors():
    left, right = st.columns([1, 2], gap="large")
    with left:
        image = pick_photo("pc")
        models = ui.available_models()
        model_name = st.selectbox("Model", models, index=models.index("efficientnet_lite0"), key="pc_model",
                                  help="Any zoo model, or a fine-tuned checkpoint loaded in the sidebar of other "
                                       "pages; PatchCleanser wraps it unchanged")
        area = st.select_slider("Certify against patches up to", [0.02, 0.03, 0.05, 0.08, 0.10, 0.15], 0.02,
                                format_func=lambda a: f"{a:.0%} of the image", key="pc_area")
        k = st.slider("Masks per side (k)", 2, 6, 4, key="pc_k",
                      help="k*k masks; a certificate takes k*k*(k*k+1)/2 passes (k=6: 666)")
        patch = ui.choose_patch("pc_patch", allow_none=True, label="Patch to paste")
        top = st.slider("Patch row", 0.0, 1.0, 0.2, 0.05, key="pc_top", disabled=patch is None)
        lft = st.slider("Patch column", 0.0, 1.0, 0.7, 0.05, key="pc_left", disabled=patch is None)
        run = st.button("Run PatchCleanser", type="primary", disabled=image is None, key="pc_run")
    if run and image is not None:
        from patchlab.defenses import PatchCleanser

        model = ui.get_model(model_name)
        x = model_input(image, model, patch, area, top, lft)
        pc = PatchCleanser(model, area, k)
        with st.spinner(f"Up to {pc.masks.pairs} masked passes…"):
            with model.lock:
                verdict = pc.verdict(x)
        side = pc.masks.patch
        covering = (pc.masks.covering(round(top * (pc.image_size - side)), round(lft * (pc.image_size - side)))
                    if patch is not None else [])
        st.session_state["pc_result"] = {"x": x, "verdict": verdict.to_dict(), "settings": pc.settings,
                                         "grid": mask_grid(x, pc.masks, covering), "patch": patch is not None,
                                         "covering": covering}
    res = st.session_state.get("pc_result")
    with right:
        if res is None:
            st.info("Pick a photo (and optionally a patch), then press **Run PatchCleanser**.")
        else:
            v, labels = res["verdict"], ui.class_names()
            if v["certified"]:
                st.success(f"Certified: **{labels[v['prediction']]}**. No patch of up to "
                           f"{res['settings']['patch_side']} px square, anywhere, can change this answer.",
                           icon=":material/verified_user:")
            else:
                st.warning(f"Defended prediction **{labels[v['prediction']]}**, not certified (some pair of "
                           "masks changes the answer).", icon=":material/gpp_maybe:")
            cols = st.columns(4)
            cols[0].metric("Undefended", labels[v["undefended"]])
            cols[1].metric("Defended", labels[v["prediction"]], f"case {v['case']}", delta_color="off",
                           delta_arrow="off")
            cols[2].metric("Masked passes", v["passes"], f"of {res['settings']['pairs']}", delta_color="off",
                           delta_arrow="off")
            cols[3].metric("Time", f"{v['seconds']:.1f} s")
            st.image(res["grid"], caption=f"{res['settings']['masks']} masks of {res['settings']['mask_size']} px"
                     + (f"; green: the {len(res['covering'])} covering the patch" if res["patch"] else ""),
                     width=448)
            st.caption("Case 1: all one-mask predictions agree. Case 2: a disagreeing mask survives the second "
                       "round (the patch was under it). Case 3: the majority.")

with transform_tab, ui.user_errors():
    left, right = st.columns([1, 2], gap="large")
    with left:
        image_t = pick_photo("tr")
        models = ui.available_models()
        model_t = st.selectbox("Model", models, index=models.index("efficientnet_lite0"), key="tr_model")
        transform_name = st.selectbox("Defense", [d for d in defense_names("transforms") if d != "none"],
                                      format_func=DEFENSES.title, key="tr_name")
        patch_t = ui.choose_patch("tr_patch", allow_none=True, label="Patch to paste")
        area_t = st.slider("Patch area", 0.02, 0.25, 0.10, 0.01, key="tr_area", disabled=patch_t is None)
    if image_t is not None:
        import torch

        from patchlab.defenses.registry import make_transform

        model = ui.get_model(model_t)
        x = model_input(image_t, model, patch_t, area_t, 0.5, 0.5)
        t = make_transform(transform_name)
        with torch.no_grad():
            y = t(x[None])[0]
        probs, probs_t = model.predict(x[None])[0].cpu(), model.predict(y[None])[0].cpu()
        labels = ui.class_names()
        with right:
            c1, c2 = st.columns(2)
            with c1:
                st.image(ui.to_display(x), caption="Input", width="stretch")
                ui.show_topk(probs, labels, key="tr_top_in")
            with c2:
                st.image(ui.to_display(y), caption=f"After {DEFENSES.title(transform_name).lower()}", width="stretch")
                ui.show_topk(probs_t, labels, key="tr_top_out")
            st.caption("A transformation that removes the patch here may still fail: an attacker who knows it "
                       "differentiates through it with BPDA (and EOT for random ones). See the measured results.")

with results_tab:
    files = sorted(RESULTS.glob("*.json")) if RESULTS.is_dir() else []
    if not files:
        st.info("No benchmark results yet: `make bench` (tests/benchmarks/test_bench_defenses.py) writes them to "
                "docs/results/defenses/.")
    for f in files:
        data = json.loads(f.read_text())
        st.subheader(data.get("title", f.stem))
        if data.get("note"):
            st.caption(data["note"])
        if data.get("table"):
            st.dataframe(data["table"], hide_index=True, width="stretch")
