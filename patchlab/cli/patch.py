"""`patchlab patch train`, `patchlab patch eval` and `patchlab patch breakdown`."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from patchlab.cli._common import DeviceOpt, ForceOpt, JsonOpt, add_group, print_json, rich_progress


def _areas(text: str, flag: str = "--areas") -> list[float]:
    from patchlab.eot import MAX_PATCH_AREA
    from patchlab.errors import PatchlabError, parse_fraction

    try:
        values = [parse_fraction(a, "area") for a in text.split(",") if a.strip()]
    except PatchlabError as exc:
        raise PatchlabError(f"{flag}: {exc}") from None
    if not values or any(not 0 < a <= MAX_PATCH_AREA for a in values):
        raise PatchlabError(f"{flag} must be fractions in (0, {MAX_PATCH_AREA}], e.g. 0.05,0.1,0.2; got {text!r}")
    return values


def train_cmd(
    model: list[str] = typer.Option(["efficientnet_lite0"], "--model", "-m", help="Zoo model; repeat for an ensemble"),
    target: str = typer.Option("toaster", "--target", "-t", help="Class name or index; 'none' for untargeted"),
    images: Path = typer.Option(..., "--images", help="Folder of scene images (a share is held out)"),
    area: float = typer.Option(0.10, "--area", help="Patch area as a fraction of the image"),
    shape: str = typer.Option("square", "--shape", help="square, circle or a mask image (alpha or white = patch)"),
    size: int = typer.Option(256, "--size", help="Patch resolution in pixels (independent of the model input)"),
    preset: str = typer.Option("print", "--preset", help="EOT preset (digital, print, webcam) or a .yaml/.json config"),
    colour: Path = typer.Option(None, "--colour", help="Fitted colour model JSON from `patchlab calibrate fit`"),
    steps: int = typer.Option(1000, "--steps", min=1),
    batch: int = typer.Option(8, "--batch", min=1, help="EOT samples per step"),
    lr: float = typer.Option(0.03, "--lr"),
    lr_final: float = typer.Option(1.0, "--lr-final", help="Cosine-decay the lr to lr * this (1 = constant)"),
    decay_start: int = typer.Option(0, "--decay-start", min=0, help="Step where the cosine decay begins"),
    nps_weight: float = typer.Option(0.01, "--nps-weight"),
    tv_weight: float = typer.Option(2.5, "--tv-weight"),
    loss: str = typer.Option("logprob", "--loss", help="logprob (Brown 2017) or success (smooth top-1 success "
                             "rate; for fine-tuning a trained patch)"),
    loss_temperature: float = typer.Option(2.0, "--loss-temperature", help="Temperature of --loss success, in logits"),
    holdout: float = typer.Option(0.4, "--holdout", help="Share of the images held out for evaluation"),
    seed: int = typer.Option(0, "--seed"),
    checkpoint_every: int = typer.Option(50, "--checkpoint-every", min=1),
    eval_every: int = typer.Option(0, "--eval-every", min=0, help="Log held-out success every N steps"),
    out: Path = typer.Option(Path("patch.png"), "--out", "-o"),
    resume: bool = typer.Option(False, "--resume", help="Continue from the checkpoint beside --out (<out>.ckpt.pt)"),
    force: bool = ForceOpt,
    init: Path = typer.Option(None, "--init", help="Start from this patch PNG (e.g. the shipped one) instead of noise"),
    bf16: bool = typer.Option(False, "--bf16", help="bfloat16 autocast for the model (not faster on every CPU: "
                              "see docs/benchmarks.md)"),
    distributed: bool = typer.Option(False, "--distributed", help="Data-parallel over the processes torchrun "
                                     "started; --batch is the global batch (see docs/distributed.md)"),
    device: str = DeviceOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Train a universal patch (Brown 2017) under EOT: <out>.png, <out>.patch.json and the checkpoint
    <out>.ckpt.pt; Ctrl-C saves the checkpoint."""
    from patchlab.errors import PatchlabError
    from patchlab.patch import PatchConfig, train_patch
    from patchlab.patch.distributed import torchrun_world_size
    from patchlab.patch.io import sidecar_path

    if torchrun_world_size() > 1 and not distributed:
        raise PatchlabError(f"torchrun started {torchrun_world_size()} processes: add --distributed")
    main_rank = not distributed or os.environ.get("RANK", "0") == "0"  # rank 0 reports, the others stay quiet

    cfg = PatchConfig(images=str(images), models=list(model), target=target, area=area, shape=shape,
                      patch_size=size, eot=preset, colour=str(colour) if colour else None, steps=steps,
                      batch=batch, lr=lr, lr_final=lr_final, decay_start=decay_start, nps_weight=nps_weight,
                      tv_weight=tv_weight, loss=loss, loss_temperature=loss_temperature, holdout=holdout,
                      seed=seed, checkpoint_every=checkpoint_every, eval_every=eval_every, out=str(out),
                      device=device, bf16=bf16, init=str(init) if init else None)
    try:
        with rich_progress("patch", enabled=not json_out and main_rank) as cb:
            result = train_patch(cfg, progress=cb, resume=resume, force=force, distributed=distributed)
    except KeyboardInterrupt:
        if main_rank:
            typer.echo(f"interrupted: checkpoint saved to {cfg.checkpoint_path()}; rerun with --resume", err=True)
        raise typer.Exit(130)
    if result.rank != 0:
        return
    last = next((h for h in reversed(result.history) if "target_prob" in h), {})
    summary = {"out": str(result.path), "steps": result.step, "seconds": result.meta["train_seconds"],
               "model": result.meta["models"][0], "models": result.meta["models"], "target": result.meta["target"],
               "target_name": result.meta["target_name"], "batch_success": last.get("batch_success"),
               "target_prob": last.get("target_prob")}
    if json_out:
        print_json(summary)
    else:
        typer.echo(f"saved {result.path} (+ {sidecar_path(result.path).name}) after {result.step} steps in {summary['seconds']:.0f}s; "
                   f"last batch success {summary['batch_success']}")


