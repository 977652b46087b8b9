"""`patchlab models`, `classify`, `accuracy`."""

from __future__ import annotations

from pathlib import Path

import typer

from patchlab.cli._common import ArchOpt, DeviceOpt, JsonOpt, ModelOpt, print_json, rich_progress


def models_cmd(json_out: bool = JsonOpt) -> None:
    """List zoo models and their input sizes."""
    from patchlab.models import list_models

    rows = [{"name": s.name, "input_size": s.input_size, "source": s.source} for s in list_models()]
    if json_out:
        print_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("model", "input", "weights")
    for r in rows:
        table.add_row(r["name"], str(r["input_size"]), r["source"])
    Console().print(table)


def classify_cmd(images: list[Path] = typer.Argument(..., help="Image files"), model: str = ModelOpt,
                 arch: str = ArchOpt, topk: int = typer.Option(5, "--topk", min=1, max=1000),
                 device: str = DeviceOpt, json_out: bool = JsonOpt) -> None:
    """Classify images with a zoo model."""
    from patchlab.models import load_model
    from patchlab.models.classify import classify_files

    net = load_model(model, device, arch=arch)
    results = classify_files(net, list(images), k=topk)
    if json_out:
        print_json([{"image": str(p), "model": net.name, "topk": r.as_dict()} for p, r in zip(images, results)])
        return
    for p, r in zip(images, results):
        typer.echo(f"{p}")
        for row in r.as_dict():
            typer.echo(f"  {row['prob']:6.1%}  {row['label']} ({row['index']})")


def accuracy_cmd(folder: Path = typer.Argument(..., help="Labelled folder: <wnid>_<name>.jpg or class/ subfolders"),
                 model: str = ModelOpt, arch: str = ArchOpt, limit: int = typer.Option(None, "--limit", min=1),
                 batch: int = typer.Option(16, "--batch", min=1), device: str = DeviceOpt,
                 json_out: bool = JsonOpt) -> None:
    """Top-1 and top-5 accuracy on a labelled image folder."""
    from patchlab.models import load_model
    from patchlab.models.classify import accuracy

    net = load_model(model, device, arch=arch)
    with rich_progress(f"accuracy {net.name}", enabled=not json_out) as cb:
        result = accuracy(net, folder, limit=limit, batch_size=batch, progress=cb)
    if json_out:
        print_json(result)
    else:
        typer.echo(f"{net.name}: top-1 {result['top1']:.1%}  top-5 {result['top5']:.1%}  "
                   f"on {result['n']} images in {result['seconds']:.1f}s")


def register(app: typer.Typer) -> None:
    app.command("models")(models_cmd)
    app.command("classify")(classify_cmd)
    app.command("accuracy")(accuracy_cmd)
