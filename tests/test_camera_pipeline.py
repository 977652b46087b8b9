"""Live pipeline end to end: ONNX vs eager, virtual patch geometry, recordings from a video file and the synthetic
source, clean stops (Ctrl-C, failing source)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from patchlab.capture import (LatestFrameReader, LiveState, OpenCVSource, Patch, ReconnectPolicy, Recorder,
                              SyntheticSource, frame_to_input, load_backend, load_patch, load_recording, process_frame,
                              run_session, write_video)
from patchlab.simulate.scene import SHEET_PATCH_SCALE, SyntheticScene
from patchlab.stats import wilson_interval
from patchlab.errors import PatchlabError

REPO = Path(__file__).resolve().parent.parent
SHIPPED_TOASTER = REPO / "printables" / "toaster_efficientnet_lite0.png"
TOASTER = 859
# docs/camera.md, "Measured": the shipped patch in the synthetic scene, 240 frames: printed 68.8%, virtual 60.8%, empty
# sheet 0%; and this file's video test: 87.5% (28) of its 32 frames. Asserted below at each test's n, minus
# (baseline: plus) the Wilson 95% margin.
PRINTED_SHARE, VIRTUAL_SHARE, VIDEO_SHARE, BASELINE_SHARE = 0.688, 0.608, 0.875, 0.0


def at_least(rate: float, n: int) -> float:
    """The reported `rate` minus its Wilson 95% margin at n (the lower end of the interval around it)."""
    return wilson_interval(rate * n, n)[0]


def at_most(rate: float, n: int) -> float:
    return wilson_interval(rate * n, n)[1]


@pytest.fixture(scope="module")
def toaster_patch_path() -> Path:
    """The shipped toaster patch: the success checks below are about it, so a missing file fails them."""
    if not SHIPPED_TOASTER.is_file():
        pytest.fail(f"{SHIPPED_TOASTER} is missing; it ships with the repository (git checkout printables/)")
    return SHIPPED_TOASTER


@pytest.fixture(scope="module")
def toaster_patch(toaster_patch_path) -> Patch:
    return load_patch(toaster_patch_path)


@pytest.fixture(scope="module")
def onnx_backend(lite0):
    """Only the ONNX-vs-eager comparisons use this; `make test` installs onnxruntime, so it never skips."""
    from patchlab.capture.inference import onnxruntime_available

    if not onnxruntime_available():
        pytest.fail("onnxruntime is not installed: pip install 'patchlab[onnx]' (make test installs it)")
    return load_backend(lite0, "onnx")


@pytest.fixture(scope="module")
def eager_backend(lite0):
    return load_backend(lite0, "eager")


@pytest.fixture(scope="module")
def backend(lite0):
    """What `patchlab camera` uses by default: ONNX Runtime when installed, else eager PyTorch."""
    return load_backend(lite0, "auto")


def test_default_backend_runs_without_onnxruntime(lite0, monkeypatch):
    """Without onnxruntime `auto` is eager PyTorch, so the pipeline tests below never depend on it."""
    import patchlab.capture.inference as inference

    monkeypatch.setattr(inference, "onnxruntime_available", lambda: False)
    backend = load_backend(lite0, "auto")
    assert isinstance(backend, inference.EagerBackend)
    _, result = process_frame(SyntheticScene(seed=0).frame(0).image, LiveState(backend, target="toaster"))
    assert len(result.top5) == 5 and result.target_label == "toaster"


def test_patch_sidecar_gives_the_target(toaster_patch):
    assert toaster_patch.target_index == TOASTER
    assert toaster_patch.bgr.dtype == np.uint8 and toaster_patch.alpha.max() == pytest.approx(1.0)


def test_onnx_matches_eager_on_real_images(lite0, onnx_backend, imagenet_dir):
    from patchlab.data import list_images
    from patchlab.models.classify import load_batch

    files = list_images(imagenet_dir)[::35][:20]
    x = load_batch(files, lite0.input_size)
    with torch.inference_mode():
        eager = lite0(x).numpy()
    onnx = onnx_backend.logits_batch(x.numpy())
    assert np.abs(onnx - eager).max() < 1e-3
    assert (onnx.argmax(1) == eager.argmax(1)).all()
    assert onnx_backend.max_logit_diff < 1e-3


def test_backends_agree_on_live_frames(onnx_backend, eager_backend, imagenet_dir):
    from patchlab.data import list_images

    for path in list_images(imagenet_dir)[:2]:
        x = frame_to_input(cv2.imread(str(path)), 224, "centre")
        a, b = onnx_backend.logits(x), eager_backend.logits(x)
        assert np.abs(a - b).max() < 1e-3 and a.argmax() == b.argmax()


def test_live_centre_crop_matches_the_standard_eval_transform(imagenet_dir):
    from patchlab.data import list_images, read_image
    from patchlab.models import preprocess

    for path in list_images(imagenet_dir)[:6]:
        live = frame_to_input(cv2.imread(str(path)), 224, "centre").astype(np.float32)
        ref = preprocess(read_image(path), 224).permute(1, 2, 0).numpy() * 255
        assert np.abs(live - ref).mean() < 4.0   # 256 px photos: the 224 px centre square needs no resize


def test_live_centre_crop_is_resized_like_pil_bicubic(imagenet_dir):
    """A 640x480 frame: the 420 px centre square goes to 224 px with PIL's antialiased bicubic (the eval transform's
    filter), within one 8-bit level on >= 99% of the values; a view from the pipeline's fast path equals it."""
    from PIL import Image

    from patchlab.capture.pipeline import _model_pixels
    from patchlab.data import list_images

    for path in list_images(imagenet_dir)[:3]:
        frame = cv2.resize(cv2.imread(str(path)), (640, 480), interpolation=cv2.INTER_CUBIC)
        live = frame_to_input(frame, 224, "centre")
        assert live.flags.c_contiguous and live.dtype == np.uint8 and live.shape == (224, 224, 3)
        region = cv2.cvtColor(frame[30:450, 110:530], cv2.COLOR_BGR2RGB)
        pil = np.asarray(Image.fromarray(region).resize((224, 224), Image.BICUBIC))
        diff = np.abs(live.astype(np.int16) - pil.astype(np.int16))
        assert diff.max() <= 2 and (diff <= 1).mean() >= 0.99
        assert np.array_equal(np.asarray(_model_pixels(frame, 224, "centre")), live)


