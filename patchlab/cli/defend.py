"""`patchlab defend train|certify|evaluate ...`: defenses, certificates and adaptive evaluations."""

from __future__ import annotations

from pathlib import Path

import typer

from patchlab.cli._common import ArchOpt, DeviceOpt, JsonOpt, ModelOpt, print_json, rich_progress

PATCH_DEFENSES_DEFAULT = ("none", "patchcleanser", "lgs", "jpeg", "median", "bitdepth", "resize_pad")
ImagesOpt = typer.Option(..., "--images", help="Labelled image folder (<wnid>_<name>.jpg); the shared split is used")


def _model(model: str, arch: str | None, device: str):
    from patchlab.models import load_model

    return load_model(model, device, arch=arch)


def _echo_rates(result: dict, keys: tuple[str, ...]) -> None:
    parts = []
    for key in keys:
        if result.get(key) is not None:
            ci = result.get(key.replace("_accuracy", "_ci95")) or result.get("ci95")
            parts.append(f"{key.replace('_', ' ')} {100 * result[key]:.1f}%"
                         + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else ""))
    typer.echo("; ".join(parts))


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Defenses: certify (PatchCleanser, randomized smoothing), train robust models, "
                        "evaluate defenses against patches and adaptive attacks.", no_args_is_help=True)
    app.add_typer(group, name="defend")
    certify = typer.Typer(help="Certified defenses.", no_args_is_help=True)
    group.add_typer(certify, name="certify")

    @certify.command("patchcleanser")
    def certify_patchcleanser(
        images: Path = ImagesOpt,
        model: str = ModelOpt,
        arch: str = ArchOpt,
        part: str = typer.Option("heldout", "--part", help="heldout or train side of the shared split"),
        limit: int = typer.Option(None, "--limit", min=1, help="Use the first N images of that side"),
        patch_area: float = typer.Option(0.02, "--patch-area", help="Largest patch to certify against, as a "
                                         "fraction of the image (square)"),
        masks: int = typer.Option(6, "--masks", min=1, help="Masks per side (k; k*k masks, k*k*(k*k+1)/2 passes)"),
        fill: float = typer.Option(0.5, "--fill", help="Grey value the masks are filled with"),
        batch: int = typer.Option(64, "--batch", min=1, help="Masked passes per batch"),
        baseline: int = typer.Option(0, "--baseline", min=0, help="Also time the plain all-pairs computation on N "
                                     "images, for the speed-up"),
        checkpoint: Path = typer.Option(None, "--checkpoint", help="Save each verdict here; a rerun continues"),
        plot: Path = typer.Option(None, "--plot", help="Write a bar chart PNG here"),
        device: str = DeviceOpt,
        json_out: bool = JsonOpt,
    ) -> None:
        """PatchCleanser (double masking) certified and clean accuracy on held-out images."""
        from patchlab.defenses.certify import certify_images
        from patchlab.defenses.plots import certify_figure
        from patchlab.errors import PatchlabError, check_unit_interval

        check_unit_interval("--patch-area", patch_area, allow_zero=False)
        if part not in ("heldout", "train"):
            raise PatchlabError(f"--part must be heldout or train, got {part!r}")
        net = _model(model, arch, device)
        with rich_progress("certify", enabled=not json_out) as cb:
            result = certify_images(net, images, part, limit, patch_area, masks, fill, batch, baseline,
                                    checkpoint=checkpoint, progress=cb)
        if plot:
            certify_figure(result).savefig(plot)
            result["plot"] = str(plot)
        if json_out:
            print_json(result)
            return
        typer.echo(f"{result['model']}: {result['n']} {part} images, {result['masks']} masks of "
                   f"{result['mask_size']} px against a {result['patch_side']} px patch")
        _echo_rates(result, ("certified_accuracy", "clean_accuracy", "undefended_accuracy"))
        line = f"{result['seconds_per_image']:.2f} s/image, {result['passes_per_image']:.0f} passes/image"
        if "speedup" in result:
            line += f"; plain all-pairs {result['baseline']['seconds_per_image']:.2f} s/image ({result['speedup']:.1f}x)"
        typer.echo(line)

    evaluate = typer.Typer(help="Defenses against patches and adaptive attacks.", no_args_is_help=True)
    group.add_typer(evaluate, name="evaluate")

    @evaluate.command("patch")
    def evaluate_patch_cmd(
        patch: Path = typer.Argument(..., help="Patch PNG with its JSON sidecar (e.g. printables/...)"),
        images: Path = ImagesOpt,
        model: str = ModelOpt,
        arch: str = ArchOpt,
        areas: str = typer.Option("0.02,0.05,0.1", "--areas", help="Patch areas (fractions of the image)"),
        defenses: str = typer.Option(",".join(PATCH_DEFENSES_DEFAULT), "--defenses", help="Comma-separated"),
        limit: int = typer.Option(80, "--limit", min=1, help="First N held-out images"),
        preset: str = typer.Option("print", "--preset", help="EOT preset for the patch"),
        masks: int = typer.Option(6, "--masks", min=1, help="PatchCleanser masks per side"),
        seed: int = typer.Option(1234, "--seed"),
        checkpoint: Path = typer.Option(None, "--checkpoint", help="Save progress here; a rerun continues"),
        plot: Path = typer.Option(None, "--plot", help="Write the bar chart PNG here"),
        device: str = DeviceOpt,
        json_out: bool = JsonOpt,
    ) -> None:
        """A patch against each defense: attack success, accuracy and PatchCleanser's certified fraction."""
        from patchlab.cli.patch import _areas
        from patchlab.defenses.patch_eval import evaluate_defenses
        from patchlab.defenses.plots import patch_defense_figure

        names = [d.strip() for d in defenses.split(",") if d.strip()]
        net = _model(model, arch, device)
        with rich_progress("defenses", enabled=not json_out) as cb:
            result = evaluate_defenses(patch, images, net, _areas(areas), names, limit, preset, seed, masks,
                                       checkpoint=checkpoint, progress=cb)
        if plot:
            patch_defense_figure(result).savefig(plot)
            result["plot"] = str(plot)
        if json_out:
            print_json(result)
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"{patch.name} vs defenses ({result['n']} held-out images, {preset})")
        for col in ("area", "defense", "success", "accuracy", "clean acc", "certified"):
            table.add_column(col)
        for r in result["rows"]:
            cert = f"{100 * r['certified_fraction']:.1f}%" if "certified_fraction" in r else ""
            table.add_row(f"{100 * r['area']:g}%", r["defense"], f"{100 * r['success_rate']:.1f}%",
                          f"{100 * r['accuracy']:.1f}%", f"{100 * r['clean_accuracy']:.1f}%", cert)
        Console().print(table)
