"""One cell of a sweep, as a Ray task or a pool process runs it: score the patch for one (model, area, preset,
defense, seed) with `patchlab.patch.score.evaluate_patch`, and write `cells/<id>.cell.json` atomically. A cell's
result depends only on the grid and the cell, never on where it ran (same seeds, same images, same draws)."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

WRITER = "patchlab sweep"
TIMING_KEYS = ("seconds", "host", "pid", "finished", "device_used")  # where and how long: not part of the result


def cell_path(out: str | Path, cell: dict) -> Path:
    from patchlab.artifacts import KINDS

    return Path(out) / "cells" / f"{cell['id']}{KINDS['sweep-cell'].suffix}"


def read_cell(path: Path, settings_key: str) -> dict | None:
    """A finished cell's result, or None when the file is missing, torn, not a sweep cell, or from other settings."""
    from patchlab.artifacts import read_json

    data = read_json(path)
    if not isinstance(data, dict) or data.get("artifact") != "sweep-cell" or data.get("settings_key") != settings_key:
        return None
    return data


def run_cell(cell: dict, grid: dict, out: str, threads: int | None = None) -> dict:
    """Evaluate one cell and write its JSON; returns the written result (a plain dict)."""
    import torch

    from patchlab.artifacts import tag, write_json
    from patchlab.models import resolve_device, shared_model
    from patchlab.patch.score import evaluate_patch
    from patchlab.sweep.defenses import defended, load_plugins

    start = time.perf_counter()
    if threads:
        torch.set_num_threads(max(1, int(threads)))
    load_plugins(grid.get("plugins") or [])
    device = resolve_device(grid.get("device", "cpu"))
    model = defended(shared_model(cell["model"], device), cell["defense"])
    r = evaluate_patch(grid["patch"], grid["images"], models=[model], target=grid.get("target"),
                       areas=[cell["area"]], eot=cell["preset"], draws=int(grid.get("draws", 1)), seed=cell["seed"],
                       baselines=False, limit=grid.get("limit"), batch_size=int(grid.get("batch_size", 32)),
                       device=device)
    row = next(iter(r["models"].values()))["curve"][0]
    result = {  # as it reads back from the file: tag first
        **tag("sweep-cell", WRITER), "id": cell["id"], "settings_key": cell["settings_key"],
        "model": cell["model"], "area": cell["area"], "preset": cell["preset"], "defense": cell["defense"],
        "seed": cell["seed"], "target": r["target"], "target_name": r["target_name"],
        "success_rate": row["success_rate"], "ci95": row["ci95"], "k": row["k"], "n": row["n"],
        "mean_target_prob": row["mean_target_prob"], "images": r["images"], "draws": r["draws"],
        "skipped_training_images": r["skipped_training_images"],
        "seconds": time.perf_counter() - start, "host": platform.node(), "pid": os.getpid(),
        "device_used": str(device), "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_json(cell_path(out, cell), result, kind="sweep-cell", written_by=WRITER)
    return result
