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


def live_fps(model, defenses=LIVE_DEFENSES, frames: int = 20, patch: str | None = None, patch_area: float = 0.1,
             masks: int = 6, progress=None) -> list[dict]:
    """Frames per second of the whole live pipeline (640x480 frame -> crop -> classify -> defense -> overlay) per
    defense, on the synthetic scene of a moving printed sheet (with `patch` printed on it), eager backend; the
    same frames for every defense. Also the share of frames whose verdict is the patch's target, and certified."""
    import time

    from patchlab.capture import EagerBackend, LiveState, process_frame
    from patchlab.capture.virtual_patch import Patch
    from patchlab.simulate import SyntheticScene

    the_patch = None
    if patch is not None:
        from patchlab.capture import load_patch

        the_patch = load_patch(patch)
    scene = SyntheticScene(patch=the_patch, size=(640, 480))
    images = [scene.frame(i).image for i in range(frames)]
    backend = EagerBackend(model)
    rows = []
    for d, name in enumerate(defenses):
        guard = None if name == "none" else LiveDefense(name, model, patch_area, masks)
        state = LiveState(backend, patch=the_patch if isinstance(the_patch, Patch) else None, defense=guard)
        process_frame(images[0], state)  # warm-up (first-call allocations, oneDNN primitive creation)
        lat, hits, certified = [], 0, 0
        start = time.perf_counter()
        for i, img in enumerate(images):
            _, r = process_frame(img, state)
            lat.append(r.latency_ms)
            hits += bool(r.is_target)
            certified += bool(r.certified)
            if progress:
                progress(d * frames + i + 1, len(defenses) * frames, {"defense": name})
        wall = time.perf_counter() - start
        lat_sorted = sorted(lat)
        rows.append({"defense": name, "frames": frames, "fps": frames / wall,
                     "p50_ms": lat_sorted[len(lat) // 2], "p95_ms": lat_sorted[min(len(lat) - 1, int(0.95 * len(lat)))],
                     "target_share": hits / frames if state.target_index is not None else None,
                     "certified_share": certified / frames if name == "patchcleanser" else None,
                     **({"patch_area": patch_area, "masks": masks} if name == "patchcleanser" else {})})
    return rows


__all__ = ["DefendedPrediction", "LIVE_DEFENSES", "LiveDefense", "live_fps", "live_model"]
