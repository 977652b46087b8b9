"""`patchlab sweep grid.yaml`: an evaluation sweep on Ray (or a local process pool)."""

from __future__ import annotations

from pathlib import Path

import typer

from patchlab.cli._common import ForceOpt, JsonOpt, print_json, rich_progress


def sweep_cmd(
    grid: Path = typer.Argument(..., help="Grid file (.yaml/.json): patch, images, models, areas, presets, defenses, "
                                "seeds, limit, draws, device, cpus_per_cell, gpus_per_cell, plugins"),
    out: Path = typer.Option(None, "--out", "-o", help="Output folder (default: <grid>.sweep/ beside the grid file); "
                             "rerunning into it runs only the unfinished cells"),
    executor: str = typer.Option("auto", "--executor", help="auto (Ray when installed), ray or pool"),
    address: str = typer.Option(None, "--address", help="An existing Ray cluster (auto, host:6379, ray://host:10001); "
                                "default: start a local Ray"),
    workers: int = typer.Option(None, "--workers", min=1, help="Pool processes, or CPUs of the local Ray "
                                "(default: all cores)"),
    force: bool = ForceOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Score one patch over models x areas x presets x defenses x seeds: one JSON per cell, a merged table
    (CSV, markdown, JSON) and a heatmap."""
    from patchlab.sweep import SweepGrid, run_sweep

    out = out or grid.with_name(grid.stem + ".sweep")
    settings = SweepGrid.load(grid)
    settings.check()  # bad grids fail before the progress bar starts
    with rich_progress("sweep", enabled=not json_out) as cb:
        merged = run_sweep(settings, out, executor=executor, address=address, workers=workers, force=force, progress=cb)
    if json_out:
        print_json(merged)
        return
    from patchlab.sweep.report import to_markdown

    typer.echo(to_markdown(merged))
    typer.echo(f"{len(merged['cells'])} cells ({merged['cells_run']} run on {merged['executor']}, "
               f"{merged['cells_reused']} already finished) in {merged['seconds']:.1f} s -> {out}/")


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep_cmd)
