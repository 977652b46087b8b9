"""Session recording: one line per frame (JSONL or CSV), and a summary of how often the target class won.

A recording folder holds `meta.json`, `frames.jsonl` (or `frames.csv`), and after `close()`
`summary.json` and, when a target class was set, `summary.png`; `patchlab camera` puts each run in a fresh
`run-NNN` folder inside the one it is given. The summary gives the share of frames whose top-1 is the target with a Wilson
95% interval, overall and binned by apparent patch size, next to the same for a baseline recording.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np

from patchlab.errors import PatchlabError
from patchlab.stats import wilson_interval

SIZE_EDGES = (0, 40, 60, 80, 100, 130, 160, 200, 260, 340, 10_000)
CSV_FIELDS = ("index", "time_s", "top1_index", "top1_label", "top1_prob", "top5", "target_index", "target_prob",
              "is_target", "patch_size_px", "markers", "fps", "latency_ms", "roi", "virtual_patch", "defense",
              "defended_label", "certified")


def _share(records: list[dict]) -> dict:
    n = len(records)
    k = sum(1 for r in records if r.get("is_target"))
    lo, hi = wilson_interval(k, n)
    return {"n": n, "k": k, "share": k / n if n else None, "ci95": [lo, hi]}


def summarize(records: list[dict], edges: tuple[float, ...] = SIZE_EDGES) -> dict:
    """Target share overall and per apparent-size bin, top-1 counts, speed. `records` are FrameResult dicts."""
    out: dict = {"frames": len(records)}
    if not records:
        return out
    defended = [r for r in records if r.get("defense")]
    if defended:  # with a defense, is_target (and so the target share) is about the defended prediction
        out["defense"] = defended[0]["defense"]
        certs = [r.get("certified") for r in defended if r.get("certified") is not None]
        if certs:
            out["certified"] = _share([{"is_target": c} for c in certs])
    targeted = [r for r in records if r.get("target_index") is not None]
    if targeted:
        out["target_index"] = targeted[0]["target_index"]
        out["target_label"] = targeted[0].get("target_label")
        out["target"] = _share(targeted)
        probs = [r["target_prob"] for r in targeted]
        out["target_prob_mean"] = float(np.mean(probs))
        bins = []
        sized = [r for r in targeted if r.get("patch_size_px")]
        for lo, hi in zip(edges[:-1], edges[1:]):
            inside = [r for r in sized if lo <= r["patch_size_px"] < hi]
            if inside:
                bins.append({"size_px": [lo, hi], **_share(inside),
                             "target_prob_mean": float(np.mean([r["target_prob"] for r in inside]))})
        out["by_size"] = bins
        unsized = [r for r in targeted if not r.get("patch_size_px")]
        if unsized:
            out["no_patch_size"] = _share(unsized)
    labels: dict[str, int] = {}
    for r in records:
        top = r["top5"][0]["label"] if r.get("top5") else r.get("top1_label")
        labels[top] = labels.get(top, 0) + 1
    out["top1_counts"] = dict(sorted(labels.items(), key=lambda kv: -kv[1])[:10])
    lat = np.array([r["latency_ms"] for r in records if r.get("latency_ms") is not None], np.float64)
    if lat.size:
        out["latency_ms"] = {"p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95)),
                             "p99": float(np.percentile(lat, 99)), "mean": float(lat.mean())}
    times = [r["time_s"] for r in records if r.get("time_s") is not None]
    if len(times) > 1 and times[-1] > times[0]:
        out["fps"] = (len(times) - 1) / (times[-1] - times[0])
    return out


def _flatten(result: dict) -> dict:
    top = result["top5"][0]
    return {"index": result["index"], "time_s": f"{result['time_s']:.4f}", "top1_index": top["index"],
            "top1_label": top["label"], "top1_prob": f"{top['prob']:.6f}",
            "top5": ";".join(f"{t['index']}:{t['prob']:.6f}" for t in result["top5"]),
            "target_index": result.get("target_index"), "target_prob": result.get("target_prob"),
            "is_target": result.get("is_target"), "patch_size_px": result.get("patch_size_px"),
            "markers": " ".join(map(str, result.get("markers", []))), "fps": f"{result['fps']:.2f}",
            "latency_ms": f"{result['latency_ms']:.3f}", "roi": result.get("roi"),
            "virtual_patch": result.get("virtual_patch"), "defense": result.get("defense"),
            "defended_label": result.get("defended_label"), "certified": result.get("certified")}


def _unflatten(row: dict, labels: list[str] | None) -> dict:
    def num(v, cast=float):
        return None if v in (None, "", "None") else cast(v)

    top5 = []
    for item in row["top5"].split(";"):
        i, p = item.split(":")
        top5.append({"index": int(i), "label": labels[int(i)] if labels else str(i), "prob": float(p)})
    top5[0]["label"] = row.get("top1_label") or top5[0]["label"]
    return {"index": int(row["index"]), "time_s": float(row["time_s"]), "top5": top5,
            "target_index": num(row.get("target_index"), int), "target_prob": num(row.get("target_prob")),
            "is_target": row.get("is_target") == "True", "patch_size_px": num(row.get("patch_size_px")),
            "markers": [int(m) for m in (row.get("markers") or "").split()], "fps": float(row["fps"]),
            "latency_ms": float(row["latency_ms"]), "roi": row.get("roi"),
            "virtual_patch": row.get("virtual_patch") == "True"}


WRITER = "patchlab camera"
RECORDING_FILES = ("meta.json", "frames.jsonl", "frames.csv", "summary.json", "summary.png")
MODES = ("new", "append", "overwrite")


def is_recording(folder: str | Path) -> bool:
    folder = Path(folder)
    return (folder / "frames.jsonl").is_file() or (folder / "frames.csv").is_file() or (folder / "meta.json").is_file()


def resolve_recording(folder: str | Path) -> Path:
    """The recording a path names: the folder itself, or the single run folder inside it (`rec/` -> `rec/run-001`).
    Several runs are ambiguous: the error lists them."""
    from patchlab.artifacts import run_folders

    folder = Path(folder)
    if not folder.is_dir():
        raise PatchlabError(f"{folder}: no such recording folder")
    if is_recording(folder):
        return folder
    runs = [r for r in run_folders(folder) if is_recording(r)]
    if len(runs) == 1:
        return runs[0]
    if runs:
        names = ", ".join(r.name for r in runs[:3]) + (f", ... {runs[-1].name}" if len(runs) > 3 else "")
        raise PatchlabError(f"{folder} holds {len(runs)} recordings ({names}); name one, e.g. {runs[-1]}")
    raise PatchlabError(f"{folder}: no frames.jsonl or frames.csv (not a patchlab camera recording)")


class Recorder:
    """Append FrameResults to `folder/frames.jsonl` (or .csv); `close()` writes summary.json and summary.png.

    `mode`: "new" (default) refuses a folder that already holds a recording; "append" continues the recording there
    (its summary then covers every frame of that run); "overwrite" replaces it. Use
    `patchlab.artifacts.next_run_folder(parent)` for a fresh `parent/run-NNN` per run.
    """

    def __init__(self, folder: str | Path, meta: dict | None = None, fmt: str = "jsonl", mode: str = "new",
                 written_by: str = WRITER):
        from patchlab.artifacts import OutputExists, check_output, identify, read_json, repair_jsonl_tail

        if fmt not in ("jsonl", "csv"):
            raise PatchlabError(f"unknown recording format '{fmt}'; choose jsonl or csv")
        if mode not in MODES:
            raise PatchlabError(f"unknown recording mode '{mode}'; choose {', '.join(MODES)}")
        self.folder = Path(folder)
        self.fmt, self.written_by = fmt, written_by
        self.path = self.folder / f"frames.{fmt}"
        self.records: list[dict] = []
        self.summary: dict | None = None
        session = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **(meta or {})}
        existing = is_recording(self.folder)
        if existing:
            found = identify(self.folder)
            if found is None:
                raise OutputExists(f"{self.folder} holds files patchlab cannot identify as a camera recording; "
                                   "choose another folder", self.folder)
            if mode == "new":
                raise OutputExists(f"{self.folder} already holds a recording; <append> adds to it, <force> replaces "
                                   "it, or choose another folder", self.folder, found, True)
            for name, kind in (("meta.json", "recording-meta"), ("summary.json", "recording-summary"),
                               ("summary.png", "recording-plot")):
                if not (found.legacy and name == "summary.png"):  # older versions' plots carry no tag
                    check_output(self.folder / name, kind, found.written_by, force=True)  # never another kind
        self.folder.mkdir(parents=True, exist_ok=True)
        if existing and mode == "append":
            old = read_json(self.folder / "meta.json") or {}
            old_fmt = old.get("format") or ("csv" if (self.folder / "frames.csv").is_file() else "jsonl")
            if old_fmt != fmt:
                raise PatchlabError(f"{self.folder} is recorded as {old_fmt}; append to it with format {old_fmt}")
            self.meta = {k: v for k, v in old.items() if k not in ("artifact", "written_by")}
            self.meta.setdefault("sessions", [{k: old[k] for k in ("started", "frames") if k in old}])
            self.meta["sessions"].append(session)
            if self.path.is_file():
                repair_jsonl_tail(self.path)  # a torn last line from a killed session
                _, self.records = load_recording(self.folder)
        else:
            if existing:  # overwrite: this command's own recording files only
                for name in RECORDING_FILES:
                    (self.folder / name).unlink(missing_ok=True)
            self.meta = {**session, "format": fmt}
        self._write_meta()
        new_file = not self.path.is_file() or self.path.stat().st_size == 0
        self._fh = self.path.open("a", newline="", buffering=1)
        self._csv = csv.DictWriter(self._fh, CSV_FIELDS) if fmt == "csv" else None
        if self._csv and new_file:
            self._csv.writeheader()

    def _write_meta(self) -> None:
        from patchlab.artifacts import write_text

        data = {"artifact": "recording-meta", "written_by": self.written_by, **self.meta}
        write_text(self.folder / "meta.json", json.dumps(data, indent=2, default=str))

    def write(self, result) -> None:
        row = result.as_dict() if hasattr(result, "as_dict") else dict(result)
        self.records.append(row)
        if self._csv:
            self._csv.writerow(_flatten(row))
        else:
            self._fh.write(json.dumps(row, separators=(",", ":")) + "\n")

    def close(self, baseline: str | Path | None = None, edges: tuple[float, ...] = SIZE_EDGES) -> dict:
        if not self._fh.closed:
            self._fh.close()
        self.meta["frames"] = len(self.records)
        if self.meta.get("sessions"):
            self.meta["sessions"][-1]["frames"] = len(self.records) - sum(s.get("frames", 0)
                                                                          for s in self.meta["sessions"][:-1])
        self._write_meta()
        self.summary = write_summary(self.folder, baseline=baseline, edges=edges, records=self.records,
                                     written_by=self.written_by)
        return self.summary

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        if self.summary is None:
            self.close()


def load_recording(folder: str | Path) -> tuple[dict, list[dict]]:
    """(meta, per-frame records) of a recording folder (or of the single run folder inside it)."""
    folder = resolve_recording(folder)
    meta_path = folder / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    meta = {k: v for k, v in meta.items() if k not in ("artifact", "written_by")}
    jsonl, csv_path = folder / "frames.jsonl", folder / "frames.csv"
    if jsonl.is_file():
        from patchlab.artifacts import read_jsonl

        return meta, read_jsonl(jsonl)  # a torn last line after a crash is tolerated
    if csv_path.is_file():
        labels = None
        try:
            from patchlab.data import imagenet_classes

            labels = list(imagenet_classes().names)
        except Exception:  # noqa: BLE001 - labels are cosmetic here
            pass
        with csv_path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        out = []
        for n, row in enumerate(rows):
            try:
                out.append(_unflatten(row, labels))
            except (KeyError, ValueError, AttributeError):
                if n < len(rows) - 1:  # only a torn last row is tolerated
                    raise PatchlabError(f"{csv_path}:{n + 2}: not a frame row") from None
        return meta, out
    raise PatchlabError(f"{folder}: no frames.jsonl or frames.csv (not a patchlab camera recording)")


def write_summary(folder: str | Path, baseline: str | Path | None = None, edges: tuple[float, ...] = SIZE_EDGES,
                  records: list[dict] | None = None, report: bool = False, written_by: str | None = None) -> dict:
    """Summarise a recording (and optionally a baseline recording); write summary.json and summary.png, or with
    `report` report.json and report.png (what `patchlab camera-report` writes, so the recording's own summary
    stays as it was). Both are written atomically; the caller checks the paths (patchlab.artifacts)."""
    from patchlab.artifacts import write_json

    folder = resolve_recording(folder)
    meta, loaded = load_recording(folder)
    records = loaded if records is None else records
    summary = {"recording": str(folder), "meta": meta, "attack": summarize(records, edges)}
    if baseline is not None:
        base_folder = resolve_recording(baseline)
        base_meta, base_records = load_recording(base_folder)
        summary["baseline"] = summarize(base_records, edges)
        summary["baseline"]["recording"] = str(base_folder)
        a, b = summary["attack"].get("target"), summary["baseline"].get("target")
        if a and b and summary["attack"].get("target_index") != summary["baseline"].get("target_index"):
            summary["baseline_note"] = "baseline recording used a different target class"
    name, kind = ("report", "recording-report") if report else ("summary", "recording-summary")
    writer = written_by or ("patchlab camera-report" if report else WRITER)
    write_json(folder / f"{name}.json", summary, kind, writer)
    (folder / f"{name}.png").unlink(missing_ok=True)  # a stale plot must not sit beside the new numbers
    if records and summary["attack"].get("target"):  # without a target class there is nothing to plot
        plot_summary(summary, folder / f"{name}.png", records, kind=f"{kind}-plot" if report else "recording-plot",
                     written_by=writer)
    return summary


def plot_summary(summary: dict, path: str | Path, records: list[dict] | None = None, kind: str = "recording-plot",
                 written_by: str = WRITER) -> Path:
    """Target share vs apparent patch size (Wilson 95% bars) for attack and baseline, and target prob over time."""
    from matplotlib.figure import Figure  # no pyplot: no global state, safe from worker threads

    fig = Figure(figsize=(11, 4))
    ax1, ax2 = fig.subplots(1, 2)
    label = summary["attack"].get("target_label") or "target"
    parts = {key: summary.get(key) for key in ("attack", "baseline") if summary.get(key)}
    edges = sorted({tuple(b["size_px"]) for part in parts.values() for b in part.get("by_size") or []})
    slot = {e: i for i, e in enumerate(edges)}  # one shared x axis for attack and baseline bins
    for key, colour, offset in (("attack", "tab:red", -0.1), ("baseline", "tab:blue", 0.1)):
        part = parts.get(key)
        if not part or not part.get("target"):
            continue
        t = part["target"]
        if not part.get("by_size"):
            yerr = np.clip([[t["share"] - t["ci95"][0]], [t["ci95"][1] - t["share"]]], 0, None)
            ax1.errorbar([offset], [t["share"]], yerr=yerr,
                         fmt="o", color=colour, capsize=4, label=f"{key}, no patch size (n={t['n']})")
            continue
        bins = part["by_size"]
        xs = np.array([slot[tuple(b["size_px"])] for b in bins]) + offset
        shares = np.array([b["share"] for b in bins])
        err = np.array([[b["share"] - b["ci95"][0] for b in bins], [b["ci95"][1] - b["share"] for b in bins]])
        err = np.clip(err, 0, None)  # k = n puts the upper bound a rounding error below the share
        ax1.errorbar(xs, shares, yerr=err, fmt="o-", color=colour, capsize=4,
                     label=f"{key} (n={t['n']}, overall {t['share']:.0%})")
    if edges:
        ax1.set_xticks(np.arange(len(edges)), [f"{lo}-{hi}" for lo, hi in edges], fontsize=8)
    ax1.set_ylim(-0.02, 1.02)
    ax1.set_xlabel("apparent patch size (px)")
    ax1.set_ylabel(f"share of frames with top-1 = {label}")
    ax1.set_title("Target share, Wilson 95% interval")
    ax1.grid(alpha=0.3)
    if ax1.get_legend_handles_labels()[0]:
        ax1.legend(fontsize=8, loc="best")
    if records:
        t = [r["time_s"] for r in records if r.get("target_prob") is not None]
        p = [r["target_prob"] for r in records if r.get("target_prob") is not None]
        ax2.plot(t, p, lw=0.8, color="tab:red")
        sizes = [(r["time_s"], r["patch_size_px"]) for r in records if r.get("patch_size_px")]
        if sizes:
            ax3 = ax2.twinx()
            ax3.plot(*zip(*sizes), lw=0.6, color="tab:gray", alpha=0.7)
            ax3.set_ylabel("patch size (px)", color="tab:gray")
    ax2.set_xlabel("time (s)")
    ax2.set_ylabel(f"P({label})")
    ax2.set_ylim(-0.02, 1.02)
    ax2.set_title("Target probability over the recording")
    fig.tight_layout()
    from patchlab.artifacts import save_figure

    return save_figure(fig, path, kind, written_by, dpi=110)
