"""The app's glue without a browser: background jobs and upload validation."""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
from PIL import Image

from patchlab.app.jobs import DONE, FAILED, STOPPED, Job
from patchlab.app.uploads import check_upload, read_uploaded_image, read_uploaded_rgba
from patchlab.errors import PatchlabError


def _png(size=(8, 6), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size[1], size[0], len(mode)), 200, np.uint8), mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def test_job_reports_progress_and_result():
    def work(progress, stop):
        for i in range(1, 6):
            progress(i, 5, {"loss": 1.0 / i})
        return "finished"

    job = Job.start("count", work)
    assert job.join(5)
    snap = job.snapshot()
    assert (snap.state, snap.step, snap.total, snap.result) == (DONE, 5, 5, "finished")
    assert [s for s, _ in snap.history] == [1, 2, 3, 4, 5]
    assert snap.metrics["loss"] == pytest.approx(0.2) and snap.fraction == 1.0 and not snap.active


def test_job_stops_when_asked_and_keeps_partial_result():
    started = threading.Event()

    def work(progress, stop):
        step = 0
        while not stop.is_set():
            step += 1
            progress(step, 10_000, {})
            started.set()
            time.sleep(0.005)
        return step

    job = Job.start("forever", work)
    assert started.wait(5)
    assert job.snapshot().active
    job.stop()
    assert job.join(5)
    snap = job.snapshot()
    assert snap.state == STOPPED and snap.result == snap.step >= 1


def test_job_failure_is_one_line():
    def bad_input(progress, stop):
        raise PatchlabError("target class 'toastr' not found")

    def crash(progress, stop):
        raise ValueError("shapes differ\nsecond line")

    for fn, expected in ((bad_input, "target class 'toastr' not found"), (crash, "ValueError: shapes differ")):
        job = Job.start("x", fn)
        job.join(5)
        snap = job.snapshot()
        assert snap.state == FAILED and snap.error == expected


def test_jobs_are_independent():
    gate = threading.Event()
    a = Job.start("a", lambda p, s: (p(1, 2, {}), gate.wait(5), "a")[-1])
    b = Job.start("b", lambda p, s: "b")
    assert b.join(5) and b.snapshot().result == "b"
    assert a.snapshot().active and a.snapshot().step == 1
    gate.set()
    assert a.join(5) and a.snapshot().result == "a"


def test_upload_accepts_valid_images():
    img = read_uploaded_image(("photo.png", _png((8, 6))))
    assert tuple(img.shape) == (3, 6, 8) and float(img.max()) <= 1.0
    rgba = read_uploaded_rgba(("patch.png", _png((5, 5), "RGBA")))
    assert rgba.shape[0] == 4


@pytest.mark.parametrize("name,data,message", [
    ("notes.txt", b"hello", "unsupported file type '.txt'"),
    ("photo.png", b"", "the file is empty"),
    ("photo.png", b"this is not a png at all", "not a valid image"),
    ("photo.jpg", _png(), "holds PNG data"),
    ("photo.png", _png()[:40], "corrupt or truncated|not an image file"),
])
def test_upload_rejects_bad_files_with_one_line(name, data, message):
    with pytest.raises(PatchlabError, match=message) as info:
        read_uploaded_image((name, data))
    assert "\n" not in str(info.value)


def test_upload_size_limit():
    with pytest.raises(PatchlabError, match="over the 0.001 MB upload limit"):
        check_upload("big.png", b"\x89PNG\r\n\x1a\n" + bytes(5000), max_mb=0.001)
