"""Does re-estimating BatchNorm statistics help PatchCleanser's fine-tuned model (docs/results/defenses-finetune.md,
"BatchNorm statistics")? Fine-tuning keeps BatchNorm frozen at ImageNet's statistics; every input PatchCleanser
feeds the model is masked, so statistics re-estimated on masked crops might suit it better.

    python scripts/finetune_bn_recalibration.py runs/sel/r6b_e10.ckpt.pt --inputs mixed --out runs/sel/recal.safetensors

Loads a `patchlab defend train masking --val 60` checkpoint (unfolded BatchNorm), resets every BatchNorm's running
statistics and re-estimates them (cumulative average, no gradients) over `--passes` epochs of the fine-tuning side's
random-resized crops, unmasked (`clean`) or with the certifier's mixed masks (`mixed`), folds, writes the weights and
prints the exact certificate (all 630 pairs) on the 60 validation images the checkpoint's run kept out. Selection
data only: it never reads the held-out images.
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn as nn

from patchlab.data import shared_data_dir
from patchlab.defenses.finetune import (FinetuneConfig, FinetuneNet, load_training_images, mask_mixed,
                                        random_resized_crop, save_folded, validate)
from patchlab.defenses.masks import mask_set


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--inputs", choices=["clean", "mixed"], default="mixed")
    ap.add_argument("--passes", type=int, default=4)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=123)
    args = ap.parse_args()
    data = shared_data_dir()
    if data is None:
        raise SystemExit("error: the shared data folder (../shared/data) is missing")
    images = str(data / "imagenet-sample")
    cfg = FinetuneConfig(images=images, val=60, val_pairs=630, masks="mixed")
    model = FinetuneNet(cfg.arch, "all", batchnorm="train")  # train(): BatchNorm alone in training mode
    model.load_state_dict(torch.load(args.checkpoint, weights_only=True)["model"])
    x, _ = load_training_images(images, None, cfg.val)
    masks = mask_set(model.input_size, cfg.patch, cfg.k).tensor()
    gen = torch.Generator().manual_seed(args.seed)
    for bn in model.modules():
        if isinstance(bn, nn.BatchNorm2d):
            bn.reset_running_stats()
            bn.momentum = None  # a cumulative average over every batch
    model.train()
    with torch.no_grad():
        for _ in range(args.passes):
            order = torch.randperm(len(x), generator=gen)
            for i in range(0, len(x), 64):
                crops = random_resized_crop(x[order[i:i + 64]], model.input_size, gen, cfg.crop_scale)
                model(mask_mixed(crops, masks, gen) if args.inputs == "mixed" else crops)
    model.eval()
    save_folded(model, args.out, {"bn_recalibration": vars(args)})
    result = validate(cfg, args.out, original=False)["fine-tuned"]  # the original's 31.7%: the same images and code
    print(json.dumps({"settings": vars(args), "validation": result}))


if __name__ == "__main__":
    main()
