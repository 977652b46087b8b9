"""Model benchmark: patchlab's EfficientNet-Lite against the reference efficientnet_lite_pytorch, same weights."""

from __future__ import annotations

import torch
import torch.nn as nn

from patchlab.bench.suite import Measured, benchmark
from patchlab.bench.targets import Target
from patchlab.bench.timing import best, interleaved, median
from patchlab.models import load_model, reference_model
from patchlab.models.efficientnet_lite import LiteScale


class ReferenceClassifier(nn.Module):
    """The reference net behind the same [0, 1] input scaling, so both sides do identical work."""

    def __init__(self, name: str):
        super().__init__()
        self.scale = LiteScale()
        self.net = reference_model(name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.scale(x))


def bench_models(name: str = "efficientnet_lite0", batch: int = 8, repeats: int = 10, device: str = "cpu") -> dict:
    """Forward+backward at `batch` (input gradient as attacks use; parameter gradients as training uses),
    and batch-1 inference latency. Both sides run in the same process, same weights, same input, alternating
    for `repeats` rounds; times are the best of the rounds (medians beside them)."""
    ours = load_model(name, device)
    ref = ReferenceClassifier(name).to(device).eval().requires_grad_(False)
    size = ours.input_size
    x = torch.rand(batch, 3, size, size, device=device)
    x1 = torch.rand(1, 3, size, size, device=device)

    def fwd_bwd(model):
        def run():
            xi = x.clone().requires_grad_(True)
            model(xi).logsumexp(-1).sum().backward()
        return run

    def fwd_bwd_params(model):
        def run():
            model.requires_grad_(True)
            model.zero_grad(set_to_none=True)
            model(x).logsumexp(-1).sum().backward()
            model.requires_grad_(False)
        return run

    def infer(model):
        def run():
            with torch.inference_mode():
                model(x1)
        return run

    result = {"model": name, "batch": batch, "device": device, "threads": torch.get_num_threads(), "rounds": repeats}
    for key, make in (("fwd_bwd", fwd_bwd), ("fwd_bwd_params", fwd_bwd_params), ("latency", infer)):
        samples = interleaved({"reference": make(ref), "patchlab": make(ours)}, rounds=repeats, warmup=2)
        low, mid = best(samples), median(samples)
        result[key] = {"patchlab_s": low["patchlab"], "reference_s": low["reference"],
                       "speedup": low["reference"] / low["patchlab"], "patchlab_median_s": mid["patchlab"],
                       "reference_median_s": mid["reference"]}
    return result


def format_models(r: dict) -> str:
    rows = [f"{r['model']}, batch {r['batch']}, {r['threads']} threads, best (median) of {r['rounds']} interleaved "
            "rounds", "", "| pass | patchlab ms | reference ms | speed-up |", "|---|---|---|---|"]
    for key, title in (("fwd_bwd", f"fwd+bwd to the input, batch {r['batch']}"),
                       ("fwd_bwd_params", f"fwd+bwd to the weights, batch {r['batch']}"),
                       ("latency", "batch-1 latency")):
        row = r[key]
        rows.append(f"| {title} | {row['patchlab_s'] * 1e3:.1f} ({row['patchlab_median_s'] * 1e3:.1f}) | "
                    f"{row['reference_s'] * 1e3:.1f} ({row['reference_median_s'] * 1e3:.1f}) | {row['speedup']:.2f}x |")
    return "\n".join(rows)


@benchmark("models", "EfficientNet-Lite0: patchlab vs the reference efficientnet_lite_pytorch",
           needs=("efficientnet_lite_pytorch",), data=False)
def run_models_benchmark(quick: bool, images=None, rounds: int | None = None) -> Measured:
    """Target (issue #14): forward+backward >= 1.4x the reference, to the input and to the weights."""
    r = bench_models("efficientnet_lite0", batch=8, repeats=rounds or (3 if quick else 10), device="cpu")
    targets = [Target("model fwd+bwd to the input, reference / patchlab", r["fwd_bwd"]["speedup"], ">=", 1.4, "x"),
               Target("model fwd+bwd to the weights, reference / patchlab", r["fwd_bwd_params"]["speedup"], ">=", 1.4,
                      "x")]
    return Measured(targets, format_models(r), r)
