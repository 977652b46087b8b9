"""Patch studio: set up an EOT patch run, preview the transformations, optimise in a background thread with live
progress (stop / resume from the checkpoint), and download the PNG, its JSON sidecar and a print-ready PDF."""

import json
import uuid

import streamlit as st

from patchlab.app import ui
from patchlab.app.jobs import Job
from patchlab.app.scenes import IMAGENET, scene_folder, scene_sources

st.title("Patch studio")
st.caption("A universal adversarial patch (Brown et al. 2017) optimised under Expectation over Transformation: "
           "random placement, rotation, tilt, printer colour, lighting, blur, noise and JPEG — so it survives "
           "printing and a camera. Training runs in the background: you can keep using the page.")

JOB_KEY, CFG_KEY = "patch_job", "patch_job_config"
BASELINE_NAMES = {"random_noise": "noise patch", "natural_photo": "photo patch"}  # same shape, not optimised


def eot_settings() -> str | dict:
    from patchlab.eot import PRESETS, preset

    names = list(PRESETS) + ["custom"]
    choice = st.selectbox("EOT preset", names, index=names.index("print"), key="ps_eot",
                          help="digital: placement only · print: a printed patch photographed · webcam: live video")
    if choice != "custom":
        return choice
    base = preset("print")
    with st.container(border=True):
        st.caption("Custom ranges (starting from the print preset)")
        c1, c2 = st.columns(2)
        changes = {
            "rotation": c1.slider("Rotation ± (degrees)", 0.0, 90.0, base.rotation, 2.5, key="ps_rot"),
            "tilt": c2.slider("Out-of-plane tilt (degrees)", 0.0, 60.0, base.tilt, 5.0, key="ps_tilt"),
            "area_scale": c1.slider("Scale range (× area)", 0.3, 3.0, tuple(base.area_scale), 0.05, key="ps_scale"),
            "brightness": c2.slider("Brightness ±", 0.0, 0.5, base.brightness, 0.01, key="ps_bright"),
            "contrast": c1.slider("Contrast range", 0.3, 2.0, tuple(base.contrast), 0.05, key="ps_contrast"),
            "blur_sigma": c2.slider("Blur σ range (px)", 0.0, 3.0, tuple(base.blur_sigma), 0.1, key="ps_blur"),
            "noise": c1.slider("Sensor noise σ max", 0.0, 0.3, base.noise, 0.01, key="ps_noise"),
            "jpeg_p": c2.slider("JPEG probability", 0.0, 1.0, base.jpeg_p, 0.05, key="ps_jpeg"),
        }
    return base.replace(name="custom", **changes).to_dict()


