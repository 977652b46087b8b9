"""Print & photo: make patch sheets, Kurakin sheets and colour charts; score photos of printed sheets (rectified
page, per-cell results, destruction rates); fit a colour model from a chart photo."""

import json

import streamlit as st

from patchlab.app import ui
from patchlab.app.uploads import IMAGE_TYPES, check_upload, read_uploaded_json
from patchlab.errors import PatchlabError

st.title("Print & photo")
st.caption("Every sheet carries four ArUco markers, a QR code and a 100 mm scale bar, so a phone photo can be "
           "rectified and scored. Print at 100 % (no fit-to-page).")

SHEETS = "pp_sheets"  # this session's sheets: sheet_id -> {"kind", "manifest", "pages", "pdf"}


def remember(kind: str, manifest, pages, pdf: bytes) -> None:
    sheets = st.session_state.setdefault(SHEETS, {})
    sheets[manifest.sheet_id] = {"kind": kind, "manifest": manifest, "pages": pages, "pdf": pdf}
    st.session_state["pp_last_sheet"] = manifest.sheet_id


def last_sheet_downloads(kind: str) -> None:
    """Downloads for the sheet made last in this session, when it is of this tab's kind."""
    last = st.session_state.get("pp_last_sheet")
    if last and st.session_state[SHEETS][last]["kind"] == kind:
        sheet_downloads(last, f"pp_{kind}_dl")


def sheet_downloads(sheet_id: str, key: str) -> None:
    sheet = st.session_state[SHEETS][sheet_id]
    from patchlab.physical.layout import render_page

    manifest = sheet["manifest"]
    c1, c2 = st.columns([1, 2])
    c1.image(render_page(sheet["pages"][0], px_per_mm=1.5), caption=f"{sheet['kind']} sheet {sheet_id}, page 1 "
             f"of {manifest.n_pages}", width="stretch")
    with c2:
        # the sheet id is a hash of the sheet's content, so these names are never shared by two different sheets
        st.download_button("Download PDF", sheet["pdf"], file_name=f"{sheet['kind']}_{sheet_id}.pdf",
                           mime="application/pdf", type="primary", key=f"{key}_pdf")
        st.download_button("Download manifest JSON", manifest.json_text(),
                           file_name=f"{sheet['kind']}_{sheet_id}.sheet.json", mime="application/json",
                           key=f"{key}_json",
                           help="Photo-eval reads patch sheets and charts from the QR code; Kurakin sheets need this")
        st.caption(f"{len(manifest.cells)} cells on {manifest.n_pages} page(s), paper {manifest.paper.upper()}.")


make_tab, score_tab, colour_tab = st.tabs(["Make sheets", "Score photos", "Colour calibration"])