def _changed_mask(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return np.abs(after.astype(np.int16) - before.astype(np.int16)).max(2) > 0


def _signed_distance(quad: np.ndarray, shape) -> np.ndarray:
    """Distance of every pixel centre to the quad's outline: positive inside, negative outside."""
    h, w = shape[:2]
    contour = np.asarray(quad, np.float32).reshape(-1, 1, 2)
    ys, xs = np.mgrid[0:h:1, 0:w:1]
    box = cv2.boundingRect(contour)
    out = np.full((h, w), -1e9, np.float32)
    x0, y0, bw, bh = box
    for y in range(max(0, y0 - 4), min(h, y0 + bh + 4)):
        for x in range(max(0, x0 - 4), min(w, x0 + bw + 4)):
            out[y, x] = cv2.pointPolygonTest(contour, (float(x), float(y)), True)
    return out


@pytest.mark.parametrize("anchor", ["sheet", "marker:2"])
def test_virtual_patch_lands_inside_the_marker_quad(backend, toaster_patch, anchor):
    """Pasted pixels never leave the ground-truth quad by more than 2 px, and they fill it."""
    from dataclasses import replace

    scene = SyntheticScene(seed=2, fps=10)
    state = LiveState(backend, patch=toaster_patch, virtual=True, anchor=anchor, overlay=False)
    # a patch pixel that happens to equal the paper beneath leaves the frame unchanged; its negative then does not
    negative = LiveState(backend, patch=replace(toaster_patch, bgr=255 - toaster_patch.bgr), virtual=True,
                         anchor=anchor, overlay=False)
    checked = 0
    for i in range(0, 60, 6):
        frame = scene.frame(i)
        out, result = process_frame(frame.image, state)
        gt = frame.inner_quad if anchor == "sheet" else frame.markers[2]
        if not result.virtual_patch:
            continue
        out_negative, _ = process_frame(frame.image, negative)
        changed = _changed_mask(frame.image, out) | _changed_mask(frame.image, out_negative)
        dist = _signed_distance(gt, out.shape)
        assert changed.any()
        assert dist[changed].min() >= -2.0, f"frame {i}: pasted {-dist[changed].min():.2f} px outside the quad"
        # the patch (where its alpha is opaque) covers the quad's interior
        w, h = toaster_patch.size
        src = np.float32([[-0.5, -0.5], [w - 0.5, -0.5], [w - 0.5, h - 0.5], [-0.5, h - 0.5]])
        from patchlab.geometry import quad_in_quad

        target_quad = quad_in_quad(gt, w, h)
        H = cv2.getPerspectiveTransform(src, target_quad.astype(np.float32))
        expected = cv2.warpPerspective(toaster_patch.alpha, H, out.shape[1::-1]) > 0.99
        expected &= dist >= 2.0
        assert changed[expected].mean() > 0.97
        gt_size = np.sqrt(cv2.contourArea(target_quad.astype(np.float32)))
        assert result.patch_size_px == pytest.approx(gt_size, abs=1.5)
        checked += 1
    assert checked >= 8


def test_process_frame_result_and_overlay(backend, toaster_patch):
    scene = SyntheticScene(seed=0, patch=toaster_patch)
    state = LiveState(backend, target="toaster")
    for i in range(4):
        frame = scene.frame(i).image
        original = frame.copy()
        out, r = process_frame(frame, state)
    assert np.array_equal(frame, original)          # the input frame is not modified
    assert out.shape == frame.shape and not np.array_equal(out, frame)   # the overlay is drawn
    probs = [t["prob"] for t in r.top5]
    assert len(r.top5) == 5 and probs == sorted(probs, reverse=True) and sum(probs) <= 1.0 + 1e-6
    assert r.target_index == TOASTER and r.target_label == "toaster" and 0 <= r.target_prob <= 1
    assert r.is_target == (r.top5[0]["index"] == TOASTER)
    assert r.fps > 0 and r.latency_ms > 0 and r.index == 3
    json.dumps(r.as_dict())


def test_markers_crop_uses_the_sheet_region(backend):
    scene = SyntheticScene(seed=4)
    state = LiveState(backend, crop="markers", overlay=False)
    _, r = process_frame(scene.frame(0).image, state)
    assert r.roi == "markers" and r.markers == [0, 1, 2, 3]
    _, r = process_frame(np.full((480, 640, 3), 90, np.uint8), state)
    assert r.roi == "centre (markers not found)"


def test_process_frame_is_safe_from_two_threads(eager_backend):
    scene = SyntheticScene(seed=5)
    frames = [scene.frame(i).image for i in range(4)]
    state = LiveState(eager_backend, overlay=False)
    expected = [process_frame(f, state)[1].top5[0]["index"] for f in frames]
    got: dict[int, int] = {}

    def worker(ids):
        for i in ids:
            got[i] = process_frame(frames[i], state)[1].top5[0]["index"]

    threads = [threading.Thread(target=worker, args=(range(k, 4, 2),)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [got[i] for i in range(4)] == expected


def _check_recording(folder: Path, target: int = TOASTER) -> dict:
    from patchlab.capture.recording import resolve_recording

    folder = resolve_recording(folder)  # `camera --record DIR` records into DIR/run-001
    meta, records = load_recording(folder)
    summary = json.loads((folder / "summary.json").read_text())
    attack = summary["attack"]
    k = sum(r["top5"][0]["index"] == target for r in records)
    assert all(r["is_target"] == (r["top5"][0]["index"] == target) for r in records)
    assert attack["target"]["n"] == len(records) and attack["target"]["k"] == k
    assert attack["target"]["ci95"] == pytest.approx(list(wilson_interval(k, len(records))))
    sized = [r for r in records if r["patch_size_px"]]
    assert sum(b["n"] for b in attack["by_size"]) == len(sized)
    assert (folder / "summary.png").stat().st_size > 10_000
    return summary


def test_pipeline_from_generated_video_file(tmp_path, toaster_patch_path, capsys):
    """Render the scene with the printed patch (and a baseline without) to MJPG .avi, run the CLI on both."""
    from patchlab.cli import main

    patch = load_patch(toaster_patch_path)
    n = 32
    attack_scene = SyntheticScene(patch=patch, seed=7, fps=8)
    base_scene = SyntheticScene(patch=None, seed=7, fps=8)
    attack_video = write_video(tmp_path / "attack.avi", (attack_scene.frame(i).image for i in range(n)), fps=8)
    base_video = write_video(tmp_path / "baseline.avi", (base_scene.frame(i).image for i in range(n)), fps=8)

    scale = str(SHEET_PATCH_SCALE)
    assert main(["camera", "--source", str(base_video), "--target", "toaster", "--record", str(tmp_path / "base"),
                 "--patch-scale", scale, "--headless", "--json"]) == 0
    capsys.readouterr()
    assert main(["camera", "--source", str(attack_video), "--target", "toaster", "--record", str(tmp_path / "rec"),
                 "--patch-scale", scale, "--baseline", str(tmp_path / "base"), "--headless", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == n and out["stopped"] == "ended" and out["target"] == "toaster"
    summary = _check_recording(tmp_path / "rec")
    _check_recording(tmp_path / "base")
    assert out["success_rate"] == summary["attack"]["target"]["share"]
    assert summary["baseline"]["target"]["n"] == n and out["baseline"]["n"] == n
    # patch size measured from the markers in the decoded video agrees with the scene's ground truth
    _, records = load_recording(tmp_path / "rec")
    sizes = {r["index"]: r["patch_size_px"] for r in records if r["patch_size_px"]}
    assert len(sizes) >= 0.9 * n
    for i, size in sizes.items():
        assert size == pytest.approx(attack_scene.frame(i).patch_size_px, rel=0.02, abs=1.5)
    assert len(summary["attack"]["by_size"]) >= 3
    attack, baseline = summary["attack"]["target"], summary["baseline"]["target"]
    print(f"\n[{toaster_patch_path.name}] video: target share {attack['share']:.3f} ({attack['k']}/{attack['n']}) "
          f"vs baseline {baseline['share']:.3f} ({baseline['k']}/{baseline['n']})")
    assert attack["share"] >= at_least(VIDEO_SHARE, n), attack          # >= 24 of 32
    assert baseline["share"] <= at_most(BASELINE_SHARE, n), baseline    # <= 3 of 32


def test_pipeline_from_synthetic_source(tmp_path, backend, toaster_patch):
    """The synthetic source with the patch printed on the sheet, then with the patch pasted virtually."""
    from patchlab.capture import open_source

    source = open_source("synthetic:24", synthetic={"patch": toaster_patch, "seed": 3, "fps": 8})
    state = LiveState(backend, target="toaster", detect="on", patch_scale=SHEET_PATCH_SCALE)
    result = run_session(source, state, recorder=Recorder(tmp_path / "printed"))
    assert result.stopped == "ended" and result.frames == 24
    summary = _check_recording(tmp_path / "printed")
    printed = summary["attack"]["target"]
    _, records = load_recording(tmp_path / "printed")
    truth = SyntheticScene(patch=toaster_patch, seed=3, fps=8)
    for r in records:
        if r["patch_size_px"]:
            assert r["patch_size_px"] == pytest.approx(truth.frame(r["index"]).patch_size_px, rel=0.02, abs=1.5)

    state = LiveState(backend, patch=toaster_patch, virtual=True, detect="on")
    result = run_session(SyntheticSource(frames=24, seed=3, fps=8), state, recorder=Recorder(tmp_path / "virtual"))
    assert result.stopped == "ended" and result.frames == 24
    summary = _check_recording(tmp_path / "virtual")
    _, records = load_recording(tmp_path / "virtual")
    assert sum(r["virtual_patch"] for r in records) >= 22
    assert summary["attack"]["target_label"] == "toaster"
    virtual = summary["attack"]["target"]
    print(f"\nsynthetic source: printed {printed['k']}/{printed['n']}, virtual {virtual['k']}/{virtual['n']}")
    # the shipped patch has to win here too, at the docs' rates (docs/camera.md) minus the Wilson margin at n = 24
    assert printed["share"] >= at_least(PRINTED_SHARE, 24), printed
    assert virtual["share"] >= at_least(VIRTUAL_SHARE, 24), virtual


def test_max_frames_and_ctrl_c_stop_cleanly(tmp_path, backend):
    class Interrupting:
        info = {"kind": "test"}

        def __init__(self):
            self.scene, self.i, self.closed = SyntheticScene(seed=1), 0, False

        def read(self):
            if self.i == 5:
                raise KeyboardInterrupt
            self.i += 1
            return self.scene.frame(self.i).image

        def status(self):
            return None

        def close(self):
            self.closed = True

    source = Interrupting()
    state = LiveState(backend, target="toaster")
    result = run_session(source, state, recorder=Recorder(tmp_path / "rec"))
    assert result.stopped == "interrupted" and result.frames == 5 and source.closed
    assert json.loads((tmp_path / "rec" / "summary.json").read_text())["attack"]["target"]["n"] == 5
    result = run_session(SyntheticSource(frames=None), state, max_frames=3)
    assert result.stopped == "max-frames" and result.frames == 3


def test_failing_camera_mid_stream_stops_with_summary(tmp_path, backend):
    scene = SyntheticScene(seed=2)

    class Cap:
        def __init__(self, n):
            self.n = n

        def isOpened(self):
            return True

        def read(self):
            if self.n <= 0:
                return False, None
            self.n -= 1
            time.sleep(0.005)
            return True, scene.frame(self.n).image

        def release(self):
            pass

    def opener():
        raise PatchlabError("no camera at index 0 (unplugged)")

    states = []
    reader = LatestFrameReader(opener, name="camera 0", first=OpenCVSource(0, "camera", Cap(6), "camera 0", {}),
                               policy=ReconnectPolicy(max_failures=2, backoff_s=0.01, read_timeout_s=2),
                               on_state=lambda s: states.append(s.state.value))
    result = run_session(reader, LiveState(backend, target="toaster"), recorder=Recorder(tmp_path / "rec"))
    assert result.stopped == "failed"
    assert "stopped after 2 failed reconnect attempts" in result.error
    assert states[:1] == ["reconnecting"] and states[-1] == "failed"
    assert 1 <= result.frames <= 6
    assert (tmp_path / "rec" / "summary.json").is_file()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_cli_ctrl_c_writes_the_summary(tmp_path):
    """A real SIGINT to `patchlab camera --headless --record` ends it cleanly with the summary written."""
    rec = tmp_path / "rec"
    cmd = [sys.executable, "-c", "from patchlab.cli import run; run()", "camera", "--source", "synthetic",
           "--eager", "--headless", "--target", "toaster", "--record", str(rec)]
    rec = rec / "run-001"  # each recording goes to a fresh run folder
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"})
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            frames = rec / "frames.jsonl"
            if frames.is_file() and frames.read_text().count("\n") >= 5:
                break
            if proc.poll() is not None:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read()
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:  # show where it is stuck: faulthandler dumps every thread on SIGABRT
            before = frames.read_text().count("\n")
            time.sleep(2)
            running = frames.read_text().count("\n") > before
            proc.send_signal(signal.SIGABRT)
            _, err = proc.communicate(timeout=30)
            pytest.fail(f"camera did not stop within 120 s of SIGINT ({'still recording frames' if running else 'stuck'})"
                        f"; its threads:\n{err[-4000:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped: interrupted" in err
    summary = json.loads((rec / "summary.json").read_text())
    assert summary["attack"]["target"]["n"] >= 5
    assert (rec / "summary.png").is_file()