def build_config(out_dir) -> dict:
    """The run's PatchConfig as a dict, from the widgets."""
    sources = scene_sources()
    c1, c2, c3 = st.columns(3)
    with c1:
        classes = ["(untargeted)"] + ui.class_names()
        target = st.selectbox("Target class", classes, index=classes.index("toaster"), key="ps_target")
        models = ui.available_models()
        chosen = st.multiselect("Model(s)", models, default=["efficientnet_lite0"], key="ps_models",
                                help="Several models = an ensemble patch (the loss is averaged)")
        shape = st.selectbox("Shape", ["square", "circle"], key="ps_shape")
        area = st.slider("Patch area (fraction of the image)", 0.02, 0.4, 0.10, 0.01, key="ps_area")
    with c2:
        eot = eot_settings()
    with c3:
        steps = int(st.number_input("Steps", 1, 20000, 300, 10, key="ps_steps"))
        batch = int(st.number_input("Batch (scenes per step)", 1, 64, 8, key="ps_batch"))
        patch_size = st.select_slider("Patch resolution (px)", [32, 48, 64, 96, 128, 192, 256], 128, key="ps_size")
        source = st.selectbox("Scenes", list(sources), key="ps_source",
                              format_func=lambda s: f"{s} ({sources[s]} images)")
        count = (st.slider("Scene images to use", 8, sources[IMAGENET], min(120, sources[IMAGENET]), 8,
                           key="ps_count") if source == IMAGENET else None)
        eval_every = int(st.number_input("Held-out check every N steps (0 = off)", 0, 5000,
                                         max(10, steps // 10), key="ps_eval"))
    return {"images": str(scene_folder(ui.session_dir() / "scenes", source, count)), "models": chosen,
            "target": None if target == "(untargeted)" else target, "area": area, "shape": shape,
            "patch_size": patch_size, "eot": eot, "steps": steps, "batch": batch, "eval_every": eval_every,
            "eval_images": 32, "checkpoint_every": 25, "log_every": 1,
            "out": str(out_dir / "patch.png")}


def start_job(cfg: dict, resume: bool) -> None:
    from patchlab.patch import PatchConfig, train_patch

    config = PatchConfig.from_dict(cfg)
    models = [ui.get_model(name) for name in config.models]  # shared, frozen: safe across threads

    def work(progress, stop):
        return train_patch(config, progress=progress, stop=stop, resume=resume, models=models)

    job = Job.start("patch", work)
    ui.when_session_ends(job.stop)  # a session that is gone stops its job before its scratch folder is removed
    st.session_state[JOB_KEY] = job
    st.session_state[CFG_KEY] = cfg
    st.session_state.pop("patch_done_seen", None)


def show_history(history: list[dict]) -> None:
    """Loss on the left; target probability on the batch and held-out success (both in [0, 1]) on the right."""
    import altair as alt
    import pandas as pd

    train = pd.DataFrame([h for h in history if "loss" in h])
    if train.empty:
        return
    held = pd.DataFrame([h for h in history if "heldout_success" in h])
    c1, c2 = st.columns(2)
    c1.caption("Training loss")
    c1.line_chart(train.set_index("step")[["loss"]], height=220)
    rates = train[["step", "target_prob"]].rename(columns={"target_prob": "value"}).assign(series="target prob. (batch)")
    if not held.empty:
        rates = pd.concat([rates, held[["step", "heldout_success"]].rename(columns={"heldout_success": "value"})
                          .assign(series="held-out success")])
    c2.caption("Target probability on the batch · held-out success (top-1 = target on unseen scenes)")
    chart = alt.Chart(rates).mark_line(point=alt.OverlayMarkDef(size=30)).encode(
        x=alt.X("step:Q"), y=alt.Y("value:Q", scale=alt.Scale(domain=[0, 1]), title=None),
        color=alt.Color("series:N", legend=alt.Legend(orient="bottom", title=None)))
    c2.altair_chart(chart.properties(height=220), width="stretch")


def studio_entry(result) -> dict:
    """What the other pages use: the patch tensor, its sidecar and where it lives."""
    name = "patch" if result.meta.get("target_name") is None else f"{result.meta['target_name']}_patch"
    return {"rgba": result.rgba, "meta": result.meta, "name": name.replace(" ", "_"),
            "path": str(result.path) if result.path else None, "step": result.step, "stopped": result.stopped}


@st.cache_data(show_spinner="Laying out the PDF…", max_entries=8)
def patch_pdf(png: bytes, size_mm: float, paper: str, target: str | None, name: str) -> bytes:
    from patchlab.physical.printing import print_patch

    return print_patch(png, size_mm=size_mm, paper=paper, png_dpi=None,
                       meta={"patch": name, "target": target}, name=name).pdf


def show_result(studio: dict, scenes: str) -> None:
    meta = studio["meta"]
    png = ui.png_bytes(studio["rgba"], kind="patch")
    c1, c2 = st.columns([1, 2])
    with c1:
        st.image(ui.to_display(studio["rgba"]), caption=studio["name"], width="stretch")
    with c2:
        target = ui.patch_target(meta)
        facts = [f"target **{target or 'untargeted'}**", f"models {', '.join(meta.get('models', [])) or '?'}",
                 f"area {meta.get('area', '?')}", f"{meta.get('steps', '?')} steps"]
        if studio.get("stopped"):
            facts.append("stopped early (resume to continue)")
        st.markdown(" · ".join(facts))
        held = [h for h in meta.get("history", []) if "heldout_success" in h]
        if held:
            st.metric("Held-out success at the last check", f"{held[-1]['heldout_success']:.0%}",
                      help=f"{held[-1].get('heldout_n', '?')} unseen scenes, EOT at the nominal area")
        # names carry a hash of the patch: downloads of other runs or sessions never land on these; the PNG and
        # its sidecar share a stem so `load_patch` finds the pair
        from patchlab.artifacts import tag

        from patchlab.artifacts import content_stem

        stem = content_stem(studio["name"], png)
        d1, d2, d3 = st.columns(3)
        d1.download_button("Patch PNG", png, file_name=f"{stem}.png", mime="image/png", key="ps_dl_png",
                           type="primary")
        sidecar = {**tag("patch-sidecar", ui.APP_WRITER), **{k: v for k, v in meta.items()
                                                              if k not in ("artifact", "written_by")}}
        d2.download_button("JSON sidecar", json.dumps(sidecar, indent=2, default=float),
                           file_name=f"{stem}.patch.json", mime="application/json", key="ps_dl_json")
        size_mm = st.slider("Printed width (mm)", 30, 190, 100, 5, key="ps_mm")
        paper = st.radio("Paper", ["a4", "letter"], horizontal=True, key="ps_paper")
        d3.download_button("Print-ready PDF", patch_pdf(png, float(size_mm), paper, target, studio["name"]),
                           file_name=f"{stem}-{size_mm}mm-{paper}.pdf", mime="application/pdf", key="ps_dl_pdf")
        st.caption("The PDF places the patch at exact size with ArUco markers, a QR code and a 100 mm scale bar; "
                   "print at 100 % (no fit-to-page), then test it on the Live camera or Print & photo page.")
    evaluate_section(studio, scenes)


def evaluate_section(studio: dict, scenes: str) -> None:
    """Success on scenes the patch was not trained on, against noise and natural-image patches of the same shape."""
    import pandas as pd

    meta = studio["meta"]
    with st.container(border=True):
        st.markdown("**Evaluate** on the scenes chosen in Settings (training images and images of the target class "
                    "are skipped), at the patch's nominal area, under its EOT preset with the scale fixed.")
        c1, c2 = st.columns(2)
        limit = int(c1.number_input("Images", 4, 700, 32, 4, key="ps_eval_n"))
        areas = c2.multiselect("Areas", [0.02, 0.05, 0.1, 0.15, 0.2, 0.3],
                               default=[min([0.02, 0.05, 0.1, 0.15, 0.2, 0.3],
                                            key=lambda a: abs(a - float(meta.get("area", 0.1))))], key="ps_eval_areas")
        source = studio.get("path") or studio["rgba"]
        target = None if studio.get("path") else ui.patch_target(meta)
        model_names = meta.get("models") or ["efficientnet_lite0"]
        b1, b2 = st.columns(2)
        if b1.button("Evaluate the patch", disabled=not areas, key="ps_evaluate"):
            from patchlab.patch import evaluate_patch

            models = [ui.get_model(m) for m in model_names]
            bar = st.progress(0.0, text="Evaluating…")
            result = evaluate_patch(source, scenes, models=models, target=target, eot=meta.get("eot"),
                                    areas=sorted(areas), limit=limit,
                                    progress=lambda s, t, m: bar.progress(min(1.0, s / max(t, 1)),
                                                                          text=f"{m['model']} · area {m['area']}"))
            bar.empty()
            st.session_state["ps_eval_result"] = result
        result = st.session_state.get("ps_eval_result")
        if result:
            rows = []
            for model, res in result["models"].items():
                for r in res["curve"]:
                    base = r.get("baselines", {})
                    rows.append({"model": model, "area": r["area"], "success": r["success_rate"],
                                 "95% CI": f"{r['ci95'][0]:.0%}–{r['ci95'][1]:.0%}", "n": r["n"],
                                 **{BASELINE_NAMES.get(k, k): v["success_rate"] for k, v in base.items()},
                                 "no patch": res["clean_target_rate"]})
            st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="ps_eval_table",
                         column_config={c: st.column_config.NumberColumn(format="percent")
                                        for c in ("success", "no patch", *BASELINE_NAMES.values())})
            st.caption(f"Target {result['target_name']} · {result['images']} images · preset {result['preset']} · "
                       f"{result['seconds']:.0f} s")
        if b2.button("Which effects cost the misses?", key="ps_breakdown",
                     help="The same draws with one group of EOT effects switched off at a time (paired)"):
            from patchlab.patch import effect_breakdown

            bar = st.progress(0.0, text="Switching effects off…")
            st.session_state["ps_breakdown_result"] = effect_breakdown(
                source, scenes, model=ui.get_model(model_names[0]), target=target, area=float(meta.get("area", 0.1)),
                eot=meta.get("eot"), draws=1, limit=limit,
                progress=lambda s, t, m: bar.progress(min(1.0, s / max(t, 1)), text=f"off: {m['off']}"))
            bar.empty()
        breakdown = st.session_state.get("ps_breakdown_result")
        if breakdown:
            st.dataframe(pd.DataFrame([{"effects switched off": ", ".join(r["off"]) or "none (all on)",
                                        "success": r["success_rate"], "change": r["gain"], "n": r["n"]}
                                       for r in breakdown["rows"]]),
                         hide_index=True, width="stretch", key="ps_breakdown_table",
                         column_config={c: st.column_config.NumberColumn(format="percent")
                                        for c in ("success", "change")})
            st.caption(f"{breakdown['model']} at {breakdown['area']:.0%} area · {breakdown['images']} images · "
                       f"preset {breakdown['preset']} · the same draws in every row · {breakdown['seconds']:.0f} s")


with ui.user_errors():
    job: Job | None = st.session_state.get(JOB_KEY)
    running = job is not None and job.snapshot().active

    with st.expander("1 · Settings", expanded=not running):
        out_dir = ui.session_dir() / f"patch-{st.session_state.setdefault('patch_run_id', uuid.uuid4().hex[:8])}"
        cfg = build_config(out_dir)
        with st.popover("Run settings as YAML"):
            from patchlab.patch import PatchConfig

            st.code(PatchConfig.from_dict(cfg).to_yaml(), language="yaml")

    with st.expander("2 · Preview the EOT samples"):
        st.caption("Sixteen random draws of the transformation distribution, on your scenes, with the current "
                   "patch (random noise before training).")
        if st.button("Show preview", key="ps_preview"):
            import torch

            from patchlab.eot import preview_grid
            from patchlab.patch import make_mask
            from patchlab.patch.data import list_scene_images, load_scenes

            studio = st.session_state.get(ui.STUDIO_PATCH_KEY)
            if studio is not None:
                rgba = studio["rgba"]
            else:
                g = torch.Generator().manual_seed(0)
                rgba = torch.cat([torch.rand(3, cfg["patch_size"], cfg["patch_size"], generator=g),
                                  make_mask(cfg["shape"], cfg["patch_size"])])
            size = max(ui.get_model(m).input_size for m in cfg["models"]) if cfg["models"] else 224
            scenes = load_scenes(list_scene_images(cfg["images"])[:8], size).float() / 255
            st.session_state["ps_preview_img"] = preview_grid(rgba, scenes, cfg["eot"], cfg["area"], n=16)
        if "ps_preview_img" in st.session_state:
            st.image(ui.to_display(st.session_state["ps_preview_img"]), width="stretch")

    st.subheader("3 · Optimise")
    loaded = st.session_state.get(ui.STUDIO_PATCH_KEY) or {}
    init_from_loaded = st.checkbox("Start from the loaded patch (e.g. the shipped one) instead of noise",
                                   disabled=running or not loaded.get("path"), key="ps_init_loaded")
    b1, b2, b3, b4 = st.columns(4)
    if b1.button("Start optimisation", type="primary", disabled=running or not cfg["models"], key="ps_start"):
        st.session_state["patch_run_id"] = uuid.uuid4().hex[:8]
        if init_from_loaded and loaded.get("path"):
            cfg["init"] = loaded["path"]
        cfg["out"] = str(ui.session_dir() / f"patch-{st.session_state['patch_run_id']}" / "patch.png")
        st.session_state["patch_prev_history"] = []
        start_job(cfg, resume=False)
        st.rerun()
    if b2.button("Stop", disabled=not running, key="ps_stop"):
        job.stop()
        job.join(60)
        st.rerun()
    snap = job.snapshot() if job is not None else None
    can_resume = snap is not None and snap.state in ("stopped", "done", "failed") and \
        st.session_state.get(CFG_KEY) is not None
    if b3.button("Resume", disabled=not can_resume, key="ps_resume",
                 help="Continue from the last checkpoint; only Steps may change"):
        resumed = dict(st.session_state[CFG_KEY], steps=cfg["steps"])
        st.session_state["patch_prev_history"] = st.session_state.get("patch_prev_history", []) + [
            {"step": step, **m} for step, m in snap.history if "phase" not in m]
        start_job(resumed, resume=True)
        st.rerun()
    if b4.button("Load the shipped patch", disabled=running or not ui.shipped_patches(), key="ps_load_shipped",
                 help="Load printables/ (its PNG + sidecar) to preview, evaluate, print or use on the camera page"):
        from patchlab.patch import load_patch

        path = ui.shipped_patches()[0]
        rgba, meta = load_patch(path)
        st.session_state[ui.STUDIO_PATCH_KEY] = {"rgba": rgba, "meta": meta, "name": path.stem, "path": str(path)}
        st.rerun()  # so the widgets above (e.g. "start from the loaded patch") see it

    @st.fragment(run_every=1.0 if running else None)
    def progress_panel() -> None:
        job = st.session_state.get(JOB_KEY)
        if job is None:
            st.info("No optimisation in this session yet. Press **Start optimisation**.")
            return
        snap = job.snapshot()
        metrics = snap.metrics
        if metrics.get("phase") == "loading images":
            st.progress(snap.fraction, text=f"Loading scene images {snap.step}/{snap.total}…")
        else:
            st.progress(snap.fraction, text=f"{snap.state}: step {snap.step}/{snap.total} · {snap.seconds:.0f} s")
            history = st.session_state.get("patch_prev_history", []) + [
                {"step": step, **m} for step, m in snap.history if "phase" not in m]
            cols = st.columns(4)
            cols[0].metric("Step", f"{snap.step}/{snap.total}")
            if "loss" in metrics:
                cols[1].metric("Loss", f"{metrics['loss']:.3f}")
                cols[2].metric("Target prob. (batch)", f"{metrics['target_prob']:.1%}")
            held = [h for h in history if "heldout_success" in h]
            if held:
                cols[3].metric("Held-out success", f"{held[-1]['heldout_success']:.0%}",
                               help=f"top-1 = target on unseen scenes, step {held[-1]['step']}")
            show_history(history)
        if snap.state == "failed":
            st.error(snap.error, icon=":material/error:")
        if not snap.active and not st.session_state.get("patch_done_seen"):
            st.session_state["patch_done_seen"] = True
            if snap.result is not None:
                st.session_state[ui.STUDIO_PATCH_KEY] = studio_entry(snap.result)
            st.rerun(scope="app")  # the results and downloads below

    progress_panel()

    st.subheader("4 · Result")
    studio = st.session_state.get(ui.STUDIO_PATCH_KEY)
    if studio is None:
        st.caption("The patch appears here when a run finishes or stops (or load the shipped one).")
    else:
        show_result(studio, cfg["images"])