# --- make ----------------------------------------------------------------------------------------------------------
with make_tab:
    patch_kind, kurakin_kind, chart_kind = st.tabs(["Patch sheet", "Kurakin sheet", "Calibration chart"])
    with patch_kind, ui.user_errors():
        patch = ui.choose_patch("pp_patch")
        c1, c2, c3 = st.columns(3)
        size_mm = c1.number_input("Patch width (mm)", 20.0, 190.0, 100.0, 5.0, key="pp_size")
        extra = c2.text_input("Extra copies (mm, comma-separated)", "", key="pp_extra",
                              help="e.g. '50, 30' adds smaller copies to measure success against printed size")
        paper = c3.radio("Paper", ["a4", "letter"], horizontal=True, key="pp_paper")
        if st.button("Make patch sheet", type="primary", disabled=patch is None, key="pp_make_patch"):
            from patchlab.physical.printing import print_patch

            try:
                sizes = [size_mm] + [float(v) for v in extra.split(",") if v.strip()]
            except ValueError:
                raise PatchlabError(f"extra copy sizes must be numbers in mm, got {extra!r}") from None
            meta = dict(patch["meta"], patch=patch["name"], target=ui.patch_target(patch["meta"]),
                        model=(patch["meta"].get("models") or [None])[0])
            res = print_patch(ui.png_bytes(patch["rgba"]), size_mm=size_mm, paper=paper, copies_sizes=sizes,
                              png_dpi=None, meta=meta, name=patch["name"])
            remember("patch", res.manifest, res.pages, res.pdf)
        last_sheet_downloads("patch")

    with kurakin_kind, ui.user_errors():
        st.caption("Kurakin et al. (2016): print clean and adversarial versions side by side, photograph them, "
                   "and measure how many adversarial examples the camera 'destroys'.")
        from patchlab.app.scenes import BUILTIN, IMAGENET, scene_sources

        sources = scene_sources()
        c1, c2, c3 = st.columns(3)
        source = c1.selectbox("Images", list(sources), index=list(sources).index(BUILTIN), key="pp_k_source")
        count = int(c1.number_input("How many", 1, min(sources[source], 40), min(sources[source], 2), key="pp_k_n"))
        models = ui.available_models()
        kmodel = c1.selectbox("Model", models, index=models.index("efficientnet_lite0"), key="pp_k_model")
        attacks = c2.multiselect("Attacks", ["fgsm", "bim", "ll"], default=["fgsm", "bim", "ll"], key="pp_k_attacks",
                                 help="fgsm: one step · bim: iterative · ll: iterative least-likely class")
        eps_text = c2.text_input("ε values (in 1/255)", "2, 4, 8, 16", key="pp_k_eps")
        cell_mm = c3.number_input("Cell size (mm)", 20.0, 120.0, 40.0, 5.0, key="pp_k_cell")
        kpaper = c3.radio("Paper", ["a4", "letter"], horizontal=True, key="pp_k_paper")
        if st.button("Make Kurakin sheet", type="primary", disabled=not attacks, key="pp_make_kurakin"):
            from patchlab.errors import parse_eps_list
            from patchlab.physical.kurakin import build_kurakin_sheet, load_labelled_images

            if source == IMAGENET:
                from patchlab.data import list_images, shared_data_dir

                images, labels, names = load_labelled_images(list_images(shared_data_dir() / "imagenet-sample")[:count])
            else:
                from patchlab.data import load_samples

                samples = load_samples()[:count]
                images, labels, names = [s.image for s in samples], [s.label for s in samples], [s.name for s in samples]
            bar = st.progress(0.0, text="Attacking…")
            sheet = build_kurakin_sheet(ui.get_model(kmodel), images, labels, names, attacks=attacks,
                                        eps=parse_eps_list(eps_text), paper=kpaper, cell_mm=cell_mm,
                                        progress=lambda s, t, m: bar.progress(s / t, text=f"{m['attack']} ε={m['eps']}/255"))
            bar.empty()
            remember("kurakin", sheet.manifest, sheet.pages, sheet.pdf)
        last_sheet_downloads("kurakin")

    with chart_kind, ui.user_errors():
        st.caption("A grid of RGB swatches plus greys. Photograph it under the light you will test in, then fit the "
                   "printer→camera colour model on the Colour calibration tab (used by EOT and the NPS palette).")
        c1, c2 = st.columns(2)
        levels = c1.slider("Levels per channel", 3, 9, 7, key="pp_c_levels")
        cpaper = c2.radio("Paper", ["a4", "letter"], horizontal=True, key="pp_c_paper")
        if st.button("Make calibration chart", type="primary", key="pp_make_chart"):
            from patchlab.physical.calibration import make_chart

            pdf, manifest, pages = make_chart(cpaper, levels)
            remember("chart", manifest, pages, pdf)
        last_sheet_downloads("chart")


def shipped_manifests(kinds: tuple[str, ...]) -> list[str]:
    """Sheet manifests shipped in printables/ (for photos of the shipped PDFs)."""
    names = []
    for path in sorted(ui.PRINTABLES.glob("*.json")) if ui.PRINTABLES.is_dir() else []:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("kind") in kinds and "cells" in data:
            names.append(path.name)
    return names


