"""A patch against the defenses: attack success and correct-class accuracy per patch area and defense, on the
shared held-out images under one EOT draw per image and area (the same frames for every defense), plus
PatchCleanser's certified fraction of the clean images at each area's mask set.

PatchCleanser is sized for each area's nominal square patch (the literature's convention). Under the print preset
the patch is rotated and tilted, so its bounding box can exceed that square: `covered` reports the share of frames
whose patch box fits inside the square the masks are built for (the certificate says nothing about the others, nor
about the preset's global lighting and camera effects).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from patchlab.artifacts import write_text
from patchlab.defenses.registry import check_defenses, defense_names, make_transform
from patchlab.errors import PatchlabError
from patchlab.progress import ProgressFn
from patchlab.stats import wilson_interval

PATCH_DEFENSES = defense_names("patch")


def _rate(k: int, n: int) -> tuple[float, list[float]]:
    return (k / n if n else 0.0), list(wilson_interval(k, n))


def _predict(model, transform, x: torch.Tensor, batch: int = 32) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([model(transform(x[i:i + batch])).argmax(1).cpu() for i in range(0, len(x), batch)])


def evaluate_defenses(patch: str | Path, images: str | Path, model="efficientnet_lite0",
                      areas=(0.02, 0.05, 0.10), defenses=PATCH_DEFENSES, limit: int | None = 80, preset: str = "print",
                      seed: int = 1234, masks: int = 6, device="auto", checkpoint: str | Path | None = None,
                      progress: ProgressFn | None = None) -> dict:
    """Rows per (area, defense): success_rate (top-1 = the patch's target), accuracy (top-1 = true label) with
    the patch, clean_accuracy without, Wilson 95% intervals; PatchCleanser rows add certified_fraction and
    covered. `model` is a zoo name, checkpoint or Classifier; `checkpoint` (JSON) makes a rerun continue."""
    from patchlab.defenses.data import load_images, shared_split
    from patchlab.defenses.masks import patch_side
    from patchlab.defenses.patchcleanser import PatchCleanser
    from patchlab.eot import EOT, load_config
    from patchlab.models import load_model
    from patchlab.patch.io import load_patch

    start = time.perf_counter()
    defenses = check_defenses(defenses, "patch")
    rgba, meta = load_patch(patch)
    target = meta.get("target")
    if target is None:
        raise PatchlabError(f"{patch}: the sidecar names no target class")
    net = load_model(model, device) if isinstance(model, (str, Path)) else model
    data = shared_split(images, "heldout", limit)
    x, y = load_images(data.paths, net.input_size), data.labels
    engine = EOT(load_config(preset).replace(area_scale=(1.0, 1.0)))

    key = json.dumps({"patch": str(patch), "model": net.name, "files": [p.name for p in data.paths],
                      "areas": list(areas), "defenses": list(defenses), "preset": preset, "seed": seed,
                      "masks": masks}, sort_keys=True)
    state = {"key": key, "rows": {}, "clean": {}, "partial": {}}
    if checkpoint and Path(checkpoint).is_file():
        saved = json.loads(Path(checkpoint).read_text())
        if saved.get("key") != key:
            raise PatchlabError(f"{checkpoint}: was written with other settings; delete it to start over")
        state = saved

    def save() -> None:
        if checkpoint:
            write_text(checkpoint, json.dumps(state))

    transforms = {d: (lambda z: z) if d == "none" else make_transform(d) for d in defenses if d != "patchcleanser"}
    for t in transforms.values():
        if getattr(t, "randomized", False):
            t.generator = torch.Generator().manual_seed(seed)
    total = len(areas) * len(defenses) * len(x)
    done = 0
    for ai, area in enumerate(areas):
        g = torch.Generator().manual_seed(seed + 1000 * ai)
        with torch.no_grad():
            out = engine(rgba, x, float(area), g)
        frames = out.images
        box = (out.corners.max(1).values - out.corners.min(1).values).amax(1)  # (N,) bounding-box side, px
        for name in defenses:
            row_key = f"{area}:{name}"
            if row_key in state["rows"]:
                done += len(x)
                continue
            row = {"area": float(area), "defense": name}
            if name == "patchcleanser":
                pc = PatchCleanser(net, float(area), masks)
                part = state["partial"].setdefault(row_key, {"clean": [], "certified": [], "patched": []})
                for i in range(len(x)):
                    if i < len(part["patched"]):
                        continue
                    v = pc.verdict(x[i], int(y[i]))
                    part["clean"].append(v.prediction)
                    part["certified"].append(v.certified)
                    part["patched"].append(pc.verdict(frames[i], int(y[i]), certify=False).prediction)
                    save()
                    done += 1
                    if progress:
                        progress(done, total, {"area": area, "defense": name})
                clean_pred, patched_pred = torch.tensor(part["clean"]), torch.tensor(part["patched"])
                certified = torch.tensor(part["certified"])
                side = patch_side(float(area), net.input_size)
                cert_k = int(certified.sum())
                row.update({"certified_fraction": cert_k / len(x), "certified_ci95": list(wilson_interval(cert_k, len(x))),
                            "patch_side": side, "mask_size": pc.masks.size,
                            "covered": float((box <= side).float().mean()),
                            "certified_flipped": int((certified & (patched_pred != y)).sum()),
                            "certified_flipped_covered": int((certified & (patched_pred != y) & (box <= side)).sum())})
            else:
                t = transforms[name]
                if name not in state["clean"]:
                    state["clean"][name] = _predict(net, t, x).tolist()
                clean_pred = torch.tensor(state["clean"][name])
                patched_pred = _predict(net, t, frames)
                done += len(x)
                if progress:
                    progress(done, total, {"area": area, "defense": name})
            n = len(x)
            row["success_rate"], row["ci95"] = _rate(int((patched_pred == target).sum()), n)
            row["accuracy"], row["accuracy_ci95"] = _rate(int((patched_pred == y).sum()), n)
            row["clean_accuracy"], row["clean_ci95"] = _rate(int((clean_pred == y).sum()), n)
            row["n"] = n
            state["rows"][row_key] = row
            state["partial"].pop(row_key, None)
            save()
    rows = [state["rows"][f"{a}:{d}"] for a in areas for d in defenses]
    return {"patch": str(patch), "target": target, "target_name": meta.get("target_name"), "model": net.name,
            "preset": preset, "seed": seed, "masks": masks, "n": len(x), "images": str(images), "part": "heldout",
            "rows": rows, "seconds": time.perf_counter() - start}


def paste_square(image: torch.Tensor, rgba: torch.Tensor, side: int, top: int, left: int) -> torch.Tensor:
    """`image` (3, S, S) with the RGBA patch resized to `side` px pasted axis-aligned at (top, left)."""
    import torch.nn.functional as F

    tex = F.interpolate(rgba[None].float(), size=(side, side), mode="bilinear", align_corners=False,
                        antialias=True)[0].clamp(0, 1)
    out = image.clone()
    region = out[:, top:top + side, left:left + side]
    alpha = tex[3:4]
    out[:, top:top + side, left:left + side] = region * (1 - alpha) + tex[:3] * alpha
    return out


def check_certificates(model, images: torch.Tensor, labels: torch.Tensor, patch: str | Path, area: float = 0.02,
                       masks: int = 6, stride: int = 16, progress: ProgressFn | None = None) -> dict:
    """The certificate's promise on real images: for every image PatchCleanser certifies, paste `patch` (axis-
    aligned, at the side the masks cover) at every position on a `stride` grid (plus the far edges) and count
    defended predictions that leave the label. Any violation is a bug; `undefended_flips` shows the patch bites."""
    from patchlab.defenses.patchcleanser import PatchCleanser
    from patchlab.patch.io import load_patch

    start = time.perf_counter()
    rgba, _ = load_patch(patch)
    pc = PatchCleanser(model, area, masks)
    side, size = pc.masks.patch, pc.image_size
    spots = sorted(set(range(0, size - side + 1, stride)) | {size - side})
    certified = checked = violations = flips = 0
    for i, (image, label) in enumerate(zip(images, labels.tolist())):
        if not pc.verdict(image, label).certified:
            continue
        certified += 1
        patched = torch.stack([paste_square(image, rgba, side, t, left) for t in spots for left in spots])
        with torch.inference_mode():
            flips += int((model(patched).argmax(1).cpu() != label).sum())
        for x in patched:
            violations += pc.verdict(x, certify=False).prediction != label
            checked += 1
        if progress:
            progress(i + 1, len(images), {"certified": certified, "violations": violations})
    return {"n": len(images), "certified": certified, "placements": len(spots) ** 2, "checked": checked,
            "violations": violations, "undefended_flips": flips, "patch_side": side, "stride": stride,
            "seconds": time.perf_counter() - start}


__all__ = ["PATCH_DEFENSES", "check_certificates", "evaluate_defenses", "paste_square"]
