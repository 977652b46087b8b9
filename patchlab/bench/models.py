"""Model benchmark: patchlab's EfficientNet-Lite against the reference efficientnet_lite_pytorch, same weights."""

from __future__ import annotations

import torch
import torch.nn as nn

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
