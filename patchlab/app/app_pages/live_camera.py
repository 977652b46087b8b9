"""Live camera: streamlit-webrtc live classification with the capture pipeline's `process_frame`, an optional
virtual patch, recording with summary statistics, and an `st.camera_input` / upload snapshot fallback."""

import streamlit as st

from patchlab.app import ui
from patchlab.app.uploads import IMAGE_TYPES

st.title("Live camera")
st.caption("Point your camera at a printed patch sheet. Every frame goes through `patchlab.capture.process_frame`: "
           "markers → optional virtual patch → classify → overlay. Works on localhost with no STUN/TURN server.")


@st.cache_resource(show_spinner="Preparing the live classifier…", max_entries=4)
def live_backend(model_name: str, kind: str):
    """Shared by all sessions: both backends are thread-safe (ONNX Runtime's run; eager takes the model's lock)."""
    from patchlab.capture import load_backend

    return load_backend(ui.get_model(model_name), kind=kind)


def build_state(settings: dict):
    from patchlab.capture import LiveState, Patch
    from patchlab.data import to_uint8_hwc

    patch = settings["patch"]
    cap_patch = None
    if patch is not None:
        cap_patch = Patch.from_rgba(to_uint8_hwc(patch["rgba"]), name=patch["name"],
                                    target=ui.patch_target(patch["meta"]))
    backend = live_backend(settings["model"], settings["backend"])
    return LiveState(backend, target=settings["target"],
                     patch=cap_patch, virtual=settings["virtual"] and cap_patch is not None,
                     anchor=settings["anchor"], patch_scale=settings["scale"], crop=settings["crop"],
                     defense=live_defense(settings["model"], settings["backend"], settings["defense"],
                                          settings["defense_area"]))


@st.cache_resource(show_spinner="Preparing the defense…", max_entries=4)
def live_defense(model_name: str, kind: str, name: str, area: float):
    """Shared like the backend: LiveDefense takes the model's lock around each call."""
    if name == "none":
        return None
    from patchlab.defenses.live import LiveDefense, live_model

    return LiveDefense(name, live_model(live_backend(model_name, kind)), patch_area=area)


def show_result(result, frames: int | None = None, rates: dict | None = None) -> None:
    cols = st.columns([3, 2]) + st.columns([3, 2])
    cols[0].metric("Top-1", result.top1["label"], f"{result.top1['prob']:.0%}", delta_color="off", delta_arrow="off")
    if result.target_prob is not None:
        cols[1].metric(f"P({result.target_label})", f"{result.target_prob:.1%}",
                       "target is top-1" if result.is_target else "not top-1",
                       delta_color="normal" if result.is_target else "off")
    if rates is None:
        cols[2].metric("Latency", f"{result.latency_ms:.0f} ms")
    else:  # the rate of frames really processed over the last 2 s, read now; the camera's own rate beside it
        cols[2].metric("FPS", f"{rates['processed_fps']:.1f}", f"of {rates['received_fps']:.0f} camera fps · "
                       f"{result.latency_ms:.0f} ms/frame", delta_color="off", delta_arrow="off",
                       help="Frames processed per second over the last 2 s, out of the frames the camera delivered "
                            "(newer frames replace ones that arrive while a frame is being processed)")
    if frames is not None:
        cols[3].metric("Frames processed", frames)
    st.dataframe({"class": [t["label"] for t in result.top5], "probability": [t["prob"] for t in result.top5]},
                 hide_index=True, width="stretch", column_config={"probability": st.column_config.ProgressColumn(
                     "probability", min_value=0.0, max_value=1.0, format="percent")})
    if result.defense:
        cert = {True: "certified", False: "not certified", None: "no certificate"}[result.certified]
        st.metric(f"Defended ({result.defense})", result.defended_label, cert, delta_color="normal"
                  if result.certified else "off", delta_arrow="off")
    extra = [f"input region: {result.roi}", f"markers seen: {result.markers or 'none'}"]
    if result.patch_size_px:
        extra.append(f"patch ≈ {result.patch_size_px:.0f} px")
    if result.virtual_patch:
        extra.append("virtual patch pasted")
    st.caption(" · ".join(extra))


