"""`patchlab perturb`: a printable, EOT-robust L-inf perturbation of one photo at full resolution."""

from __future__ import annotations

from pathlib import Path

import typer

from patchlab.cli._common import ArchOpt, DeviceOpt, ForceOpt, JsonOpt, ModelOpt, print_json, rich_progress


def perturb_cmd(
    image: Path = typer.Argument(..., help="Photo to perturb (kept at full resolution)"),
    model: str = ModelOpt, arch: str = ArchOpt,
    eps: str = typer.Option("8/255", "--eps", help="L-inf bound, e.g. 8/255 or 0.03"),
    target: str = typer.Option(None, "--target", "-t", help="Target class (name or index); default untargeted"),
    preset: str = typer.Option("print", "--preset", help="EOT preset or .yaml/.json config"),
    colour: Path = typer.Option(None, "--colour", help="Fitted colour model JSON"),
    steps: int = typer.Option(100, "--steps", min=1),
    batch: int = typer.Option(8, "--batch", min=1, help="EOT views per step"),
    fill: float = typer.Option(0.6, "--fill", help="Share of the camera frame the printed photo fills"),
    seed: int = typer.Option(0, "--seed"),
    eval_draws: int = typer.Option(64, "--eval-draws", min=1, help="Fresh EOT views for the success rate"),
    out: Path = typer.Option(Path("adv.png"), "--out", "-o", help="Perturbed photo (PNG); its settings and "
                             "results go to <out>.perturb.json"),
    force: bool = ForceOpt,
    device: str = DeviceOpt, json_out: bool = JsonOpt,
) -> None:
    """L-inf-bounded printable perturbation that stays adversarial under the EOT preset (Athalye 2018, 2D)."""
    from patchlab.artifacts import check_outputs, default_path, write_json
    from patchlab.data import imagenet_classes, read_image, save_image
    from patchlab.eot import ColourModel
    from patchlab.errors import PatchlabError, check_unit_interval, parse_fraction
    from patchlab.models import load_model
    from patchlab.physical.perturb import printable_perturbation

    eps_value = parse_fraction(eps, "--eps")
    if eps_value == 0:
        raise PatchlabError("--eps must be positive")
    check_unit_interval("--fill", fill, allow_zero=False)
    if out.suffix.lower() != ".png":
        raise PatchlabError(f"{out}: the perturbed photo is written as lossless .png")
    sidecar = default_path(out, "perturbation-sidecar")
    check_outputs({out: "perturbation", sidecar: "perturbation-sidecar"}, "patchlab perturb", force)
    net = load_model(model, device, arch=arch)
    classes = imagenet_classes()
    target_idx = classes.lookup(int(target) if target and target.isdigit() else target) if target else None
    img = read_image(image)
    with rich_progress("perturb", enabled=not json_out) as cb:
        res = printable_perturbation(img, net, eps_value, target_idx, preset, steps=steps, batch=batch,
                                     fill=fill, seed=seed, eval_draws=eval_draws, colour=ColourModel.from_json(colour) if colour else None,
                                     progress=cb)
    save_image(res.adversarial, out, kind="perturbation", written_by="patchlab perturb")
    meta = {**res.meta, "image": str(image), "out": str(out), "target_name": classes.names[target_idx]
            if target_idx is not None else None, "clean_label_name": classes.names[res.meta["clean_label"]]}
    write_json(sidecar, meta, "perturbation-sidecar", "patchlab perturb")
    if json_out:
        print_json({k: v for k, v in meta.items() if k != "eot"})
    else:
        goal = f"-> {meta['target_name']}" if target_idx is not None else f"away from {meta['clean_label_name']}"
        typer.echo(f"wrote {out} ({img.shape[2]}x{img.shape[1]}, L-inf {meta['linf'] * 255:.0f}/255) {goal}: "
                   f"success {meta['success_rate']:.0%} of {meta['n']} fresh EOT views "
                   f"(original photo {meta['original_success_rate']:.0%})")


def register(app: typer.Typer) -> None:
    app.command("perturb")(perturb_cmd)
