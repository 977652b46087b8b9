"""Patch evaluation: targeted success per area on held-out images under an independent EOT draw, with Wilson 95%
intervals, random-noise and natural-photo baselines of the same shape and size, and transfer to other models."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from patchlab.eot.config import EOTConfig
from patchlab.eot.transforms import CAMERA_EFFECTS, EFFECTS, EOT, check_effects
from patchlab.errors import PatchlabError
from patchlab.progress import ProgressFn
from patchlab.stats import wilson_interval

DEFAULT_AREAS = (0.02, 0.05, 0.10, 0.15, 0.20, 0.25)
NATURAL_PHOTO = "coffee"  # a built-in photo (espresso), for the natural-photo baseline
# effect_breakdown's rows: each effect alone, then all camera effects, then every effect but the in-plane placement
BREAKDOWN_GROUPS = (*((e,) for e in EFFECTS), CAMERA_EFFECTS, tuple(e for e in EFFECTS if e != "rotation"))


def baseline_patches(rgba: torch.Tensor, seed: int = 0) -> dict[str, torch.Tensor]:
    """Same shape (alpha) and resolution as `rgba`: uniform random noise, and a natural photo crop."""
    from patchlab.data import load_sample
    from patchlab.models import preprocess

    alpha = rgba[3:4]
    noise = torch.rand((3, *rgba.shape[-2:]), generator=torch.Generator().manual_seed(seed))
    photo = preprocess(load_sample(NATURAL_PHOTO).image, min(rgba.shape[-2:]))
    photo = F.interpolate(photo[None], size=tuple(rgba.shape[-2:]), mode="bilinear", antialias=True)[0]
    return {"random_noise": torch.cat([noise, alpha], 0), "natural_photo": torch.cat([photo.clamp(0, 1), alpha], 0)}


def _rate(k: int, n: int, probs: list[float]) -> dict:
    lo, hi = wilson_interval(k, n)
    return {"success_rate": k / n if n else 0.0, "k": k, "n": n, "ci95": [lo, hi],
            "mean_target_prob": sum(probs) / len(probs) if probs else None}


@dataclass
class _Setup:
    rgba: torch.Tensor
    meta: dict
    target_idx: int | None
    target_name: str | None
    model_names: list
    eot_cfg: EOTConfig
    engine: EOT
    paths: list[Path]
    labels: dict | None
    n_trained: int


def _setup(patch, images, models, target, eot, colour, exclude, limit) -> _Setup:
    """The patch, its target, models, EOT (at exactly the nominal area) and the held-out images to score it on."""
    from patchlab.eot import ColourModel, load_config
    from patchlab.patch.data import folder_labels, list_scene_images
    from patchlab.patch.io import load_patch
    from patchlab.patch.train import _resolve_target

    meta: dict = {}
    if isinstance(patch, (str, Path)):
        rgba, meta = load_patch(patch)
    else:
        rgba = patch.detach().cpu()
        if rgba.shape[0] == 3:
            rgba = torch.cat([rgba, torch.ones_like(rgba[:1])], 0)
    if target is None and meta:
        target = meta.get("target")
    target_idx, target_name = _resolve_target(target)
    model_names = list(models) if models else meta.get("models") or ["efficientnet_lite0"]
    eot_spec = eot or (meta.get("eot") if meta else None) or "print"
    eot_cfg = load_config(eot_spec).replace(area_scale=(1.0, 1.0))  # exactly the nominal area
    colour_model = ColourModel.from_json(colour) if colour else (
        ColourModel.from_dict(meta["colour"]) if meta.get("colour") else None)
    engine = EOT(eot_cfg, colour_model)

    if isinstance(images, (list, tuple)):
        paths, labels = [Path(p) for p in images], None
    else:
        paths, labels = list_scene_images(images), folder_labels(images)
    skip = set(exclude or []) | set(meta.get("train_images", []))
    n_trained = sum(p.name in skip for p in paths)
    paths = [p for p in paths if p.name not in skip]
    if labels is not None and target_idx is not None:
        paths = [p for p in paths if labels.get(p.name) != target_idx]
    if limit:
        paths = paths[:limit]
    if not paths:
        raise PatchlabError("no evaluation images left (all were training images or of the target class)")
    return _Setup(rgba, meta, target_idx, target_name, model_names, eot_cfg, engine, paths, labels, n_trained)


def _references(model, bank, st: _Setup, batch_size: int, dev) -> torch.Tensor | None:
    """Untargeted runs: the label each image must move away from (its folder label, else the clean prediction)."""
    from patchlab.patch.data import to_float

    if st.target_idx is not None:
        return None
    if st.labels is not None:
        return torch.tensor([st.labels[p.name] for p in st.paths])
    return torch.cat([model.predict(to_float(bank[i:i + batch_size], dev)).argmax(-1).cpu()
                      for i in range(0, len(bank), batch_size)])


def _hits(logits: torch.Tensor, target_idx: int | None, refs: torch.Tensor | None, start: int, probs: list) -> int:
    """Successes in a batch (top-1 = target, or top-1 moved off the reference label); appends p(target) to probs."""
    pred = logits.argmax(-1).cpu()
    if target_idx is None:
        return int((pred != refs[start:start + len(pred)]).sum())
    probs += logits.softmax(-1)[:, target_idx].cpu().tolist()
    return int((pred == target_idx).sum())


def evaluate_patch(patch, images, models=None, target=None, areas=DEFAULT_AREAS, eot=None, colour=None,
                   draws: int = 1, seed: int = 1234, baselines: bool = True, limit: int | None = None,
                   batch_size: int = 32, device="auto", exclude: list[str] | None = None,
                   progress: ProgressFn | None = None) -> dict:
    """Success of `patch` (PNG path, or RGBA tensor with `target`/`models`/`eot` given) on `images` (a folder or a
    list of paths). Images the patch was trained on (sidecar `train_images`) and images of the target class are
    skipped. Untargeted (target None): success = top-1 differs from the true (or clean-predicted) label."""
    from patchlab.models import load_model, resolve_device
    from patchlab.patch.data import load_scenes, to_float

    start = time.perf_counter()
    st = _setup(patch, images, models, target, eot, colour, exclude, limit)
    rgba, meta, target_idx, target_name, engine = st.rgba, st.meta, st.target_idx, st.target_name, st.engine
    model_names, eot_cfg, paths, n_trained = st.model_names, st.eot_cfg, st.paths, st.n_trained
    dev = resolve_device(device)

    kinds = {"patch": rgba, **(baseline_patches(rgba, seed) if baselines else {})}
    areas = [float(a) for a in areas]
    result = {"target": target_idx, "target_name": target_name, "preset": eot_cfg.name, "eot": eot_cfg.to_dict(),
              "areas": areas, "n": len(paths) * draws, "images": len(paths), "draws": draws, "seed": seed,
              "skipped_training_images": n_trained, "models": {}}
    total_work = len(model_names) * len(areas) * draws * len(kinds) * len(paths)
    done = 0
    for name in model_names:
        model = name if not isinstance(name, str) else load_model(name, dev)
        bank = load_scenes(paths, model.input_size)
        refs = _references(model, bank, st, batch_size, dev)
        # clean frames under the same camera draws: how often the model says the target with no patch at all
        clean_hits = 0
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for i in range(0, len(bank), batch_size):
                pred = model(engine.clean(to_float(bank[i:i + batch_size], dev), g)).argmax(-1).cpu()
                clean_hits += int((pred == target_idx).sum()) if target_idx is not None else 0
        curve = []
        for ai, area in enumerate(areas):
            row: dict = {"area": area}
            for kind, tex in kinds.items():
                k, n, probs = 0, 0, []
                for d in range(draws):
                    g = torch.Generator().manual_seed(seed + 1000 * ai + d)  # same draws for patch and baselines
                    with torch.no_grad():
                        for i in range(0, len(bank), batch_size):
                            scenes = to_float(bank[i:i + batch_size], dev)
                            logits = model(engine(tex, scenes, area, g).images)
                            k += _hits(logits, target_idx, refs, i, probs)
                            n += len(logits)
                            done += len(logits)
                            if progress:
                                progress(done, total_work, {"model": model.name, "area": area, "kind": kind})
                stats = _rate(k, n, probs)
                if kind == "patch":
                    row.update(stats)
                else:
                    row.setdefault("baselines", {})[kind] = stats
            curve.append(row)
        result["models"][model.name] = {
            "white_box": model.name in (meta.get("models") or []), "input_size": model.input_size, "curve": curve,
            "clean_target_rate": clean_hits / len(paths) if target_idx is not None else None}
    first = result["models"][next(iter(result["models"]))]
    trained_area = meta.get("area", 0.10)
    at = min(first["curve"], key=lambda r: abs(r["area"] - trained_area))
    result.update({"model": next(iter(result["models"])), "success_rate": at["success_rate"], "area": at["area"],
                   "seconds": time.perf_counter() - start})
    return result


def effect_breakdown(patch, images, model: str | None = None, target=None, area: float | None = None, eot=None,
                     colour=None, groups=None, draws: int = 3, seed: int = 1234, limit: int | None = None,
                     batch_size: int = 32, device="auto", exclude: list[str] | None = None,
                     progress: ProgressFn | None = None) -> dict:
    """Which physical effects cost the patch its misses: success at one area under the full EOT draws, then under the
    same draws with one group of effects switched off at a time (paired: every row sees the same images, poses and
    effect strengths). The first row equals `evaluate_patch(areas=[area])` with the same seed and draws."""
    from patchlab.models import load_model, resolve_device
    from patchlab.patch.data import load_scenes, to_float

    start = time.perf_counter()
    st = _setup(patch, images, [model] if model else None, target, eot, colour, exclude, limit)
    area = float(area if area is not None else st.meta.get("area", 0.10))
    variants = [()] + [tuple(gr) for gr in (groups if groups is not None else BREAKDOWN_GROUPS)]
    check_effects([e for off in variants for e in off])  # before loading the model
    dev = resolve_device(device)
    net = load_model(st.model_names[0], dev) if isinstance(st.model_names[0], str) else st.model_names[0]
    bank = load_scenes(st.paths, net.input_size)
    refs = _references(net, bank, st, batch_size, dev)
    counts = [[0, 0, []] for _ in variants]
    total, done = draws * len(bank) * len(variants), 0
    with torch.no_grad():
        for d in range(draws):
            g = torch.Generator().manual_seed(seed + d)  # = evaluate_patch's draws for its first area
            for i in range(0, len(bank), batch_size):
                scenes = to_float(bank[i:i + batch_size], dev)
                params = st.engine.sample(len(scenes), scenes.shape[-1], area, g)
                for c, off in zip(counts, variants):
                    logits = net(st.engine(st.rgba, scenes, area, g, params=params.without(*off)).images)
                    c[0] += _hits(logits, st.target_idx, refs, i, c[2])
                    c[1] += len(logits)
                    done += len(logits)
                    if progress:
                        progress(done, total, {"model": net.name, "off": ",".join(off) or "none"})
    rows = [{"off": list(off), **_rate(*c)} for off, c in zip(variants, counts)]
    for row in rows:
        row["gain"] = row["success_rate"] - rows[0]["success_rate"]
    return {"target": st.target_idx, "target_name": st.target_name, "model": net.name, "area": area,
            "preset": st.eot_cfg.name, "eot": st.eot_cfg.to_dict(), "images": len(bank), "draws": draws,
            "seed": seed, "n": len(bank) * draws, "rows": rows, "seconds": time.perf_counter() - start}


def plot_curve(result: dict, path: str | Path, title: str | None = None,
               written_by: str = "patchlab patch eval") -> Path:
    """Success vs patch area: one line per model with Wilson 95% bands, baselines dashed. Written atomically as a
    tagged PNG (kind patch-eval-plot)."""
    from matplotlib.figure import Figure  # no pyplot: no global state

    from patchlab.artifacts import save_figure

    path = Path(path)
    fig = Figure(figsize=(6.4, 4.2), dpi=120)
    ax = fig.subplots()
    for name, res in result["models"].items():
        xs = [100 * r["area"] for r in res["curve"]]
        ys = [100 * r["success_rate"] for r in res["curve"]]
        lo = [100 * r["ci95"][0] for r in res["curve"]]
        hi = [100 * r["ci95"][1] for r in res["curve"]]
        label = f"{name} ({'white-box' if res.get('white_box') else 'transfer'})"
        line, = ax.plot(xs, ys, marker="o", label=label)
        ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.2)
        for kind, style in (("random_noise", ":"), ("natural_photo", "--")):
            if res["curve"] and kind in res["curve"][0].get("baselines", {}):
                by = [100 * r["baselines"][kind]["success_rate"] for r in res["curve"]]
                ax.plot(xs, by, style, color=line.get_color(), alpha=0.7, label=f"{name}: {kind.replace('_', ' ')}")
    ax.set_xlabel("patch area (% of image)")
    ax.set_ylabel(f"top-1 = {result.get('target_name') or 'not the true class'} (%)")
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    ax.set_title(title or f"{result.get('target_name') or 'untargeted'}: {result['images']} held-out images, "
                 f"preset {result['preset']}, Wilson 95%", fontsize=9)
    ax.legend(fontsize=7, loc="center right")
    fig.tight_layout()
    return save_figure(fig, path, "patch-eval-plot", written_by)