def manifest_picker(key: str, kinds: tuple[str, ...]):
    """None = read the QR code; otherwise a SheetManifest (made in this session, or uploaded)."""
    from patchlab.physical.sheets import SheetManifest

    made = {sid: s for sid, s in st.session_state.get(SHEETS, {}).items() if s["kind"] in kinds}
    options = [f"{s['kind']} sheet {sid} (made here)" for sid, s in made.items()][::-1]
    options += ["read the QR code on the photo"]
    shipped = shipped_manifests(kinds)
    options += [f"shipped: printables/{name}" for name in shipped]
    options += ["upload a manifest JSON"]
    choice = st.selectbox("Sheet", options, key=f"{key}_manifest_{len(made)}")  # a new sheet becomes the default
    if choice.startswith("read the QR"):
        return None
    if choice.startswith("shipped: "):
        return SheetManifest.from_json(ui.PRINTABLES / choice.removeprefix("shipped: printables/"))
    if choice.startswith("upload"):
        up = st.file_uploader("Manifest JSON", type=["json"], key=f"{key}_manifest_json")
        if up is None:
            return None
        return SheetManifest.from_dict(read_uploaded_json(up, what="a patchlab sheet manifest"))
    return made[choice.split(" sheet ", 1)[1].split(" ", 1)[0]]["manifest"]


def photo_inputs(key: str, kinds: tuple[str, ...]) -> list[tuple[str, bytes]]:
    """Uploaded photos, plus a simulated photo of this session's sheet (for trying it without a printer)."""
    ups = st.file_uploader("Photos of the printed sheet", type=list(IMAGE_TYPES), accept_multiple_files=True,
                           key=f"{key}_photos")
    photos = [(u.name, check_upload(u.name, u.getvalue())) for u in ups or []]
    made = [sid for sid, s in st.session_state.get(SHEETS, {}).items() if s["kind"] in kinds]
    if made:
        with st.expander("No printer at hand? Simulate a photo of the last sheet made here"):
            seed = int(st.number_input("Random view (seed)", 0, 10_000, 0, key=f"{key}_seed"))
            if st.button("Simulate a phone photo", key=f"{key}_simulate"):
                from patchlab.simulate import simulate_page_photo

                sheet = st.session_state[SHEETS][made[-1]]
                from patchlab.artifacts import tag_jpeg_bytes

                sim = simulate_page_photo(sheet["pages"][0], seed=seed)
                st.session_state[f"{key}_sim"] = (f"simulated_{made[-1]}_seed{seed}.jpg",
                                                  tag_jpeg_bytes(sim.jpeg, "photo", ui.APP_WRITER))
            if f"{key}_sim" in st.session_state:
                name, jpeg = st.session_state[f"{key}_sim"]
                st.download_button("Download the simulated photo", jpeg, file_name=name, mime="image/jpeg",
                                   key=f"{key}_sim_dl")
                photos.append((name, jpeg))
    return photos


