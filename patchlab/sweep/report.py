"""A sweep's merged results: one row per cell, rows pooled over seeds (Wilson 95% on the pooled counts), as JSON,
CSV, markdown and a heatmap (rows: model x preset x defense, columns: areas)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from patchlab.stats import wilson_interval

CELL_COLUMNS = ("model", "area", "preset", "defense", "seed", "success_rate", "ci95_low", "ci95_high", "k", "n",
                "mean_target_prob", "seconds")
POOLED_COLUMNS = ("model", "area", "preset", "defense", "seeds", "success_rate", "ci95_low", "ci95_high", "k", "n")


def merge(grid, results: list[dict]) -> dict:
    """Every cell's result (in grid order) and the rates pooled over seeds."""
    pooled: dict[tuple, dict] = {}
    for r in results:
        key = (r["model"], r["area"], r["preset"], r["defense"])
        p = pooled.setdefault(key, {"model": key[0], "area": key[1], "preset": key[2], "defense": key[3],
                                    "seeds": [], "k": 0, "n": 0})
        p["seeds"].append(r["seed"])
        p["k"] += r["k"]
        p["n"] += r["n"]
    for p in pooled.values():
        p["success_rate"] = p["k"] / p["n"] if p["n"] else 0.0
        p["ci95"] = list(wilson_interval(p["k"], p["n"]))
    order = {axis: {str(v): i for i, v in enumerate(grid.to_dict()[axis + "s"])}
             for axis in ("model", "preset", "defense")}
    rows = sorted(pooled.values(), key=lambda p: (order["model"][str(p["model"])], order["preset"][str(p["preset"])],
                                                  order["defense"][str(p["defense"])], p["area"]))
    first = results[0] if results else {}
    return {"settings_key": grid.settings_key(), "grid": grid.to_dict(), "target": first.get("target"),
            "target_name": first.get("target_name"), "n": sum(r["n"] for r in results), "cells": results,
            "pooled": rows, "seed": list(grid.seeds)}


def _flat(row: dict, columns) -> list:
    values = []
    for c in columns:
        if c == "ci95_low":
            values.append(row["ci95"][0])
        elif c == "ci95_high":
            values.append(row["ci95"][1])
        elif c == "seeds":
            values.append(" ".join(map(str, row["seeds"])))
        else:
            values.append(row.get(c))
    return values


def to_csv(merged: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CELL_COLUMNS)
    for r in merged["cells"]:
        w.writerow(_flat(r, CELL_COLUMNS))
    return buf.getvalue()


def to_markdown(merged: dict) -> str:
    g = merged["grid"]
    lines = [f"Sweep of `{Path(g['patch']).name}` (target {merged.get('target_name') or 'untargeted'}) on "
             f"`{g['images']}`: {len(merged['cells'])} cells, n = {merged['n']} samples; success rate pooled over "
             f"seeds {', '.join(map(str, g['seeds']))}, Wilson 95%.", "",
             "| model | preset | defense | area | success | 95% CI | k / n |", "|---|---|---|---|---|---|---|"]
    for p in merged["pooled"]:
        lines.append(f"| {p['model']} | {p['preset']} | {p['defense']} | {p['area']:.0%} | {p['success_rate']:.1%} | "
                     f"[{p['ci95'][0]:.1%}, {p['ci95'][1]:.1%}] | {p['k']} / {p['n']} |")
    return "\n".join(lines) + "\n"


def heatmap(merged: dict):
    """A matplotlib Figure: pooled success, rows (model, preset, defense), columns areas."""
    import numpy as np
    from matplotlib.figure import Figure

    g = merged["grid"]
    rows = [(m, p, d) for m in g["models"] for p in g["presets"] for d in g["defenses"]]
    areas = list(g["areas"])
    value = {(p["model"], p["preset"], p["defense"], p["area"]): p["success_rate"] for p in merged["pooled"]}
    data = np.array([[value.get((*r, a), np.nan) for a in areas] for r in rows])
    fig = Figure(figsize=(1.6 + 1.1 * len(areas), 1.2 + 0.45 * len(rows)), dpi=120)
    ax = fig.subplots()
    im = ax.imshow(data * 100, vmin=0, vmax=100, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(areas)), [f"{a:.0%}" for a in areas])
    ax.set_yticks(range(len(rows)), [" / ".join(r) for r in rows], fontsize=7)
    for i in range(len(rows)):
        for j in range(len(areas)):
            if not np.isnan(data[i, j]):
                ax.text(j, i, f"{100 * data[i, j]:.0f}", ha="center", va="center", fontsize=7,
                        color="white" if data[i, j] < 0.6 else "black")
    ax.set_xlabel("patch area")
    ax.set_title(f"success (%) -> {merged.get('target_name') or 'untargeted'}, pooled over seeds", fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.05)
    fig.tight_layout()
    return fig


def write_reports(merged: dict, out: Path, paths: dict[Path, str]) -> None:
    from patchlab.artifacts import save_figure, write_json, write_text
    from patchlab.sweep.cell import WRITER

    by_kind = {k: p for p, k in paths.items()}
    write_text(by_kind["sweep-csv"], to_csv(merged))
    write_text(by_kind["sweep-markdown"], to_markdown(merged))
    save_figure(heatmap(merged), by_kind["sweep-heatmap"], "sweep-heatmap", WRITER)
    write_json(by_kind["sweep-results"], merged, kind="sweep-results", written_by=WRITER)  # last: marks it complete
