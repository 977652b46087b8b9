"""`patchlab eot preview` and `patchlab eot show`."""

from __future__ import annotations

from pathlib import Path

import typer

from patchlab.cli._common import add_group


def show_cmd(preset: str = typer.Argument("print", help="Preset name or .yaml/.json config"),
             fmt: str = typer.Option("yaml", "--format", help="yaml or json")) -> None:
    """Print a preset's settings (save them to a file to customise)."""
    from patchlab.eot import load_config
    from patchlab.errors import PatchlabError

    cfg = load_config(preset)
    if fmt not in ("yaml", "json"):
        raise PatchlabError(f"--format must be yaml or json, got {fmt!r}")
    typer.echo(cfg.to_yaml() if fmt == "yaml" else cfg.to_json())


def preview_cmd(
    patch: Path = typer.Option(None, "--patch", help="Patch PNG (default: a random-noise square)"),
    images: Path = typer.Option(None, "--images", help="Scene folder (default: the built-in sample photos)"),
    preset: str = typer.Option("print", "--preset", help="Preset name or .yaml/.json config"),
    colour: Path = typer.Option(None, "--colour", help="Fitted colour model JSON"),
    area: float = typer.Option(0.10, "--area", help="Nominal patch area fraction"),
    n: int = typer.Option(16, "--n", min=1, max=256, help="Number of draws"),
    size: int = typer.Option(224, "--size", min=32, max=1024, help="Frame size in pixels"),
    seed: int = typer.Option(0, "--seed"),
    out: Path = typer.Option(Path("eot_preview.png"), "--out", "-o"),
    force: bool = typer.Option(False, "--force", help="Replace this command's own earlier preview"),
) -> None:
    """Write a grid of sampled transformations."""
    import torch

    from patchlab.artifacts import check_output

    from patchlab.data import load_sample, sample_names, save_image
    from patchlab.eot import ColourModel, preview_grid
    from patchlab.errors import check_unit_interval
    from patchlab.models import preprocess
    from patchlab.patch.data import list_scene_images, load_scenes
    from patchlab.patch.io import load_patch

    check_unit_interval("--area", area, allow_zero=False)
    check_output(out, "eot-preview", "patchlab eot preview", force)
    if patch is not None:
        rgba, _ = load_patch(patch)
    else:
        rgba = torch.cat([torch.rand((3, 128, 128), generator=torch.Generator().manual_seed(seed)),
                          torch.ones(1, 128, 128)], 0)
    if images is not None:
        scenes = load_scenes(list_scene_images(images)[:n], size).float() / 255
    else:
        scenes = torch.stack([preprocess(load_sample(s).image, size) for s in sample_names()])
    grid = preview_grid(rgba, scenes, preset, area=area, n=n, seed=seed,
                        colour=ColourModel.from_json(colour) if colour else None)
    save_image(grid, out, kind="eot-preview", written_by="patchlab eot preview")
    typer.echo(f"wrote {out} ({n} draws of preset {preset})")


def register(app: typer.Typer) -> None:
    add_group(app, "eot", "EOT: physical transformation presets and previews.", show=show_cmd, preview=preview_cmd)
