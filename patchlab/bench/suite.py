"""`patchlab bench`: every side-by-side benchmark the project defines, one table of measured ratios against their
targets, JSON, and the markdown for docs/benchmarks.md.

Each topic registers its benchmark where the benchmark lives (a module listed in PROVIDERS, imported when present):

    @benchmark("models", "EfficientNet-Lite0 vs the reference implementation", needs=("efficientnet_lite_pytorch",))
    def run(quick: bool, images: Path | None) -> Measured:
        ...                         # time it (patchlab.bench.timing), then
        return Measured(targets=[Target(...), ...], table="| ... |", details={...})

The tests in tests/benchmarks/ call the same registered functions and assert the same targets, so there is one copy
of every benchmark. A benchmark whose competitor (`needs`) or data is missing is reported as not run, and counts as
a miss: `patchlab bench` then exits non-zero, like when a target is missed.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import platform
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from patchlab.bench.targets import Target
from patchlab.progress import ProgressFn
from patchlab.registry import Registry

# modules that register benchmarks; topic packages on other branches add theirs here (absent ones are skipped)
PROVIDERS = ("patchlab.bench.models", "patchlab.bench.attacks", "patchlab.bench.patch", "patchlab.bench.camera",
             "patchlab.bench.distributed", "patchlab.defenses.bench", "patchlab.privacy.bench",
             "patchlab.bench.from_tests")  # last: test files no module above registers


@dataclass
class Measured:
    """What a benchmark run gives: its targets (checked by the caller), a markdown table of the raw numbers and the
    details as JSON."""

    targets: list[Target]
    table: str = ""
    details: dict = field(default_factory=dict)


@dataclass
class Benchmark:
    name: str
    title: str
    run: Callable[[bool, Path | None], Measured]   # run(quick, images)
    needs: tuple[str, ...] = ()                     # importable modules (the competitors, test harnesses)
    data: bool = True                               # needs the shared ImageNet sample
    quick: bool = True                              # part of `patchlab bench --quick`

    def missing(self) -> list[str]:
        return [m for m in self.needs if importlib.util.find_spec(m) is None]


BENCHMARKS: Registry[Benchmark] = Registry("benchmark")


def benchmark(name: str, title: str, needs: tuple[str, ...] = (), data: bool = True, quick: bool = True):
    """Decorator: register `fn(quick, images) -> Measured` as a benchmark."""
    def wrap(fn):
        if name in BENCHMARKS:  # the module ran twice (as __main__ and imported): keep the first
            return fn
        BENCHMARKS.register(name, Benchmark(name, title, fn, needs, data, quick), title=title)
        return fn
    return wrap


def load_benchmarks() -> Registry[Benchmark]:
    for module in PROVIDERS:
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # its package is not installed
            found = False
        if found:
            importlib.import_module(module)
    return BENCHMARKS


def run_benchmarks(names: list[str] | None = None, quick: bool = False, images: str | Path | None = None,
                   progress: ProgressFn | None = None) -> dict:
    """Run the named benchmarks (default: all; with `quick`, those marked quick, at their quick settings). Returns
    {"benchmarks": [...], "targets": [...], "met", "missed", "not_run", "seconds", ...}; never raises for a missed
    target or a benchmark that failed (its error is recorded)."""
    from patchlab.data import shared_data_dir

    registry = load_benchmarks()
    chosen = [registry.resolve(n) for n in names] if names else [n for n in registry
                                                                   if not quick or registry.get(n).quick]
    if images is None:
        root = shared_data_dir()
        images = root / "imagenet-sample" if root is not None else None
    images = Path(images) if images is not None else None
    start = time.perf_counter()
    rows, targets = [], []
    for i, name in enumerate(chosen):
        bench = registry.get(name)
        row: dict = {"name": name, "title": bench.title, "status": "ran", "targets": [], "table": "", "details": {}}
        t0 = time.perf_counter()
        missing = bench.missing()
        if missing:
            row.update(status="not run", reason=f"not installed: {', '.join(missing)}")
        elif bench.data and (images is None or not images.is_dir()):
            row.update(status="not run", reason="the shared ImageNet sample is absent (PATCHLAB_SHARED_DATA)")
        else:
            if progress:
                progress(i, len(chosen), {"benchmark": name})
            try:
                measured = bench.run(quick, images)
                row.update(table=measured.table, details=measured.details,
                           targets=[_target_dict(name, t) for t in measured.targets])
            except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others' results
                first = str(exc).splitlines()[0] if str(exc) else ""
                row.update(status="failed", reason=f"{type(exc).__name__}: {first}",
                           traceback=traceback.format_exc(limit=8))
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        targets += row["targets"]
        if progress:
            progress(i + 1, len(chosen), {"benchmark": name, "status": row["status"]})
    met = sum(t["met"] for t in targets)
    not_run = [r["name"] for r in rows if r["status"] != "ran"]
    return {"quick": quick, "benchmarks": rows, "targets": targets, "met": met, "missed": len(targets) - met,
            "not_run": not_run, "ok": met == len(targets) and not not_run, "seconds": time.perf_counter() - start,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": _machine()}


def _target_dict(bench: str, t: Target) -> dict:
    return {"benchmark": bench, "name": t.name, "value": t.value, "op": t.op,
            "bound": list(t.bound) if isinstance(t.bound, tuple) else t.bound, "unit": t.unit,
            "required": t.describe_bound(), "met": t.met, "note": t.note}


def _machine() -> dict:
    import torch

    return {"platform": platform.platform(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "load_average": os.getloadavg()[0],
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def to_markdown(result: dict, details: bool = True) -> str:
    """The section for docs/benchmarks.md: one table of every target, then each benchmark's own numbers."""
    m = result["machine"]
    lines = [f"Measured {result['date']} with `patchlab bench{' --quick' if result['quick'] else ''}` on "
             f"{m['machine']}, {m['cpus']} CPUs ({m['threads']} torch threads), torch {m['torch']}"
             f"{', ' + m['cuda'] if m['cuda'] else ''}, OMP_WAIT_POLICY {m.get('omp_wait_policy', 'default')}, load "
             f"average {m['load_average']:.1f}; "
             f"{result['met']} of {len(result['targets'])} targets met"
             + (f", not run: {', '.join(result['not_run'])}" if result["not_run"] else "") + ".", "",
             "| benchmark | target | measured | required | status | note |", "|---|---|---|---|---|---|"]
    for r in result["benchmarks"]:
        if r["status"] != "ran":
            lines.append(f"| {r['name']} | {r['title']} | n/a | | **{r['status'].upper()}** | {r.get('reason', '')} |")
        for t in r["targets"]:
            value = "n/a" if t["value"] is None else f"{t['value']:.3g}{' ' + t['unit'] if t['unit'] else ''}"
            lines.append(f"| {r['name']} | {t['name']} | {value} | {t['required']} | "
                         f"{'met' if t['met'] else '**MISSED**'} | {t['note']} |")
    if details:
        for r in result["benchmarks"]:
            if r["table"]:
                lines += ["", f"### {r['title']} ({r['seconds']:.0f} s)", "", r["table"]]
    return "\n".join(lines) + "\n"
