"""The Live camera page: the WebRTC frame callback glue (real frames through the capture pipeline), and the
snapshot fallback under AppTest (WebRTC itself is covered by tests/e2e/test_e2e_camera.py)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.apptest import open_page


@pytest.fixture(scope="module")
def scene_frames():
    from patchlab.simulate import SyntheticScene

    scene = SyntheticScene(size=(320, 240))
    return [scene.frame(i).image for i in range(4)]


def test_live_feed_callback_processes_frames_and_records(lite0, scene_frames, tmp_path):
    import av

    from patchlab.app.live import LiveFeed, parse_ice_servers
    from patchlab.capture import EagerBackend, LiveState

    feed = LiveFeed(LiveState(EagerBackend(lite0), target="toaster"))
    assert feed.latest() == (None, 0, None)
    frame = av.VideoFrame.from_ndarray(scene_frames[0], format="bgr24")
    frame.pts = 7
    out = feed.callback(frame)
    assert out.pts == 7 and (out.width, out.height) == (320, 240)
    assert not np.array_equal(out.to_ndarray(format="bgr24"), scene_frames[0])  # the overlay was drawn
    feed.start_recording(tmp_path / "rec", meta={"source": "test"})
    for f in scene_frames[1:]:
        feed.callback(av.VideoFrame.from_ndarray(f, format="bgr24"))
    result, frames, error = feed.latest()
    assert frames == 4 and error is None and result.target_label == "toaster" and len(result.top5) == 5
    summary, folder = feed.stop_recording()
    assert summary["attack"]["frames"] == 3 and (folder / "frames.jsonl").read_text().count("\n") == 3
    assert feed.stop_recording() is None
    # a bad frame does not kill the stream: it is passed through and reported
    bad = np.zeros((10, 10), np.uint8)
    assert feed.process(bad) is bad and "expected a BGR uint8 frame" in feed.latest()[2]

    assert parse_ice_servers("") == [] and parse_ice_servers("[]") == []
    assert parse_ice_servers('[{"urls": ["stun:stun.example.org:3478"]}]')[0]["urls"]
    from patchlab.errors import PatchlabError

    with pytest.raises(PatchlabError, match="JSON list"):
        parse_ice_servers("stun:nope")


def test_snapshot_fallback_classifies_an_upload(lite0, scene_frames):
    from patchlab.capture import EagerBackend, LiveState, process_frame

    at = open_page("live_camera")
    assert any("needs a browser session" in w.value for w in at.warning)
    at.radio(key="live_backend").set_value("eager").run()

    at.file_uploader(key="live_upload").upload("frame.png", b"\x89PNG\r\n\x1a\nbroken", "image/png").run()
    assert not at.exception, at.exception
    assert any("frame.png" in e.value for e in at.error)

    frame = scene_frames[2]
    buf = io.BytesIO()
    Image.fromarray(frame[..., ::-1]).save(buf, format="PNG")
    at.file_uploader(key="live_upload").upload("frame.png", buf.getvalue(), "image/png").run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    _, expected = process_frame(frame, LiveState(EagerBackend(lite0), target="toaster"))
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Top-1"] == expected.top1["label"]
    assert metrics["P(toaster)"] == f"{expected.target_prob:.1%}"


def test_snapshot_with_virtual_patch_on_the_sheet_markers():
    from patchlab.simulate import SyntheticScene

    frame = SyntheticScene(size=(640, 480)).frame(0).image
    at = open_page("live_camera")
    at.radio(key="live_backend").set_value("eager")
    at.selectbox(key="live_patch_choice").set_value("upload a patch PNG").run()
    rgba = np.dstack([np.random.default_rng(1).integers(0, 255, (48, 48, 3), dtype=np.uint8),
                      np.full((48, 48), 255, np.uint8)])
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    at.file_uploader(key="live_patch_png").upload("noise.png", buf.getvalue(), "image/png").run()
    at.checkbox(key="live_virtual").check().run()
    shot = io.BytesIO()
    Image.fromarray(frame[..., ::-1]).save(shot, format="PNG")
    at.file_uploader(key="live_upload").upload("scene.png", shot.getvalue(), "image/png").run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    caption = " ".join(c.value for c in at.caption)
    assert "virtual patch pasted" in caption and "markers seen: [0, 1, 2, 3]" in caption, caption


def test_fps_is_the_rate_of_frames_really_processed():
    """Bursty frames (pairs 10 ms apart every 200 ms = 10 frames/s): the meter reads 10, where an average of
    instantaneous rates read ~50; a stalled stream decays towards 0 instead of freezing at the last value."""
    from patchlab.capture.pipeline import FpsMeter

    meter = FpsMeter(window=2.0)
    t = 100.0
    for _ in range(20):
        meter.tick(t)
        meter.tick(t + 0.01)
        t += 0.2
    assert abs(meter.rate(t - 0.19) - 10.0) < 1.0
    assert meter.rate(t + 1.5) < 5.0 and meter.rate(t + 5.0) == 0.0
    early = FpsMeter(window=2.0)  # before a whole window has passed: frames over their own span
    for k in range(5):
        early.tick(10.0 + 0.1 * k)
    assert abs(early.rate(10.4) - 10.0) < 0.01


def test_live_feed_counts_camera_frames_and_processes_the_newest(lite0, scene_frames):
    import asyncio

    import av

    from patchlab.app.live import LiveFeed
    from patchlab.capture import EagerBackend, LiveState

    feed = LiveFeed(LiveState(EagerBackend(lite0), target="toaster"))
    queued = [av.VideoFrame.from_ndarray(f, format="bgr24") for f in scene_frames[:3]]
    for i, f in enumerate(queued):
        f.pts = i
    # in a thread of its own: the suite's shared sync Playwright keeps an event loop running in the main thread
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        out = pool.submit(asyncio.run, feed.queued_callback(queued)).result()
    assert len(out) == 1 and out[0].pts == 2  # the newest frame, annotated
    rates = feed.rates()
    assert rates["received"] == 3 and rates["processed"] == 1
    assert feed.latest()[1] == 1


def test_a_stop_seen_only_in_the_raw_component_value_stops_the_stream():
    """The flake this guards: STOP's value change reached the server inside a timer-driven fragment run, the
    component's on_change never fired, ctx.state stayed "playing", and the page polled a stopped stream forever."""
    from types import SimpleNamespace

    from streamlit_webrtc.component import generate_frontend_component_key  # the key the page reads must exist

    from patchlab.app.live import stream_playing

    def ctx(playing):
        return SimpleNamespace(state=SimpleNamespace(playing=playing))

    raw = generate_frontend_component_key("k")
    assert stream_playing(ctx(True), "k", {raw: {"playing": True, "sdpOffer": "x"}})
    assert not stream_playing(ctx(True), "k", {raw: {"playing": False}})  # the stale context is overruled
    assert not stream_playing(ctx(False), "k", {raw: {"playing": True}})
    assert stream_playing(ctx(True), "k", {})  # no raw value yet: the context decides
