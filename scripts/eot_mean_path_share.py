"""How much of the print preset's patch gradient flows through the contrast term's frame mean.

The photometric step contrasts each frame about its own mean, which couples every pixel to every other: a backward
restricted to the patch's neighbourhood would drop the part of that path that runs through the rest of the frame.
This measures the whole path's share: the texture gradient of one training step with and without it (the mean
detached), same draws, for a few seeds. docs/benchmarks.md quotes the result.

    python scripts/eot_mean_path_share.py --images ../shared/data/imagenet-sample [--seeds 3] [--size 64]
"""

from __future__ import annotations

import argparse
from contextlib import contextmanager

import torch


@contextmanager
def mean_detached():
    """Tensor.mean over (C, H, W), the photometric frame mean, returns a detached value inside the block; yields the
    list of those calls (one per step), so that a measurement that never reached the mean cannot pass for a zero."""
    original, calls = torch.Tensor.mean, []

    def mean(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        if args and args[0] == (1, 2, 3):
            calls.append(1)
            return out.detach()
        return out

    torch.Tensor.mean = mean
    try:
        yield calls
    finally:
        torch.Tensor.mean = original


def gradients(cfg, models) -> tuple[torch.Tensor, torch.Tensor]:
    """The texture gradient of the first step, with the mean's path and without it, from the same prepared state."""
    from patchlab.patch.train import PatchTrainer

    trainer = PatchTrainer(cfg, models=models).prepare()
    start = trainer.state_dict()
    trainer.step()
    full = trainer.texture.grad.clone()
    trainer.load_state_dict(start)  # the same draws again
    with mean_detached() as calls:
        trainer.step()
    if len(calls) != 1:
        raise SystemExit(f"the photometric frame mean was taken {len(calls)} times in one step, not once: "
                         "update this script")
    return full, trainer.texture.grad.clone()


def main() -> None:
    from patchlab.models import load_model
    from patchlab.patch.train import PatchConfig

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", required=True)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    models = [load_model("efficientnet_lite0", "cpu")]
    for seed in range(args.seeds):
        cfg = PatchConfig(images=args.images, patch_size=args.size, batch=args.batch, steps=1, holdout=0.0,
                          eot="print", seed=seed, out=None)
        full, cut = gradients(cfg, models)
        print(f"seed {seed}: |g - g without the mean's path| / |g| = {float((full - cut).norm() / full.norm()):.2e}")


if __name__ == "__main__":
    main()
