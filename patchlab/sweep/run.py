"""`run_sweep`: score every cell of a grid that is not finished yet, then merge all cells into one table and heatmap.

    out/
      grid.sweep.json     the grid, the merged results and where they ran   (kind sweep-results)
      cells/<id>.cell.json one per cell, written by the cell itself           (kind sweep-cell)
      table.sweep.csv, table.sweep.md     (kinds sweep-csv, sweep-markdown)
      heatmap.sweep.png                   (kind sweep-heatmap)

A finished cell is never run again: rerunning the same grid into the same folder (after a kill, or with more seeds)
runs only the missing cells. A folder holding a sweep of other settings is refused unless `force`.
"""

from __future__ import annotations

import time
from pathlib import Path

from patchlab.artifacts import KINDS, Kind, check_outputs, read_json, register_kind, write_json
from patchlab.errors import PatchlabError
from patchlab.progress import ProgressFn
from patchlab.sweep.cell import WRITER, cell_path, read_cell
from patchlab.sweep.grid import SweepGrid

for _k in (Kind("sweep-results", ".sweep.json", "sweep results (grid and every cell)", WRITER),
           Kind("sweep-cell", ".cell.json", "sweep cell result", WRITER),
           Kind("sweep-csv", ".sweep.csv", "sweep table (CSV)", WRITER, "none"),
           Kind("sweep-markdown", ".sweep.md", "sweep table (markdown)", WRITER, "none"),
           Kind("sweep-heatmap", ".sweep.png", "sweep heatmap", WRITER, "png")):
    register_kind(_k)

RESULTS_NAME = "grid"    # out/grid.sweep.json
TABLE_NAME = "table"     # out/table.sweep.csv, out/table.sweep.md
HEATMAP_NAME = "heatmap"


def output_paths(out: str | Path) -> dict[Path, str]:
    out = Path(out)
    return {out / f"{RESULTS_NAME}{KINDS['sweep-results'].suffix}": "sweep-results",
            out / f"{TABLE_NAME}{KINDS['sweep-csv'].suffix}": "sweep-csv",
            out / f"{TABLE_NAME}{KINDS['sweep-markdown'].suffix}": "sweep-markdown",
            out / f"{HEATMAP_NAME}{KINDS['sweep-heatmap'].suffix}": "sweep-heatmap"}


def _check_folder(grid: SweepGrid, out: Path, cells: list[dict], force: bool) -> None:
    """The folder is free, or holds this sweep (same settings: continue), or `force` lets it start over."""
    paths = output_paths(out)
    results = next(iter(paths))
    previous = read_json(results) if results.is_file() else None
    ours = isinstance(previous, dict) and previous.get("artifact") == "sweep-results" \
        and previous.get("written_by") == WRITER
    if ours and previous.get("settings_key") != grid.settings_key() and not force:
        raise PatchlabError(f"{out} holds a sweep with other settings (patch, images, target, limit, draws, ...); "
                            "force=True starts over there, or choose another out=")
    if ours:
        # our own table and figure are rewritten from the cells; anything else there is still refused
        check_outputs({p: k for p, k in paths.items() if k != "sweep-csv" and k != "sweep-markdown"}, WRITER,
                      force=True)
    else:
        check_outputs(paths, WRITER, force=force)
    stale = [cell_path(out, c) for c in cells if cell_path(out, c).exists()
             and read_cell(cell_path(out, c), c["settings_key"]) is None]
    if stale:
        check_outputs({p: "sweep-cell" for p in stale}, WRITER, force=True)  # only our own cells are replaced
        if not force:
            raise PatchlabError(f"{stale[0]} holds a cell from other settings; force=True recomputes it")


def run_sweep(grid: SweepGrid | dict | str | Path, out: str | Path, executor: str = "auto",
              address: str | None = None, workers: int | None = None, force: bool = False,
              progress: ProgressFn | None = None) -> dict:
    """Run the grid's unfinished cells (Ray tasks, or a local process pool without Ray) and merge every cell into
    `out`. Returns the merged results (also written to out/grid.sweep.json)."""
    from patchlab.sweep.executors import choose_executor, run_pool, run_ray
    from patchlab.sweep.report import merge, write_reports

    if isinstance(grid, (str, Path)):
        grid = SweepGrid.load(grid)
    elif isinstance(grid, dict):
        grid = SweepGrid.from_dict(grid)
    start = time.perf_counter()
    grid.check()
    kind = choose_executor(executor, address)
    if workers is not None and workers < 1:
        raise PatchlabError(f"workers must be at least 1, got {workers}")
    out = Path(out)
    cells = grid.cells()
    _check_folder(grid, out, cells, force)
    write_json(next(iter(output_paths(out))), {"status": "running", "settings_key": grid.settings_key(),
                                               "grid": grid.to_dict()}, kind="sweep-results", written_by=WRITER)
    finished = {c["id"]: r for c in cells if (r := read_cell(cell_path(out, c), c["settings_key"])) is not None}
    todo = [c for c in cells if c["id"] not in finished]
    reused = len(finished)
    if progress:
        progress(reused, len(cells), {"executor": kind, "reused": reused})
    if todo:
        spec = grid.to_dict()
        stream = run_ray(todo, spec, str(out), address, workers) if kind == "ray" else \
            run_pool(todo, spec, str(out), workers)
        for result in stream:
            finished[result["id"]] = result
            if progress:
                progress(len(finished), len(cells), {"cell": result["id"], "success": result["success_rate"]})
    merged = merge(grid, [finished[c["id"]] for c in cells])
    merged.update({"status": "complete", "executor": kind, "address": address, "cells_run": len(todo),
                   "cells_reused": reused,
                   "seconds": time.perf_counter() - start})
    write_reports(merged, out, output_paths(out))
    return merged
