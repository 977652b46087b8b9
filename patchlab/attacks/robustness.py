"""Robustness of a model under an attack, honestly measured: clean and robust accuracy, success rate, norms, time
(one batch, a labelled folder with resumable saved adversarials, or an accuracy-vs-ε curve)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterable

import torch

from patchlab.attacks.base import Attack, AttackResult, model_device
from patchlab.errors import PatchlabError, parse_eps
from patchlab.progress import ProgressFn


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


WRITER = "patchlab attack"


def _row_names(items, folder: Path) -> dict[Path, tuple[str, str]]:
    """Each image's row key (its path relative to the folder: the file name for a flat folder) and adversarial
    PNG (the same with .png; with .png added to the full name where two sources would share one, x.jpg and x.png)."""
    keys = {it.path: it.path.relative_to(folder).as_posix() for it in items}
    pngs = [str(Path(k).with_suffix(".png")) for k in keys.values()]
    return {p: (k, str(Path(k).with_suffix(".png")) if pngs.count(str(Path(k).with_suffix(".png"))) == 1 else k + ".png")
            for p, k in keys.items()}


def _prepare_out_dir(out: Path, settings: dict, force: bool) -> dict[str, dict]:
    """The rows already done in `out` (a resumed run), after checking that `out` is new, empty, or this command's
    folder: same settings resume, other settings are refused, `force` starts over (its own PNGs removed)."""
    from patchlab.artifacts import identify, read_json, read_jsonl, repair_jsonl_tail, write_json, write_text

    if out.exists() and not out.is_dir():
        raise PatchlabError(f"{out}: is a file, not a folder for the adversarial images")
    run_file, rows_file = out / "run.json", out / "results.jsonl"
    found = identify(out) if out.is_dir() else None
    wanted = json.loads(json.dumps(settings, default=float))
    done: dict[str, dict] = {}
    if found is not None and found.kind == "attack-run":
        previous = {k: v for k, v in (read_json(run_file) or {}).items() if k not in ("artifact", "written_by")}
        if previous == wanted and not force:
            if rows_file.is_file():
                repair_jsonl_tail(rows_file)  # a kill mid-line leaves a torn last row: redo that image
                done = {row["image"]: row for row in read_jsonl(rows_file)}
            return done
        if not force:
            from patchlab.artifacts import OutputExists

            raise OutputExists(f"{out} holds an attack run with other settings; not overwritten: <force> starts it "
                               "over, or choose another folder", out, found, True)
        old_rows = read_jsonl(rows_file) if rows_file.is_file() else []
        for row in old_rows:  # start over: remove this command's own PNGs, nothing else
            png = out / row.get("png", Path(row["image"]).with_suffix(".png").as_posix())
            mine = identify(png)
            if png.is_file() and (mine is None and found.legacy or mine is not None and mine.kind == "adversarial"):
                png.unlink()
    elif out.is_dir() and any(out.iterdir()):
        raise PatchlabError(f"{out} holds other files and is not a `{WRITER}` output folder; choose a new or empty "
                            "folder")
    write_json(run_file, settings, "attack-settings", WRITER)
    write_text(rows_file, "")
    return done


def evaluate_folder(model, attack: Attack, folder: str | Path, limit: int | None = None, batch_size: int = 16,
                    out_dir: str | Path | None = None, progress: ProgressFn | None = None,
                    force: bool = False) -> dict:
    """Attack a labelled image folder batch by batch.

    With `out_dir`, each adversarial is saved as `<stem>.png` (8-bit, lossless, tagged) and its row appended to
    `results.jsonl` beside `run.json` (the settings); a rerun with the same settings resumes after the rows already
    there. A folder holding other files, or a run with other settings, is refused (`force` starts that run over).
    `png_success_rate` re-checks the attack on the 8-bit images as saved (rounding can undo very small
    perturbations).
    """
    from patchlab.artifacts import append_jsonl, check_output
    from patchlab.data import labelled_folder, save_image
    from patchlab.models.classify import load_batch

    items = labelled_folder(folder, limit=limit)
    size = getattr(model, "input_size", None)
    if size is None:
        raise PatchlabError("evaluate_folder needs a model with .input_size (a patchlab Classifier)")
    settings = {"model": getattr(model, "name", "?"), **attack.describe(), "folder": str(Path(folder).resolve()),
                "limit": limit}
    names = _row_names(items, Path(folder))
    done: dict[str, dict] = {}
    rows_file = None
    if out_dir is not None:
        done = _prepare_out_dir(Path(out_dir), settings, force)
        rows_file = Path(out_dir) / "results.jsonl"
    todo = [it for it in items if names[it.path][0] not in done]
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
            key, png = names[it.path]
            row = {"image": key, "label": int(y[i]), "clean_pred": int(clean_pred[i]),
                   "adv_pred": int(res.adv_pred[i]), "success": bool(res.success[i]), "png_success": bool(png_ok[i]),
                   "linf": float(res.linf[i]), "l2": float(res.l2[i]), "queries": res.queries,
                   "seconds": dt / len(chunk)}
            if res.target is not None:
                row["target"] = int(res.target[i])
            if out_dir is not None:  # the PNG lands before its row: a row in the journal means its PNG is whole
                row["png"] = png
                check_output(Path(out_dir) / png, "adversarial", WRITER, force=True)  # never over another file
                save_image(res.adv[i], Path(out_dir) / png, kind="adversarial", written_by=WRITER)
            new_rows.append(row)
            done[key] = row
        if rows_file is not None:
            append_jsonl(rows_file, new_rows)
        if progress:
            rate = sum(r["success"] for r in done.values()) / len(done)
            progress(len(done), len(items), {"success": rate})
    rows = [done[names[it.path][0]] for it in items]
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
