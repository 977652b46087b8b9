"""Honest attack evaluation: clean and robust accuracy, success rate, norms, time; accuracy-vs-ε curves."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterable

import torch

from patchlab.attacks.base import Attack, AttackResult, ProgressFn, model_device
from patchlab.errors import PatchlabError


def summarize(clean_pred: torch.Tensor, labels: torch.Tensor, result: AttackResult) -> dict:
    """Metrics over N examples. Norm statistics are over the successful adversarials only (0 when none)."""
    n = len(labels)
    labels = labels.to(result.adv_pred.device)
    ok = result.success
    lin, l2 = result.linf[ok], result.l2[ok]
    clean_ok = clean_pred.to(labels.device) == labels
    return {
        "n": n,
        "clean_accuracy": float(clean_ok.float().mean()) if n else 0.0,
        "robust_accuracy": float((result.adv_pred == labels).float().mean()) if n else 0.0,
        "success_rate": float(ok.float().mean()) if n else 0.0,
        "success_rate_on_clean_correct": float(ok[clean_ok].float().mean()) if bool(clean_ok.any()) else 0.0,
        "mean_linf": float(lin.mean()) if len(lin) else 0.0,
        "max_linf": float(lin.max()) if len(lin) else 0.0,
        "mean_l2": float(l2.mean()) if len(l2) else 0.0,
        "max_l2": float(l2.max()) if len(l2) else 0.0,
        "queries": result.queries,
    }


@torch.no_grad()
def _predict(model, x: torch.Tensor, batch: int = 64) -> torch.Tensor:
    dev = model_device(model)
    return torch.cat([model(x[i:i + batch].to(dev)).argmax(1) for i in range(0, len(x), batch)])


def evaluate_attack(model, attack: Attack, images: torch.Tensor, labels: torch.Tensor | None = None) -> dict:
    """Run `attack` on a batch and report clean_accuracy, robust_accuracy, success_rate, mean/max Linf and L2,
    n, seconds (attack time only) and queries (gradient evaluations per example)."""
    clean_pred = _predict(model, images)
    labels = clean_pred.clone() if labels is None else torch.as_tensor(labels).to(clean_pred.device).long()
    start = time.perf_counter()
    result = attack(images, labels)
    seconds = time.perf_counter() - start
    out = summarize(clean_pred, labels, result)
    out["seconds"] = seconds
    out.update(model=getattr(model, "name", type(model).__name__), **{k: v for k, v in attack.describe().items()
                                                                      if k not in out})
    return out


def accuracy_curve(model, attack: Attack, images: torch.Tensor, labels: torch.Tensor | None,
                   epsilons: Iterable[float | str], progress: ProgressFn | None = None) -> dict:
    """Foolbox-style: robust accuracy and success rate for several ε in one call.

    FGSM/FGM compute the gradient once for all ε; other attacks rerun at each ε. Returns lists aligned with
    `eps`, plus the clean accuracy. Robust accuracy at ε = 0 equals the clean accuracy.
    """
    from patchlab.attacks.base import parse_eps
    from patchlab.attacks.fgsm import FGSM

    if not attack.uses_eps:
        raise PatchlabError(f"{attack.name} has no ε; an accuracy-vs-ε curve needs an ε-bounded attack")
    eps_list = [parse_eps(e, attack.norm) for e in epsilons]
    if not eps_list:
        raise PatchlabError("give at least one ε")
    clean_pred = _predict(model, images)
    labels = clean_pred.clone() if labels is None else torch.as_tensor(labels).to(clean_pred.device).long()
    start = time.perf_counter()
    rows = []
    if isinstance(attack, FGSM):
        results = attack.sweep(images, labels, eps_list)
    else:
        results = []
        for i, eps in enumerate(eps_list):
            results.append(attack.with_eps(eps)(images, labels))
            if progress:
                progress(i + 1, len(eps_list), {"eps": eps})
    for eps, res in zip(eps_list, results):
        rows.append({"eps": eps, **summarize(clean_pred, labels, res)})
    return {
        "attack": attack.name, "norm": attack.norm, "mode": attack.mode,
        "model": getattr(model, "name", type(model).__name__), "n": len(labels),
        "clean_accuracy": rows[0]["clean_accuracy"],
        "eps": eps_list,
        "robust_accuracy": [r["robust_accuracy"] for r in rows],
        "success_rate": [r["success_rate"] for r in rows],
        "mean_l2": [r["mean_l2"] for r in rows],
        "mean_linf": [r["mean_linf"] for r in rows],
        "seconds": time.perf_counter() - start,
    }


def evaluate_folder(model, attack: Attack, folder: str | Path, limit: int | None = None, batch_size: int = 16,
                    out_dir: str | Path | None = None, progress: ProgressFn | None = None) -> dict:
    """Attack a labelled image folder batch by batch.

    With `out_dir`, each adversarial is saved as `<stem>.png` (8-bit, lossless) and its row appended to
    `results.jsonl`; a rerun with the same settings resumes after the rows already there. `png_success_rate`
    re-checks the attack on the 8-bit images as saved (rounding can undo very small perturbations).
    """
    from patchlab.data import labelled_folder, save_image
    from patchlab.models.classify import load_batch

    items = labelled_folder(folder, limit=limit)
    size = getattr(model, "input_size", None)
    if size is None:
        raise PatchlabError("evaluate_folder needs a model with .input_size (a patchlab Classifier)")
    settings = {"model": getattr(model, "name", "?"), **attack.describe(), "folder": str(Path(folder).resolve()),
                "limit": limit}
    done: dict[str, dict] = {}
    rows_file = None
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        run_file, rows_file = out / "run.json", out / "results.jsonl"
        if run_file.exists() and rows_file.exists():
            previous = json.loads(run_file.read_text())
            if previous != json.loads(json.dumps(settings, default=float)):
                raise PatchlabError(f"{out}: holds results of different settings; choose another --out folder")
            for line in rows_file.read_text().splitlines():
                if line.strip():
                    row = json.loads(line)
                    done[row["image"]] = row
        else:
            run_file.write_text(json.dumps(settings, indent=2, default=float))
            rows_file.write_text("")
    todo = [it for it in items if it.path.name not in done]
    dev = model_device(model)
    seconds = sum(r.get("seconds", 0.0) for r in done.values())
    queries = max([r.get("queries", 0) for r in done.values()] or [0])
    for start in range(0, len(todo), batch_size):
        chunk = todo[start:start + batch_size]
        x = load_batch([it.path for it in chunk], size).to(dev)
        y = torch.tensor([it.label for it in chunk], device=dev)
        with torch.no_grad():
            clean_pred = model(x).argmax(1)
        t0 = time.perf_counter()
        res = attack(x, y)
        dt = time.perf_counter() - t0
        seconds += dt
        queries = max(queries, res.queries)
        png_ok = res.success
        if out_dir is not None:
            quantized = res.adv.mul(255).round().div(255)
            with torch.no_grad():
                png_pred = model(quantized).argmax(1)
            png_ok = attack.is_success(png_pred, y, res.target)
        new_rows = []
        for i, it in enumerate(chunk):
            row = {"image": it.path.name, "label": int(y[i]), "clean_pred": int(clean_pred[i]),
                   "adv_pred": int(res.adv_pred[i]), "success": bool(res.success[i]), "png_success": bool(png_ok[i]),
                   "linf": float(res.linf[i]), "l2": float(res.l2[i]), "queries": res.queries,
                   "seconds": dt / len(chunk)}
            if res.target is not None:
                row["target"] = int(res.target[i])
            new_rows.append(row)
            done[it.path.name] = row
            if out_dir is not None:
                save_image(res.adv[i], Path(out_dir) / f"{it.path.stem}.png")
        if rows_file is not None:
            with rows_file.open("a") as fh:
                fh.writelines(json.dumps(r) + "\n" for r in new_rows)
        if progress:
            rate = sum(r["success"] for r in done.values()) / len(done)
            progress(len(done), len(items), {"success": rate})
    rows = [done[it.path.name] for it in items]
    n = len(rows)
    ok = [r for r in rows if r["success"]]
    mean = lambda vals: sum(vals) / len(vals) if vals else 0.0  # noqa: E731
    result = {
        "model": settings["model"], "n": n,
        "clean_accuracy": mean([r["clean_pred"] == r["label"] for r in rows]),
        "robust_accuracy": mean([r["adv_pred"] == r["label"] for r in rows]),
        "success_rate": mean([r["success"] for r in rows]),
        "mean_linf": mean([r["linf"] for r in ok]), "max_linf": max([r["linf"] for r in ok] or [0.0]),
        "mean_l2": mean([r["l2"] for r in ok]), "max_l2": max([r["l2"] for r in ok] or [0.0]),
        "queries": queries, "seconds": seconds,
        **{k: v for k, v in attack.describe().items() if k not in ("model",)},
    }
    if out_dir is not None:
        result["png_success_rate"] = mean([r["png_success"] for r in rows])
        result["out"] = str(out_dir)
    return result