def show_summary(stats: dict) -> None:
    cols = st.columns(4)
    cols[0].metric("Recorded frames", stats.get("frames", 0))
    target = stats.get("target")
    if target:
        lo, hi = target["ci95"]
        cols[1].metric(f"Top-1 = {stats.get('target_label')}", f"{target['share']:.0%}",
                       f"95% CI {lo:.0%}–{hi:.0%} (n={target['n']})", delta_color="off", delta_arrow="off")
        cols[2].metric("Mean target probability", f"{stats['target_prob_mean']:.1%}")
    if "latency_ms" in stats:
        cols[3].metric("Latency p50 / p95", f"{stats['latency_ms']['p50']:.0f} / {stats['latency_ms']['p95']:.0f} ms",
                       f"{stats.get('fps', 0):.1f} FPS", delta_color="off", delta_arrow="off")
    if stats.get("top1_counts"):
        st.caption("Top-1 counts: " + ", ".join(f"{k} × {v}" for k, v in stats["top1_counts"].items()))


# --- settings ------------------------------------------------------------------------------------------------------
with ui.user_errors():
    with st.sidebar:
        st.header("Live settings")
        models = ui.available_models()
        model = st.selectbox("Model", models, index=models.index("efficientnet_lite0"), key="live_model")
        backend = st.radio("Inference", ["auto", "eager"], horizontal=True, key="live_backend",
                           help="auto: ONNX Runtime on CPU when installed (faster), eager PyTorch otherwise")
        patch = ui.choose_patch("live_patch", allow_none=True, label="Patch")
        names = ["(none)"] + ui.class_names()
        default_target = (ui.patch_target(patch["meta"]) if patch else None) or "toaster"
        target = st.selectbox("Target class", names, index=names.index(default_target) if default_target in names
                              else 0, key=f"live_target_{default_target}")
        virtual = st.checkbox("Paste the patch virtually", value=False, key="live_virtual", disabled=patch is None,
                              help="Composite the patch into each frame (on the sheet's markers, or fixed)")
        anchor = st.selectbox("Virtual patch anchor", ["sheet", "marker", "fixed"], key="live_anchor",
                              disabled=not virtual)
        scale = st.slider("Virtual patch scale", 0.3, 2.0, 1.0, 0.1, key="live_scale", disabled=not virtual)
        crop = st.selectbox("Input region", ["centre", "full", "markers"], key="live_crop",
                            help="centre: the eval centre crop; full: the whole frame; markers: the rectified sheet")
        from patchlab.defenses.live import LIVE_DEFENSES

        defense = st.selectbox("Defense", list(LIVE_DEFENSES), key="live_defense",
                               help="patchcleanser: certified double masking (slow on CPU: up to 666 passes per "
                                    "frame); lgs, jpeg, median: input transformations (see the Defenses page)")
        defense_area = st.slider("Certify against patches up to (share of the input)", 0.02, 0.25, 0.10, 0.01,
                                 key="live_defense_area", disabled=defense != "patchcleanser")
        with st.expander("Network (ICE servers)"):
            ice_text = st.text_area("iceServers (JSON)", "[]", key="live_ice",
                                    help="None are needed on localhost. For remote use add STUN/TURN, e.g. "
                                         '[{"urls": ["stun:stun.l.google.com:19302"]}]')

    settings = {"model": model, "backend": backend, "patch": patch, "target": None if target == "(none)" else target,
                "virtual": virtual, "anchor": anchor, "scale": scale, "crop": crop, "defense": defense,
                "defense_area": defense_area}
    key = repr({k: (v["name"] if k == "patch" and v else v) for k, v in settings.items()})
    if st.session_state.get("live_state_key") != key:
        st.session_state["live_state"] = build_state(settings)
        st.session_state["live_state_key"] = key
    state = st.session_state["live_state"]

    from patchlab.app.live import LiveFeed, parse_ice_servers

    if "live_feed" not in st.session_state:
        st.session_state["live_feed"] = LiveFeed(state)
    feed = st.session_state["live_feed"]
    feed.set_state(state)
    ice_servers = parse_ice_servers(ice_text)

    live_tab, snap_tab = st.tabs(["Live (WebRTC)", "Snapshot"])

    with snap_tab:
        st.caption("No WebRTC? Take a snapshot with the browser camera, or upload a photo; "
                   "it goes through the same frame function.")
        shot = st.camera_input("Snapshot", key="live_snapshot")
        upload = st.file_uploader("…or upload a photo", type=list(IMAGE_TYPES), key="live_upload")
        source = shot or upload
        if source is not None:
            import cv2

            from patchlab.app.uploads import read_uploaded_image
            from patchlab.capture import process_frame
            from patchlab.data import to_uint8_hwc

            frame = cv2.cvtColor(to_uint8_hwc(read_uploaded_image(source)), cv2.COLOR_RGB2BGR)
            annotated, result = process_frame(frame, build_state(settings))
            st.image(ui.data_uri(cv2.imencode(".jpg", annotated)[1].tobytes(), "image/jpeg"),
                     caption="Processed snapshot")
            show_result(result)

    WEBRTC_KEY = "patchlab-live"

    def live_section() -> None:
        from streamlit_webrtc import WebRtcMode, webrtc_streamer

        from patchlab.app.live import stream_playing, webrtc_session_available

        if not webrtc_session_available():
            st.warning("Live streaming needs a browser session (run `patchlab app`); the Snapshot tab works here.")
            return
        video_col, readout_col = st.columns([3, 2], gap="medium")
        with video_col:
            ctx = webrtc_streamer(
                key=WEBRTC_KEY, mode=WebRtcMode.SENDRECV, queued_video_frames_callback=feed.queued_callback,
                rtc_configuration={"iceServers": ice_servers},
                media_stream_constraints={"video": {"width": {"ideal": 640}, "height": {"ideal": 480},
                                                    "frameRate": {"ideal": 30}}, "audio": False},
                async_processing=True)
        playing = stream_playing(ctx, WEBRTC_KEY, st.session_state)

        @st.fragment(run_every=0.5 if playing else None)
        def readout() -> None:
            if playing and not stream_playing(ctx, WEBRTC_KEY, st.session_state):
                st.rerun()  # STOP's own full run was absorbed by this timer's run: redo it, which ends the timer
            result, frames, error = feed.latest()
            if error:
                st.error(error)
            if result is None:
                st.info("Press START to stream your camera (allow camera access when asked)."
                        if not playing else "Waiting for the first frame…")
                return
            show_result(result, frames, feed.rates())
            if not playing:
                st.caption("Stream stopped: showing the last frame's result.")

        with readout_col:
            readout()

        st.subheader("Recording")
        st.caption("Record every processed frame's result, then see the summary: how often the target is top-1 "
                   "(with a 95 % Wilson interval), by apparent patch size, and the speed.")
        rec_cols = st.columns(2)
        if not feed.recording:
            if rec_cols[0].button("Start recording", disabled=not playing, key="live_rec_start"):
                from patchlab.artifacts import next_run_folder

                folder = next_run_folder(ui.session_dir() / "recordings")  # run-001, run-002, ... never reused
                feed.start_recording(folder, meta={"model": model, "target": settings["target"],
                                                   "patch": patch["name"] if patch else None, "source": "browser",
                                                   "defense": defense})
                st.rerun()
        elif rec_cols[0].button("Stop recording", key="live_rec_stop", type="primary"):
            st.session_state["live_recording"] = feed.stop_recording()
            st.rerun()
        if feed.recording:
            rec_cols[1].markdown(":red[● recording]")
        done = st.session_state.get("live_recording")
        if done:
            summary, folder = done
            show_summary(summary["attack"])
            with st.expander("summary.json"):
                st.json(summary)
            frames = (folder / "frames.jsonl").read_bytes()
            from patchlab.artifacts import content_stem

            st.download_button("Download frames.jsonl", frames,
                               file_name=f"{content_stem(f'recording-{folder.name}', frames)}.frames.jsonl",
                               mime="application/jsonl", key="live_dl_frames")
            if summary.get("plot_error"):
                st.caption(f"(summary plot unavailable: {summary['plot_error']})")
            if (folder / "summary.png").is_file():
                st.image(ui.data_uri((folder / "summary.png").read_bytes()), caption="Recording summary")

    with live_tab:
        live_section()
