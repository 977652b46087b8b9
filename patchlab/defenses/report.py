"""Benchmark tables for docs/defenses.md and the app's "Measured results" tab: one JSON file per experiment in
docs/results/defenses/ ({"title", "note", "date", "table": [rows], "result": the full output}), and markdown."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from patchlab.artifacts import write_text

RESULTS_DIR = Path(__file__).resolve().parents[2] / "docs" / "results" / "defenses"


def pct(value: float | None, ci: list[float] | None = None) -> str:
    if value is None:
        return ""
    return f"{100 * value:.1f}%" + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")


def save_result(name: str, title: str, table: list[dict], result: dict, note: str = "",
                folder: str | Path | None = None) -> Path:
    path = Path(folder or RESULTS_DIR) / f"{name}.json"
    payload = {"title": title, "note": note, "date": datetime.date.today().isoformat(), "table": table,
               "result": result}
    return write_text(path, json.dumps(payload, indent=1, default=float))


def markdown(table: list[dict]) -> str:
    if not table:
        return ""
    cols = list(dict.fromkeys(c for row in table for c in row))  # every row's columns, first-seen order
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in cols) + " |" for row in table]
    return "\n".join(lines)


def patchcleanser_rows(result: dict, label: str = "") -> list[dict]:
    row = {"model": label or result["model"], "n": result["n"], "patch": f"{result['patch_side']} px",
           "masks": f"{result['masks']} x {result['mask_size']} px",
           "certified": pct(result["certified_accuracy"], result["certified_ci95"]),
           "clean (defended)": pct(result["clean_accuracy"], result["clean_ci95"]),
           "undefended": pct(result["undefended_accuracy"], result["undefended_ci95"]),
           "s/image": f"{result['seconds_per_image']:.2f}", "passes/image": f"{result['passes_per_image']:.0f}"}
    if "speedup" in result:
        row["plain all-pairs s/image"] = f"{result['baseline']['seconds_per_image']:.2f}"
        row["speed-up"] = f"{result['speedup']:.1f}x"
    return [row]


def patch_rows(result: dict) -> list[dict]:
    out = []
    for r in result["rows"]:
        out.append({"area": f"{100 * r['area']:g}%", "defense": r["defense"],
                    "attack success": pct(r["success_rate"], r["ci95"]),
                    "accuracy (patched)": pct(r["accuracy"], r["accuracy_ci95"]),
                    "clean accuracy": pct(r["clean_accuracy"], r["clean_ci95"]),
                    "certified": pct(r.get("certified_fraction"), r.get("certified_ci95")),
                    "patch box covered": pct(r.get("covered"))})
    return out


def transform_rows(result: dict) -> list[dict]:
    return [{"defense": r["defense"], "clean": pct(r["clean_accuracy"], r["clean_ci95"]),
             "PGD on plain model (transfer)": pct(r["transfer_accuracy"], r["transfer_ci95"]),
             "PGD through defense (naive)": pct(r["naive_accuracy"], r["naive_ci95"]),
             "BPDA (+EOT if randomized)": pct(r["bpda_accuracy"], r["bpda_ci95"])}
            for r in result["rows"]]


def adversarial_rows(runs: list[tuple[dict, dict]]) -> list[dict]:
    """(training summary, evaluate_robustness result) per model."""
    out = []
    for train, ev in runs:
        by = {r["attack"]: r for r in ev["rows"]}
        wall = train.get("wall_seconds", train["seconds"])  # summed over resumed runs where recorded
        row = {"training": train["method"], "epochs": f"{train['epochs_run']} (best {train['best_epoch']})",
               "CPU-min": f"{train['cpu_seconds'] / 60:.1f}", "wall-min": f"{wall / 60:.1f}",
               "clean": pct(ev["clean_accuracy"])}
        for name, r in by.items():
            if name != "none":
                row[name] = pct(r["accuracy"], r["ci95"] if name.startswith("strongest") else None)
        out.append(row)
    return out


def smoothing_rows(result: dict, radii=(0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)) -> list[dict]:
    out = []
    for c in result["curves"]:
        at = {r["radius"]: r for r in c["curve"]}
        row = {"sigma": c["sigma"], "n": c["n"], "abstain": pct(c["abstain_rate"])}
        for r in radii:
            if r in at:
                row[f"r={r:g}"] = pct(at[r]["certified_accuracy"])
        out.append(row)
    return out


__all__ = ["RESULTS_DIR", "adversarial_rows", "markdown", "patch_rows", "patchcleanser_rows", "pct", "save_result",
           "smoothing_rows", "transform_rows"]
