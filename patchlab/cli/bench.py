"""`patchlab bench [--quick] [--json out.json] [--markdown]`: every side-by-side benchmark, one table of ratios
against targets; `patchlab bench models`: the model benchmark alone."""

from __future__ import annotations

from pathlib import Path

import typer

from patchlab.cli._common import DeviceOpt, ForceOpt, JsonOpt, print_json, rich_progress


def bench_all(ctx: typer.Context,
              quick: bool = typer.Option(False, "--quick", help="Shorter settings, and only the quick benchmarks "
                                         "(under 10 minutes on a 2-core CPU)"),
              only: list[str] = typer.Option(None, "--only", help="Run only this benchmark (repeat; see --list)"),
              json_path: Path = typer.Option(None, "--json", help="Write every number and target here (JSON)"),
              markdown: bool = typer.Option(False, "--markdown", help="Print the markdown for docs/benchmarks.md "
                                            "instead of the table"),
              images: Path = typer.Option(None, "--images", help="ImageNet sample folder (default: the shared data)"),
              list_: bool = typer.Option(False, "--list", help="List the registered benchmarks and exit"),
              force: bool = ForceOpt) -> None:
    """Run every registered benchmark; exits 1 when a target is missed or a benchmark could not run."""
    if ctx.invoked_subcommand is not None:
        return
    from patchlab.bench.suite import load_benchmarks, run_benchmarks, to_markdown

    if list_:
        for name, b in load_benchmarks().items():
            missing = b.missing()
            typer.echo(f"{name:18s} {'quick' if b.quick else 'full '}  {b.title}"
                       + (f"  [not installed: {', '.join(missing)}]" if missing else ""))
        return
    if json_path is not None:
        from patchlab.artifacts import check_output

        check_output(json_path, "bench-results", force=force)
    with rich_progress("bench", enabled=not markdown) as cb:
        result = run_benchmarks(only or None, quick=quick, images=images, progress=cb)
    if json_path is not None:
        from patchlab.artifacts import write_json

        write_json(json_path, result, kind="bench-results")
    if markdown:
        typer.echo(to_markdown(result), nl=False)
    else:
        _print_table(result)
    raise typer.Exit(0 if result["ok"] else 1)


def _print_table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("benchmark", "target", "measured", "required", "status",
                  title=f"{result['met']} of {len(result['targets'])} targets met in {result['seconds']:.0f} s")
    for r in result["benchmarks"]:
        if r["status"] != "ran":
            table.add_row(r["name"], r["title"], "n/a", "", f"[red]{r['status']}[/red]: {r.get('reason', '')}")
        for t in r["targets"]:
            value = "n/a" if t["value"] is None else f"{t['value']:.3g} {t['unit']}".strip()
            table.add_row(r["name"], t["name"], value, t["required"], "met" if t["met"] else "[red]MISSED[/red]")
    Console().print(table)


def bench_models_cmd(model: str = typer.Option("efficientnet_lite0", "--model"),
                     batch: int = typer.Option(8, "--batch", min=1), repeats: int = typer.Option(10, "--repeats", min=1),
                     device: str = DeviceOpt, json_out: bool = JsonOpt) -> None:
    """Forward+backward and latency: patchlab vs the reference efficientnet_lite_pytorch."""
    from patchlab.bench.models import bench_models
    from patchlab.models import resolve_device

    r = bench_models(model, batch, repeats, str(resolve_device(device)))
    if json_out:
        print_json(r)
        return
    typer.echo(f"{r['model']} on {r['device']} ({r['threads']} threads)")
    for key, title in (("fwd_bwd", f"fwd+bwd to input, batch {r['batch']}"),
                       ("fwd_bwd_params", f"fwd+bwd to weights, batch {r['batch']}"), ("latency", "batch-1 latency")):
        row = r[key]
        typer.echo(f"  {title:32s} patchlab {row['patchlab_s'] * 1000:7.1f} ms   reference "
                   f"{row['reference_s'] * 1000:7.1f} ms   speed-up {row['speedup']:.2f}x")


def bench_gpu_cmd(out: Path = typer.Option(Path("gpu-check"), "--out", "-o", help="Output folder (patch PNG, JSON)"),
                  images: Path = typer.Option(None, "--images", help="Scene folder (default: the shared sample)"),
                  device: str = typer.Option("cuda", "--device", help="cuda (cpu only makes sense with --smoke)"),
                  batch: int = typer.Option(64, "--batch", min=1),
                  train_seconds: float = typer.Option(240.0, "--train-seconds", min=1.0, help="Training time budget"),
                  draws: int = typer.Option(3, "--draws", min=1, help="EOT draws per held-out image"),
                  bf16: bool = typer.Option(False, "--bf16", help="bfloat16 autocast for the model pass"),
                  smoke: bool = typer.Option(False, "--smoke", help="A tiny run of the same code path (any device)"),
                  json_out: bool = JsonOpt) -> None:
    """Fine-tune the shipped toaster patch on the GPU at batch >= 64, score it on the held-out images at 10% area
    (print preset), print steps/s and inference FPS, and write gpu_check.gpu.json."""
    from patchlab.bench.gpu import gpu_check
    from patchlab.data import shared_data_dir
    from patchlab.errors import PatchlabError

    if images is None:
        root = shared_data_dir()
        if root is None:
            raise PatchlabError("the shared ImageNet sample is absent: pass images=")
        images = root / "imagenet-sample"
    with rich_progress("gpu check", enabled=not json_out) as cb:
        r = gpu_check(images, out, device=device, batch=batch, train_seconds=train_seconds, draws=draws, bf16=bf16,
                      smoke=smoke, progress=cb)
    if json_out:
        print_json(r)
        return
    lo, hi = r["ci95"]
    smoke = ", SMOKE run" if r["smoke"] else ""
    typer.echo(f"device {r['device']} ({r['gpu'] or 'no GPU'}), torch {r['torch']}{smoke}")
    typer.echo(f"training: {r['steps']} steps at batch {r['batch']}: {r['steps_per_s']:.2f} steps/s "
               f"({r['samples_per_s']:.0f} samples/s), {r['train_seconds']:.0f} s")
    typer.echo(f"held-out success at 10% area, print preset: {r['success_rate']:.1%} [{lo:.1%}, {hi:.1%}] "
               f"(n = {r['n']}; shipped patch {r['shipped']['success_rate']:.1%}; goal {r['goal']:.0%}: "
               f"{'met' if r['goal_met'] else 'MISSED'})")
    typer.echo(f"inference: {r['live_fps']:.1f} FPS live (batch 1, frame -> logits), "
               f"{r['batched_images_per_s']:.0f} images/s at batch {r['batch']}")
    typer.echo(f"wrote {r['json']} and {r['patch']} in {r['seconds']:.0f} s")


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Side-by-side benchmarks against peers: `patchlab bench` runs them all.",
                        invoke_without_command=True)
    group.callback()(bench_all)
    group.command("models")(bench_models_cmd)
    group.command("gpu")(bench_gpu_cmd)
    app.add_typer(group, name="bench")
