"""`patchlab bench ...`: side-by-side benchmarks."""

from __future__ import annotations

import typer

from patchlab.cli._common import DeviceOpt, JsonOpt, add_group, print_json


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


def register(app: typer.Typer) -> None:
    add_group(app, "bench", "Side-by-side benchmarks against peers.", models=bench_models_cmd)
