"""PatchCleanser certification over labelled images (the shared held-out split by default), with the speed-up
against the plain way of computing a certificate measured on the same machine in the same run."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from patchlab.artifacts import write_text
from patchlab.defenses.patchcleanser import PatchCleanser, Verdict, summarize
from patchlab.errors import PatchlabError
from patchlab.progress import ProgressFn



def _resume(checkpoint: str | Path | None, key: str) -> tuple[list[Verdict], list[float]]:
    if not checkpoint or not Path(checkpoint).is_file():
        return [], []
    try:
        state = json.loads(Path(checkpoint).read_text())
    except (OSError, ValueError):
        raise PatchlabError(f"{checkpoint}: not a certification checkpoint") from None
    if state.get("key") != key:
        raise PatchlabError(f"{checkpoint}: was written with other settings or images; delete it to start over")
    return [Verdict(**v) for v in state["verdicts"]], list(state["plain_seconds"])


def certify_images(model, images: str | Path, part: str = "heldout", limit: int | None = None,
                   patch: float | int = 0.02, k: int = 6, fill: float = 0.5, batch_size: int = 64,
                   baseline: int = 0, device="auto", checkpoint: str | Path | None = None,
                   progress: ProgressFn | None = None) -> dict:
    """Certified and clean accuracy of PatchCleanser around `model` (zoo name, checkpoint or Classifier) on the
    `part` ('heldout' or 'train') images of the shared split. `baseline` > 0 also times the plain computation
    (all K(K+1)/2 passes, no feature reuse, no early exit: the reference implementation's precomputed map) on
    `baseline` images spread evenly over the set, interleaved with ours so that both see the same machine load;
    its cost does not depend on the image, so `speedup` is its mean time over our mean time on all images.
    With `checkpoint` (a JSON file) every finished image is saved, and a rerun with the same settings continues
    where the last one stopped (the verdicts are deterministic, so the result equals an uninterrupted run's)."""
    from patchlab.defenses.data import load_images, shared_split
    from patchlab.models import load_model

    start = time.perf_counter()
    data = shared_split(images, part, limit)  # bad folders fail before the model loads
    net = load_model(model, device) if isinstance(model, (str, Path)) else model
    x = load_images(data.paths, net.input_size)
    ours = PatchCleanser(net, patch, k, fill, batch_size)
    plain = PatchCleanser(net, patch, k, fill, batch_size, reuse=False) if baseline else None
    timed = {round(i * len(x) / baseline) for i in range(min(baseline, len(x)))} if baseline else set()
    key = json.dumps({"model": net.name, "files": [p.name for p in data.paths], **ours.settings}, sort_keys=True)
    verdicts, plain_seconds = _resume(checkpoint, key)
    for n, (image, label) in enumerate(zip(x, data.labels.tolist())):
        if n < len(verdicts):
            continue
        v = ours.verdict(image, label)
        verdicts.append(v)
        if plain is not None and n in timed:
            t0 = time.perf_counter()
            plain.prediction_map(image)
            plain_seconds.append(time.perf_counter() - t0)
        if checkpoint:
            write_text(checkpoint, json.dumps({"key": key, "verdicts": [u.to_dict() for u in verdicts],
                                               "plain_seconds": plain_seconds}))
        if progress:
            progress(n + 1, len(x), {"certified": sum(u.certified and u.certified_for == y for u, y in
                                                      zip(verdicts, data.labels.tolist())) / len(verdicts)})
    result = {"defense": "patchcleanser", "model": net.name, "images": str(images), "part": part,
              "patch_area": patch if isinstance(patch, float) and patch < 1 else None, **ours.settings,
              "batch_size": batch_size, "threads": torch.get_num_threads(), **summarize(verdicts, data.labels)}
    result["ci95"] = result["certified_ci95"]
    cases = [v.case for v in verdicts]
    result["cases"] = {str(c): cases.count(c) for c in (1, 2, 3)}
    if plain_seconds:
        plain_mean = sum(plain_seconds) / len(plain_seconds)
        result["baseline"] = {"images": len(plain_seconds), "seconds_per_image": plain_mean,
                              "passes_per_image": ours.masks.pairs}
        result["speedup"] = plain_mean / max(result["seconds_per_image"], 1e-9)
    result["per_image"] = [{"file": p.name, "label": int(y), **v.to_dict()}
                           for p, y, v in zip(data.paths, data.labels.tolist(), verdicts)]
    result["seconds"] = time.perf_counter() - start
    return result


__all__ = ["certify_images"]
