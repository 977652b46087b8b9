"""Does averaging fine-tuned weights help PatchCleanser's fine-tuned model (docs/results/defenses-finetune.md, "Fourth
selection round")? Runs of the same recipe with other seeds certify 42-50% of the validation images: a uniform "model
soup" of them (Wortsman et al. 2022) may keep what they share, and moving along the line from the original weights
to the soup (WiSE-FT, Wortsman et al. 2022: `--alpha` 0 is the original, 1 the soup, above 1 past it) trades the
fine-tuning's effect against the original's.

    python scripts/finetune_weight_averaging.py runs/soup/seed0.ckpt.pt runs/soup/seed1.ckpt.pt \
        runs/soup/seed2.ckpt.pt --alpha 1 --out runs/soup/soup.safetensors

Loads `patchlab defend train masking --val 60` checkpoints (unfolded BatchNorm, which stays frozen at ImageNet's
statistics, so averaging the unfolded weights is averaging the networks' parameters), averages them, interpolates
with the original, folds, writes the weights and prints the exact certificate (all 630 pairs) on the 60 validation
images the runs kept out. Selection data only: it never reads the held-out images.
"""

from __future__ import annotations

import argparse
import json

import torch

from patchlab.data import shared_data_dir
from patchlab.defenses.finetune import FinetuneConfig, FinetuneNet, save_folded, validate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--alpha", type=float, default=1.0, help="0: the original weights, 1: the soup")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    data = shared_data_dir()
    if data is None:
        raise SystemExit("error: the shared data folder (../shared/data) is missing")
    cfg = FinetuneConfig(images=str(data / "imagenet-sample"), val=60, val_pairs=630, masks="mixed")
    model = FinetuneNet(cfg.arch, "all")
    original = model.state_dict()
    states = [torch.load(p, weights_only=True)["model"] for p in args.checkpoints]
    mixed = {}
    for name, start in original.items():
        if not start.is_floating_point():  # BatchNorm's batch counters
            mixed[name] = start
            continue
        soup = torch.stack([s[name].double() for s in states]).mean(0)
        mixed[name] = torch.lerp(start.double(), soup, args.alpha).to(start.dtype)
    model.load_state_dict(mixed)
    save_folded(model, args.out, {"weight_averaging": vars(args)})
    result = validate(cfg, args.out, original=False)["fine-tuned"]  # the original's 31.7%: the same images and code
    print(json.dumps({"settings": vars(args), "validation": result}))


if __name__ == "__main__":
    main()
