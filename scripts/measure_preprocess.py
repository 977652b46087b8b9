"""Top-1/top-5 of EfficientNet-Lite0/1/2 on a labelled folder under several eval transforms (issue 14).

    python scripts/measure_preprocess.py ../shared/data/imagenet-sample [--models efficientnet_lite1,...]
        [--reference] [--json]

Rows per model, all at the model's input size S:
- torch bilinear+antialias, short side int(S/0.875), centre crop  (patchlab's transform before issue 14)
- torch bicubic+antialias, short side int(S/0.875) and S+32 (the official EfficientNet crop_padding=32)
- PIL bicubic (torchvision Resize(short, BICUBIC) + CenterCrop on the PIL image), both short sides: the
  reference pipeline's inputs, scored with patchlab's net (its logits equal the reference package's to < 1e-3,
  tests/test_models.py); --reference also scores them with the reference package itself (slow: ~7x)
- patchlab.models.preprocess as it is now
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F


def torch_transform(x: torch.Tensor, size: int, short: int, mode: str) -> torch.Tensor:
    """bilinear: the transform before issue 14 exactly (long side rounded); bicubic: as patchlab.models.preprocess
    now (long side truncated, as torchvision's Resize), at any short side."""
    from patchlab.models.preprocess import center_crop, resize_short_side

    if mode == "bicubic":
        return center_crop(resize_short_side(x, short), size)
    h, w = x.shape[-2:]
    if min(h, w) != short:
        s = short / min(h, w)
        x = F.interpolate(x[None], size=(max(short, round(h * s)), max(short, round(w * s))), mode=mode,
                          align_corners=False, antialias=True)[0].clamp(0, 1)
    return center_crop(x, size)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder")
    ap.add_argument("--models", default="efficientnet_lite0,efficientnet_lite1,efficientnet_lite2")
    ap.add_argument("--reference", action="store_true", help="also run the reference package on the PIL inputs")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from PIL import Image
    from torchvision import transforms

    from patchlab.data import labelled_folder
    from patchlab.models import load_model, preprocess, reference_model
    from patchlab.models.efficientnet_lite import LiteScale

    torch.set_grad_enabled(False)
    items = labelled_folder(args.folder)
    labels = torch.tensor([it.label for it in items])
    pils = [Image.open(it.path).convert("RGB") for it in items]
    tensors = [torch.from_numpy(np.array(p)).permute(2, 0, 1).float().div(255) for p in pils]
    rows = []

    def score(name: str, transform: str, net, inputs) -> torch.Tensor:
        t0 = time.perf_counter()
        logits = torch.cat([net(torch.stack([inputs(j) for j in range(i, min(i + 50, len(items)))]))
                            for i in range(0, len(items), 50)])
        top5 = logits.topk(5, -1).indices
        row = {"model": name, "transform": transform, "n": len(items),
               "top1": float((top5[:, 0] == labels).float().mean()),
               "top5": float((top5 == labels[:, None]).any(1).float().mean()),
               "seconds": round(time.perf_counter() - t0, 1)}
        rows.append(row)
        if not args.json:
            print(f"{name:<19} {transform:<48} top-1 {100 * row['top1']:5.1f}%  top-5 {100 * row['top5']:5.1f}%  "
                  f"({row['seconds']} s)", flush=True)
        return logits.argmax(1)

    for name in args.models.split(","):
        model = load_model(name, "cpu")
        size = model.input_size
        for mode, short in (("bilinear", int(size / 0.875)), ("bicubic", int(size / 0.875)), ("bicubic", size + 32)):
            score(name, f"torch {mode} short {short}", model,
                  lambda j, mode=mode, short=short: torch_transform(tensors[j], size, short, mode))
        ref = reference_model(name) if args.reference else None
        for short in (int(size / 0.875), size + 32):
            tf = transforms.Compose([transforms.Resize(short, interpolation=transforms.InterpolationMode.BICUBIC),
                                     transforms.CenterCrop(size), transforms.ToTensor()])
            score(name, f"PIL bicubic short {short}, patchlab net", model, lambda j, tf=tf: tf(pils[j]))
            if ref is not None:
                score(name, f"PIL bicubic short {short}, reference package", lambda x: ref(LiteScale()(x)),
                      lambda j, tf=tf: tf(pils[j]))
        score(name, "patchlab.models.preprocess (now)", model, lambda j: preprocess(tensors[j], size))
    if args.json:
        print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
