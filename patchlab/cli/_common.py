"""Shared CLI helpers: options, JSON output, a rich progress callback."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Iterator

import typer

DeviceOpt = typer.Option("auto", "--device", help="auto, cpu or cuda")
ModelOpt = typer.Option("efficientnet_lite0", "--model", "-m", help="Zoo name or checkpoint path (see `patchlab models`)")
ArchOpt = typer.Option(None, "--arch", help="Architecture of a checkpoint given to --model")
JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON")
ForceOpt = typer.Option(False, "--force", help="Replace this command's own earlier outputs (other files are never "
                        "overwritten; see docs/outputs.md)")


def add_group(app: typer.Typer, name: str, help: str, **commands) -> typer.Typer:
    """A command group `patchlab <name> ...` with its commands, e.g. add_group(app, "eot", "...", show=show_cmd)."""
    group = typer.Typer(help=help, no_args_is_help=True)
    app.add_typer(group, name=name)
    for command, fn in commands.items():
        group.command(command)(fn)
    return group


def print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=float) + "\n")


@contextmanager
def rich_progress(description: str, enabled: bool = True) -> Iterator:
    """Yield a `(step, total, metrics)` callback that drives a rich progress bar on stderr."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  TextColumn("{task.fields[info]}"), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=None, info="")

        def callback(step: int, total: int, metrics: dict | None = None) -> None:
            info = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in (metrics or {}).items())
            bar.update(task, completed=step, total=total, info=info)

        yield callback
