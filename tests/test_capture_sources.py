"""Frame sources: camera errors, latest-frame reader, reconnect/stop, video files, folders, synthetic scene, Wilson."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import cv2
import numpy as np
import pytest

from patchlab.capture import (CameraRequest, FolderSource, LatestFrameReader, OpenCVSource, ReconnectPolicy,
                              SourceState, open_camera, open_source, open_stream, open_video_file, parse_source,
                              write_video)
from patchlab.errors import PatchlabError
from patchlab.simulate import SyntheticScene
from patchlab.stats import wilson_interval


class FakeCapture:
    """A cv2.VideoCapture stand-in: `frames` good reads (numbered in pixel [0, 0]), then failures."""

    def __init__(self, frames: int, opened: bool = True, delay_s: float = 0.0, start: int = 0):
        self.left, self.opened, self.delay_s, self.count = frames, opened, delay_s, start
        self.released = False

    def isOpened(self):
        return self.opened

    def read(self):
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.left <= 0 or self.released:
            return False, None
        self.left -= 1
        self.count += 1
        frame = np.zeros((48, 64, 3), np.uint8)
        frame[0, 0, 0], frame[0, 0, 1] = self.count % 256, self.count // 256
        return True, frame

    def set(self, *args):
        return False

    def get(self, prop):
        return {cv2.CAP_PROP_FRAME_WIDTH: 64, cv2.CAP_PROP_FRAME_HEIGHT: 48, cv2.CAP_PROP_FPS: 30}.get(prop, 0)

    def release(self):
        self.released = True


def frame_number(frame: np.ndarray) -> int:
    return int(frame[0, 0, 0]) + 256 * int(frame[0, 0, 1])


def test_parse_source(tmp_path):
    assert parse_source("0").kind == "camera" and parse_source("2").target == 2
    assert parse_source("rtsp://cam.local/stream").kind == "stream"
    assert parse_source("http://10.0.0.2:8080/video").kind == "stream"
    assert parse_source("synthetic").kind == "synthetic"
    assert parse_source("synthetic:12").options == {"frames": 12}
    assert parse_source(str(tmp_path)).kind == "folder"
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"x")
    assert parse_source(str(clip)).kind == "video"
    with pytest.raises(PatchlabError, match="no such file or folder"):
        parse_source(str(tmp_path / "missing.mp4"))


def test_missing_camera_index_fails_fast_with_clear_message():
    start = time.monotonic()
    with pytest.raises(PatchlabError, match=r"no camera at index 7"):
        open_source("7")
    assert time.monotonic() - start < 3


def test_camera_that_does_not_open_or_hangs_fails_fast():
    with pytest.raises(PatchlabError, match=r"no camera at index 1 \(backend any: could not open it\)"):
        open_camera(CameraRequest(index=1), capture_factory=lambda: FakeCapture(0, opened=False))
    start = time.monotonic()
    with pytest.raises(PatchlabError, match="camera 4: did not open within 0.5 s"):
        open_camera(CameraRequest(index=4, open_timeout_s=0.5), capture_factory=lambda: time.sleep(5))
    assert time.monotonic() - start < 2


def test_cli_missing_camera_exits_2_quickly(capsys):
    from patchlab.cli import main

    start = time.monotonic()
    assert main(["camera", "--source", "9", "--headless"]) == 2
    assert time.monotonic() - start < 5
    assert "no camera at index 9" in capsys.readouterr().err


def test_camera_reports_requested_and_obtained_settings():
    source = open_camera(CameraRequest(index=0, width=1280, height=720, fps=30),
                         capture_factory=lambda: FakeCapture(3))
    info = source.info
    assert info["requested"] == {"width": 1280, "height": 720, "fps": 30, "fourcc": "MJPG", "backend": "any"}
    assert info["obtained"]["width"] == 64 and info["obtained"]["height"] == 48
    assert set(info["ignored"]) == {"width", "height"}  # the fake ignores every request, and that is reported
    source.close()


def test_stream_refused_is_one_clear_line():
    start = time.monotonic()
    with pytest.raises(PatchlabError, match=r"stream rtsp://127.0.0.1:1/none: refused or unreachable"):
        open_stream("rtsp://127.0.0.1:1/none", timeout_s=2)
    assert time.monotonic() - start < 5


def _fake_reader(caps: list, policy: ReconnectPolicy, **kw) -> LatestFrameReader:
    """A reader whose first source is caps[0] and whose reopen attempts take the next fakes (None = open fails)."""
    queue = list(caps[1:])

    def opener():
        cap = queue.pop(0) if queue else None
        if cap is None:
            raise PatchlabError("camera 0: no camera at index 0 (unplugged)")
        return OpenCVSource(0, "camera", cap, "camera 0", {"kind": "camera"})

    first = OpenCVSource(0, "camera", caps[0], "camera 0", {"kind": "camera"})
    return LatestFrameReader(opener, name="camera 0", policy=policy, first=first, **kw)


def test_capture_failing_mid_stream_reconnects_then_stops_after_n_failures():
    states = []
    policy = ReconnectPolicy(max_failures=3, backoff_s=0.02, max_backoff_s=0.05, read_timeout_s=2)
    # 5 frames, the stream drops; the first reopen works (5 more frames, numbered on), then the camera is gone
    reader = _fake_reader([FakeCapture(5, delay_s=0.002), FakeCapture(5, delay_s=0.002, start=5), None, None, None],
                          policy, on_state=lambda s: states.append((s.state, s.failures)))
    got = []
    start = time.monotonic()
    with pytest.raises(PatchlabError, match=r"camera 0: stopped after 3 failed reconnect attempts \(.*unplugged"):
        while True:
            frame = reader.read()
            got.append(frame_number(frame))
    assert time.monotonic() - start < 3
    assert got == sorted(got) and got[-1] == 10   # frames keep coming after the reconnect, in order
    kinds = [s for s, _ in states]
    assert kinds[0] is SourceState.RECONNECTING and SourceState.CONNECTED in kinds
    assert kinds[-1] is SourceState.FAILED
    assert [f for s, f in states if s is SourceState.RECONNECTING][-3:] == [1, 2, 3]
    status = reader.status()
    assert status.state is SourceState.FAILED and status.reconnects == 1
    reader.close()
    assert not reader._thread.is_alive()


def test_latest_frame_reader_drops_backlog_and_closes_cleanly():
    cap = FakeCapture(100000, delay_s=0.001)
    reader = _fake_reader([cap], ReconnectPolicy(read_timeout_s=2))
    got = []
    for _ in range(8):
        frame = reader.read()
        produced = cap.count
        got.append(frame_number(frame))
        assert produced - got[-1] <= 3     # what we get is (nearly) the newest frame, not a queued old one
        time.sleep(0.03)                   # a slow consumer
    assert all(b > a + 1 for a, b in zip(got, got[1:]))  # intermediate frames were dropped, not queued
    assert reader.status().dropped > 0
    reader.close()
    assert not reader._thread.is_alive() and cap.released
    assert reader.status().state is SourceState.CLOSED
    assert reader.read() is None


def test_video_file_source_reads_every_frame(tmp_path):
    frames = [np.full((48, 64, 3), 10 * i, np.uint8) for i in range(12)]
    path = write_video(tmp_path / "clip.avi", frames, fps=10)
    source = open_source(str(path))
    assert source.info["kind"] == "video" and source.info["width"] == 64
    out = []
    while (f := source.read()) is not None:
        out.append(f)
    source.close()
    assert len(out) == 12
    assert abs(float(out[5].mean()) - 50) < 3   # MJPG is lossy but close


def test_unreadable_video_file(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video" * 100)
    with pytest.raises(PatchlabError, match="broken.mp4: unreadable video file"):
        open_video_file(bad)
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    with pytest.raises(PatchlabError, match="unreadable video file"):
        open_source(str(empty))


def test_folder_source(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), np.full((20, 30, 3), 40 * i, np.uint8))
    with FolderSource(tmp_path) as source:
        means = []
        while (f := source.read()) is not None:
            means.append(int(f.mean()))
    assert means == [0, 40, 80]
    (tmp_path / "empty").mkdir()
    with pytest.raises(PatchlabError, match="no images found"):
        FolderSource(tmp_path / "empty")


def test_synthetic_ground_truth_matches_detected_markers():
    from patchlab.physical.markers import detect_markers

    scene = SyntheticScene(size=(640, 480), seed=1)
    errors, missing = [], 0
    for i in range(0, 180, 12):
        f = scene.frame(i)
        assert f.image.shape == (480, 640, 3) and f.image.dtype == np.uint8
        found = detect_markers(f.image)
        for k, corners in f.markers.items():
            if k in found:
                errors.append(np.abs(found[k] - corners).max())
            else:
                missing += 1
    assert missing <= 2
    assert max(errors) < 2.0 and np.mean(errors) < 0.8


def test_synthetic_scene_is_deterministic_and_moves():
    a, b = SyntheticScene(seed=3), SyntheticScene(seed=3)
    assert np.array_equal(a.frame(5).image, b.frame(5).image)
    sizes = [a.frame(i).patch_size_px for i in range(0, 200, 20)]
    assert max(sizes) - min(sizes) > 40  # the apparent size changes under the motion


def test_wilson_interval_reference_values():
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0 and hi == pytest.approx(0.2775, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    from scipy import stats  # the dev extra has it: a missing scipy fails here instead of skipping the check
    for k, n in [(81, 263), (1, 7), (30, 30), (12, 400)]:
        ref = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert wilson_interval(k, n) == pytest.approx((ref.low, ref.high), abs=1e-6)


def _fake_results(n: int = 60):
    from patchlab.capture import FrameResult

    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        size = 50 + 4 * i if i % 10 else None                 # every 10th frame: markers not seen
        hit = size is not None and size > 150 and rng.random() < 0.8
        top = [{"index": 859, "label": "toaster", "prob": 0.7} if hit else {"index": 1, "label": "goldfish", "prob": 0.6}]
        top += [{"index": 100 + k, "label": f"c{k}", "prob": 0.05} for k in range(4)]
        out.append(FrameResult(index=i, time_s=i / 30, top5=top, target_index=859, target_label="toaster",
                               target_prob=0.7 if hit else 0.01, is_target=hit, fps=30.0, latency_ms=10.0 + i % 7,
                               markers=[0, 1, 2, 3] if size else [], patch_size_px=size))
    return out


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_recording_summary_by_size_with_baseline(tmp_path, fmt):
    from patchlab.capture import Recorder, load_recording

    results = _fake_results()
    with Recorder(tmp_path / "base", fmt="jsonl") as base:  # a baseline in which the target never wins
        for r in results:
            base.write(replace(r, is_target=False))
    rec = Recorder(tmp_path / "rec", meta={"model": "m"}, fmt=fmt)
    for r in results:
        rec.write(r)
    summary = rec.close(baseline=tmp_path / "base")
    k = sum(r.is_target for r in results)
    assert summary["attack"]["target"]["k"] == k and summary["attack"]["target"]["n"] == 60
    assert summary["attack"]["target"]["ci95"] == pytest.approx(list(wilson_interval(k, 60)))
    bins = summary["attack"]["by_size"]
    assert sum(b["n"] for b in bins) == 54 and summary["attack"]["no_patch_size"]["n"] == 6
    for b in bins:
        inside = [r for r in results if r.patch_size_px and b["size_px"][0] <= r.patch_size_px < b["size_px"][1]]
        assert b["n"] == len(inside) and b["k"] == sum(r.is_target for r in inside)
    assert summary["baseline"]["target"]["k"] == 0 and summary["baseline"]["target"]["n"] == 60
    assert (tmp_path / "rec" / "summary.png").stat().st_size > 10_000
    meta, records = load_recording(tmp_path / "rec")
    assert meta["model"] == "m" and meta["frames"] == 60 and len(records) == 60
    assert [r["is_target"] for r in records] == [r.is_target for r in results]
    assert records[3]["top5"][0]["index"] == results[3].top5[0]["index"]
    with Recorder(tmp_path / "all", fmt=fmt) as every:  # k = n in every bin: the plot must still work
        for r in results:
            every.write(replace(r, is_target=True, patch_size_px=r.patch_size_px or 60.0))
    assert every.summary["attack"]["target"]["share"] == 1.0 and (tmp_path / "all" / "summary.png").is_file()



def test_http_stream_through_the_latest_frame_reader(tmp_path):
    """A video served over local HTTP opens as a stream source and delivers frames until closed."""
    import functools
    import http.server

    frames = [np.full((48, 64, 3), 5 * i, np.uint8) for i in range(30)]
    write_video(tmp_path / "cam.avi", frames, fps=30)
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        source = open_source(f"http://127.0.0.1:{server.server_address[1]}/cam.avi")
        assert isinstance(source, LatestFrameReader) and source.info["kind"] == "stream"
        got = [source.read(timeout_s=5) for _ in range(3)]
        assert all(f is not None and f.shape == (48, 64, 3) for f in got)
        assert source.status().state in (SourceState.CONNECTED, SourceState.RECONNECTING)
        source.close()
        assert source.status().state is SourceState.CLOSED and not source._thread.is_alive()
    finally:
        server.shutdown()