def eval_cmd(
    patch: Path = typer.Argument(..., help="Patch PNG (with its .patch.json sidecar)"),
    images: Path = typer.Option(..., "--images", help="Folder of scene images; the patch's training images are skipped"),
    model: list[str] = typer.Option(None, "--model", "-m", help="Models to test (default: the patch's, repeat for transfer)"),
    target: str = typer.Option(None, "--target", help="Target class (default: from the sidecar)"),
    areas: str = typer.Option("0.02,0.05,0.1,0.15,0.2,0.25", "--areas"),
    preset: str = typer.Option(None, "--preset", help="EOT preset or config file (default: the patch's)"),
    colour: Path = typer.Option(None, "--colour", help="Fitted colour model JSON"),
    draws: int = typer.Option(1, "--draws", min=1, help="EOT draws per image and area"),
    seed: int = typer.Option(1234, "--seed", help="EOT seed for evaluation (independent of training)"),
    baselines: bool = typer.Option(True, "--baselines/--no-baselines", help="Random-noise and natural-photo patches"),
    limit: int = typer.Option(None, "--limit", min=1, help="Use at most N images"),
    out: Path = typer.Option(None, "--out", "-o", help="Write the evaluation JSON here (default: <patch>.eval.json)"),
    plot: Path = typer.Option(None, "--plot", help="Write the success curve PNG here (default: <patch>.eval.png)"),
    save: bool = typer.Option(False, "--save", help="Also store the evaluation in the patch's sidecar"),
    force: bool = ForceOpt,
    device: str = DeviceOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Targeted success per patch area on held-out images, with Wilson intervals, baselines and transfer;
    writes <patch>.eval.json and the curve <patch>.eval.png."""
    from patchlab.artifacts import check_outputs, default_path, write_json
    from patchlab.patch.score import evaluate_patch, plot_curve
    from patchlab.patch.io import update_sidecar

    out_path = out or default_path(patch, "patch-eval")
    plot_path = plot or default_path(patch, "patch-eval-plot")
    check_outputs({out_path: "patch-eval", plot_path: "patch-eval-plot"}, "patchlab patch eval", force)
    with rich_progress("eval", enabled=not json_out) as cb:
        result = evaluate_patch(patch, images, models=model or None, target=target, areas=_areas(areas),
                                eot=preset, colour=str(colour) if colour else None, draws=draws, seed=seed,
                                baselines=baselines, limit=limit, device=device, progress=cb)
    plot_curve(result, plot_path)
    result["plot"] = str(plot_path)
    write_json(out_path, result, "patch-eval", "patchlab patch eval")
    if save:
        update_sidecar(patch, evaluation=result)
    if json_out:
        print_json(result)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("model", "area", "success", "95% CI", "noise", "photo", title=f"target: {result['target_name']}"
                  f" on {result['n']} held-out images, preset {result['preset']}")
    for name, res in result["models"].items():
        for row in res["curve"]:
            b = row.get("baselines", {})
            table.add_row(name, f"{row['area']:.0%}", f"{row['success_rate']:.1%}",
                          f"{row['ci95'][0]:.1%}-{row['ci95'][1]:.1%}",
                          f"{b['random_noise']['success_rate']:.1%}" if "random_noise" in b else "-",
                          f"{b['natural_photo']['success_rate']:.1%}" if "natural_photo" in b else "-")
    Console().print(table)
    typer.echo(f"wrote {out_path} and the plot {plot_path}  ({result['seconds']:.0f}s)")


def breakdown_cmd(
    patch: Path = typer.Argument(..., help="Patch PNG (with its .patch.json sidecar)"),
    images: Path = typer.Option(..., "--images", help="Folder of scene images; training images are skipped"),
    model: str = typer.Option(None, "--model", "-m", help="Model to test (default: the patch's first)"),
    area: str = typer.Option(None, "--area", help="Patch area fraction (default: the trained area)"),
    preset: str = typer.Option(None, "--preset", help="EOT preset or config file (default: the patch's)"),
    colour: Path = typer.Option(None, "--colour", help="Fitted colour model JSON"),
    draws: int = typer.Option(3, "--draws", min=1, help="EOT draws per image"),
    seed: int = typer.Option(1234, "--seed", help="EOT seed (the same draws as `patch eval` at its first area)"),
    limit: int = typer.Option(None, "--limit", min=1, help="Use at most N images"),
    device: str = DeviceOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Which physical effects cost the patch its misses: success with each group of effects switched off."""
    from patchlab.patch.score import effect_breakdown

    area_value = None
    if area is not None:
        values = _areas(area, "--area")
        if len(values) != 1:
            from patchlab.errors import PatchlabError

            raise PatchlabError(f"--area takes one fraction, got {area!r}")
        area_value = values[0]
    with rich_progress("breakdown", enabled=not json_out) as cb:
        result = effect_breakdown(patch, images, model=model, area=area_value, eot=preset,
                                  colour=str(colour) if colour else None, draws=draws, seed=seed, limit=limit,
                                  device=device, progress=cb)
    if json_out:
        print_json(result)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("effects switched off", "success", "95% CI", "change",
                  title=f"{result['model']}, target {result['target_name']}, {result['area']:.0%} area, preset "
                        f"{result['preset']}: {result['images']} held-out images x {result['draws']} draws")
    for row in result["rows"]:
        table.add_row(", ".join(row["off"]) or "none (all effects on)", f"{row['success_rate']:.1%}",
                      f"{row['ci95'][0]:.1%}-{row['ci95'][1]:.1%}", f"{row['gain']:+.1%}" if row["off"] else "")
    Console().print(table)
    typer.echo(f"({result['seconds']:.0f}s)")


def register(app: typer.Typer) -> None:
    add_group(app, "patch", "Universal adversarial patches under EOT: train and evaluate.",
              train=train_cmd, eval=eval_cmd, breakdown=breakdown_cmd)
