"""Is PatchCleanser's fine-tuned model short of 50% because of what it cannot learn from 419 images, or because it
never fits even those (docs/results/defenses-finetune.md, "Fifth selection round")? Certifies the first N of the
359 images a `--val 60` run fine-tuned on, with the exact certificate (all 630 pairs), for the original model and
the given fine-tuned weights. If the fine-tuned model certifies its own training images no more often than the goal,
more of the same training cannot reach the goal on images it has never seen.

    python scripts/finetune_training_fit.py runs/soup/seed0.safetensors --n 120

Prints one JSON line. Training-side images only: it never reads the held-out images.
"""

from __future__ import annotations

import argparse
import json

from patchlab.data import shared_data_dir
from patchlab.defenses.data import load_images
from patchlab.defenses.finetune import certify_proxy, split_validation
from patchlab.models import load_model
from patchlab.models.efficientnet_lite import LITE_SIZES


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights", help="a `patchlab defend train masking --val 60` model (.safetensors)")
    ap.add_argument("--n", type=int, default=120, help="the first N of the 359 fine-tuning images")
    ap.add_argument("--no-original", action="store_true", help="skip the original model")
    args = ap.parse_args()
    data = shared_data_dir()
    if data is None:
        raise SystemExit("error: the shared data folder (../shared/data) is missing")
    train, _ = split_validation(data / "imagenet-sample", 60)
    if not 0 < args.n <= len(train.paths):
        raise SystemExit(f"error: --n must lie in 1..{len(train.paths)}, got {args.n}")
    paths, labels = train.paths[:args.n], train.labels[:args.n]
    x = load_images(paths, LITE_SIZES["efficientnet_lite0"])  # both models are Lite0: one decode serves both
    out = {"settings": vars(args)}
    for label in ("original", "fine-tuned")[1 if args.no_original else 0:]:
        net = (load_model("efficientnet_lite0") if label == "original"
               else load_model(args.weights, arch="efficientnet_lite0"))
        out[label] = certify_proxy(net, x, labels, pairs=630)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