# --- score ---------------------------------------------------------------------------------------------------------
with score_tab, ui.user_errors():
    manifest = manifest_picker("pp_eval", ("patch", "kurakin"))
    photos = photo_inputs("pp_eval", ("patch", "kurakin"))
    if photos and st.button("Score the photos", type="primary", key="pp_score"):
        import pandas as pd

        from patchlab.physical import evaluate_photo
        from patchlab.physical.photo_eval import kurakin_summary, load_photo, merge_cells
        from patchlab.geometry import rectify_page

        results = []
        for name, data in photos:
            try:
                photo = load_photo(data, name)
                model = ui.get_model(manifest.meta["model"]) if manifest is not None and manifest.meta.get("model") \
                    and manifest.kind == "kurakin" else None
                res = evaluate_photo(photo, manifest, model=model, name=name)
            except PatchlabError as exc:
                st.error(f"{name}: {exc}", icon=":material/error:")
                continue
            results.append(res)
            st.markdown(f"#### {name} — {res.kind} sheet {res.sheet_id}, page {res.page + 1}")
            p1, p2 = st.columns(2)
            p1.image(res.annotated, caption="Detected markers, page outline and cells", width="stretch")
            from patchlab.physical.sheets import paper_size

            p2.image(rectify_page(photo, res.fit.H, paper_size(manifest.paper if manifest else
                                                               (res.qr or {}).get("paper", "a4")), 2.0),
                     caption="Rectified page", width="stretch")
            fit = res.fit.summary()
            st.caption(f"markers found {fit['found_markers']} · reprojection RMS {fit['reprojection_rms_mm']:.2f} mm"
                       + (f" · print scale {res.scale['print_scale']:.3f}" if res.scale.get("print_scale") else ""))
            if res.cells:
                rows = [{"cell": c.id, "source": c.meta.get("source"), "attack": c.meta.get("attack"),
                         "ε (/255)": round(float(c.meta.get("eps", 0)) * 255, 2),
                         "true class": c.meta.get("label_name"),
                         "digital top-1": ui.class_names()[c.meta["digital_top5"][0]],
                         "photo top-1": c.labels[0], "photo prob.": c.probs[0],
                         "correct in photo": c.top1 == c.meta.get("label")} for c in res.cells]
                st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key=f"pp_cells_{len(results)}",
                             column_config={"photo prob.": st.column_config.NumberColumn(format="percent")})
            if res.patches:
                st.dataframe(pd.DataFrame(res.patches).drop(columns=["corners_px"]), hide_index=True,
                             width="stretch", key=f"pp_patches_{len(results)}")
            if res.scene:
                top = res.scene["top5"][0]
                st.metric("Whole photo, top-1", top["label"], f"{top['prob']:.0%}", delta_color="off",
                          delta_arrow="off")
                if res.scene.get("target_is_top1") is not None:
                    st.write(f"Target **{res.scene['target']}** is top-1: **{res.scene['target_is_top1']}**")
        cells = merge_cells(results)
        if cells:
            summary = kurakin_summary(cells)
            st.subheader(f"Destruction rates over {len(results)} photo(s)")
            st.caption("Destruction rate (Kurakin et al.): of the adversarial images that fooled the model digitally "
                       "(while the clean one was right), the share the photo classifies correctly again.")
            table = pd.DataFrame(summary["table"])[["attack", "eps_255", "n", "digital_accuracy", "photo_accuracy",
                                                   "destruction_top1", "destruction_top1_n", "destruction_top5",
                                                   "destruction_top5_n"]]
            table = table.rename(columns={"eps_255": "ε (/255)", "destruction_top1_n": "n (top-1)",
                                          "destruction_top5_n": "n (top-5)"})
            rates = ("digital_accuracy", "photo_accuracy", "destruction_top1", "destruction_top5")
            st.dataframe(table, hide_index=True, width="stretch", key="pp_destruction",
                         column_config={c: st.column_config.NumberColumn(format="percent") for c in rates})
            st.session_state["pp_eval_summary"] = summary
        st.session_state["pp_eval_count"] = len(results)

# --- colour --------------------------------------------------------------------------------------------------------
with colour_tab, ui.user_errors():
    st.caption("Upload a photo of the printed calibration chart: the swatches are sampled, a colour model is fitted "
               "and checked on held-out swatches (CIEDE2000).")
    cmanifest = manifest_picker("pp_cal", ("chart",))
    kind = st.selectbox("Colour model", ["root_polynomial", "affine", "per_channel"], key="pp_cal_kind")
    chart_photos = photo_inputs("pp_cal", ("chart",))
    if chart_photos and st.button("Fit the colour model", type="primary", key="pp_fit"):
        from patchlab.physical.calibration import fit_calibration

        name, data = chart_photos[-1]
        cal = fit_calibration(data, cmanifest, kind=kind, name=name)
        st.session_state["pp_calibration"] = cal
    cal = st.session_state.get("pp_calibration")
    if cal is not None:
        m = st.columns(3)
        m[0].metric("Held-out ΔE2000 (median)", f"{cal.holdout_delta_e['median']:.2f}")
        m[1].metric("Held-out ΔE2000 (p95)", f"{cal.holdout_delta_e['p95']:.2f}")
        m[2].metric("Without a colour model (median)", f"{cal.identity_delta_e['median']:.2f}")
        st.caption(f"{cal.n_swatches} swatches, {cal.n_holdout} held out. Use the JSON as `colour:` in a patch run.")
        from patchlab.artifacts import tag

        model_json = json.dumps({**tag("colour-model", ui.APP_WRITER), **cal.model.to_dict()}, indent=1, default=float)
        st.download_button("Download colour model JSON", model_json,
                           file_name=ui.download_name("chart", "colour-model", model_json), mime="application/json",
                           key="pp_cal_dl")
