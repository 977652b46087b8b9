"""Defenses for the live classifier: `LiveDefense(name, model)(rgb)` -> the defended prediction of one model input.

  none          - the plain model;
  patchcleanser - double masking, certified for the defended prediction itself (no ground truth live): certified
                  means no patch of up to `patch_area` of the input, anywhere, could change this answer;
  lgs, jpeg, median - the input transformation, then the model.

The capture pipeline calls it with the RGB uint8 model input it already built (`LiveState(defense=...)`), so every
source (camera, video, browser) gets the same defense; the recording stores the defense's name and answer per frame.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch

from patchlab.defenses.registry import check_defenses, defense_names, make_transform
from patchlab.errors import PatchlabError

LIVE_DEFENSES = defense_names("live")


@dataclass
class DefendedPrediction:
    index: int
    label: str
    certified: bool | None  # None: the defense gives no certificate
    passes: int = 1         # forward passes it took


class LiveDefense:
    """A defense around a zoo Classifier for single RGB uint8 (S, S, 3) inputs; thread-safe."""

    def __init__(self, name: str, model, patch_area: float = 0.1, masks: int = 6, certify: bool = True):
        name, = check_defenses([name], "live")
        self.name, self.model, self.certify = name, model, bool(certify)
        self.labels = list(getattr(model, "labels", []))
        self._lock = getattr(model, "lock", None) or threading.Lock()
        self.cleanser = self.transform = None
        self.last_passes = 1  # model passes behind the last answer (PatchCleanser: masked passes)
        if name == "patchcleanser":
            from patchlab.defenses.patchcleanser import PatchCleanser

            self.cleanser = PatchCleanser(model, patch_area, masks)
        elif name != "none":
            self.transform = make_transform(name)
        self.settings = {"defense": name, **({"patch_area": patch_area, "masks": masks} if self.cleanser else {})}

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def __call__(self, rgb: np.ndarray) -> DefendedPrediction:
        x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255).to(self.device)
        with self._lock:
            if self.cleanser is not None:
                v = self.cleanser.verdict(x, certify=self.certify)
                self.last_passes = v.passes
                return DefendedPrediction(v.prediction, self.labels[v.prediction], v.certified if self.certify
                                          else None, v.passes)
            with torch.inference_mode():
                y = x[None] if self.transform is None else self.transform(x[None])
                index = int(self.model(y).argmax(1))
        return DefendedPrediction(index, self.labels[index], None)


def live_model(backend):
    """The torch Classifier behind a capture backend (eager: itself; ONNX: the checked reference)."""
    model = getattr(backend, "model", None) or getattr(backend, "reference", None)
    if model is None:
        raise PatchlabError("this inference backend has no torch model to defend; use the eager backend")
    return model


def live_fps(model, defenses=LIVE_DEFENSES, frames: int = 60, patch: str | None = None, patch_area: float = 0.1,
             masks: int = 6, slow_frames: int | None = None, backend: str = "auto", seed: int = 0,
             progress=None) -> list[dict]:
    """Frames per second of the whole live pipeline (640x480 frame -> crop -> classify -> defense -> overlay) per
    defense, on the synthetic scene of a moving printed sheet (with `patch` printed on it), through the backend
    `patchlab camera` uses (`backend`: auto = ONNX Runtime when installed, else eager; the defense runs on the torch
    model behind it). "none" is the bare pipeline. Every defense sees the same frames; PatchCleanser, seconds per
    frame, gets only the first `slow_frames` of them. Also per defense: p50/p95 latency, masked passes per frame,
    the share of frames whose verdict is the patch's target, and (PatchCleanser) the share certified."""
    import time

    from patchlab.capture import LiveState, load_backend, process_frame
    from patchlab.capture.virtual_patch import Patch
    from patchlab.simulate import SyntheticScene

    the_patch = None
    if patch is not None:
        from patchlab.capture import load_patch

        the_patch = load_patch(patch)
    scene = SyntheticScene(patch=the_patch, size=(640, 480), seed=seed)
    images = [scene.frame(i).image for i in range(frames)]
    engine = load_backend(model, backend)
    counts = {name: min(frames, slow_frames or frames) if name == "patchcleanser" else frames for name in defenses}
    total, done = sum(counts.values()), 0
    rows = []
    for name in defenses:
        guard = None if name == "none" else LiveDefense(name, live_model(engine), patch_area, masks)
        state = LiveState(engine, patch=the_patch if isinstance(the_patch, Patch) else None, defense=guard)
        process_frame(images[0].copy(), state)  # warm-up (first-call allocations, oneDNN primitive creation)
        lat, hits, certified, passes = [], 0, 0, 0
        n = counts[name]
        start = time.perf_counter()
        for img in images[:n]:
            _, r = process_frame(img.copy(), state)  # the overlay draws on the frame: keep the originals clean
            lat.append(r.latency_ms)
            hits += bool(r.is_target)
            certified += bool(r.certified)
            passes += guard.last_passes if guard is not None else 1
            done += 1
            if progress:
                progress(done, total, {"defense": name})
        wall = time.perf_counter() - start
        lat_sorted = sorted(lat)
        rows.append({"defense": name, "frames": n, "backend": engine.describe(), "fps": n / wall,
                     "p50_ms": lat_sorted[n // 2], "p95_ms": lat_sorted[min(n - 1, int(0.95 * n))],
                     "passes_per_frame": passes / n,
                     "target_share": hits / n if state.target_index is not None else None,
                     "certified_share": certified / n if name == "patchcleanser" else None,
                     **(guard.settings if guard is not None else {"defense": name})})
    base = rows[0]["fps"] if rows and rows[0]["defense"] == "none" else None
    for row in rows:
        row["fps_vs_none"] = row["fps"] / base if base else None
    return rows


__all__ = ["DefendedPrediction", "LIVE_DEFENSES", "LiveDefense", "live_fps", "live_model"]
