"""Adaptive patches: the patch trainer (`patchlab.patch.train_patch`) run against a defended model.

  patchcleanser - PatchCleanser is differentiable once the masks are chosen, so the patch is trained under EOT over
                  its mask set: every sample gets one random mask of the set (`RandomMask`), and the loss asks for
                  the target under every mask, i.e. a unanimous first round (case I of the two-round rule);
  lgs           - BPDA through local gradient smoothing (forward: LGS; backward: the identity);
  jpeg, median  - BPDA likewise.
The defended model goes to `train_patch(models=[...])` unchanged; the patch trainer's EOT (print preset), losses and
checkpoints are the same as for the shipped patch. The random mask draws come from a seeded generator that the patch
trainer checkpoints with its own, so a resumed adaptive run equals an uninterrupted one.
"""

from __future__ import annotations

from pathlib import Path

import torch

from patchlab.defenses.masks import MaskSet
from patchlab.defenses.registry import check_defenses, defense_names, make_transform
from patchlab.defenses.transforms import Defended, InputTransform

ADAPTIVE_DEFENSES = defense_names("adaptive")


class RandomMask(InputTransform):
    """Each image gets one mask of `masks`, drawn at random, filled with grey (EOT over PatchCleanser's masks)."""

    name = "random_mask"
    randomized = True

    def __init__(self, masks: MaskSet, fill: float = 0.5):
        super().__init__()
        self.register_buffer("masks", masks.tensor(), persistent=False)
        self.fill = float(fill)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idx = torch.randint(0, len(self.masks), (len(x),), generator=self.generator)
        m = self.masks[idx].to(x.device)
        return torch.where(m, torch.full((), self.fill, dtype=x.dtype, device=x.device), x)


def defended_target(model, defense: str, area: float = 0.1, masks: int = 6, seed: int = 0) -> Defended:
    """The model the adaptive patch is trained against."""
    from patchlab.defenses.masks import mask_set

    defense, = check_defenses([defense], "adaptive")
    if defense == "patchcleanser":
        t = RandomMask(mask_set(model.input_size, area, masks))
        t.generator = torch.Generator().manual_seed(seed)
        target = Defended(model, t, mode="plain")  # masking is differentiable: exact gradients
        target.name = f"{model.name}+patchcleanser-masks"
        return target
    return Defended(model, make_transform(defense), mode="bpda")


def train_adaptive_patch(defense: str, images: str | Path, out: str | Path, init: str | Path | None = None,
                         area: float = 0.1, steps: int = 200, batch: int = 8, lr: float = 0.003,
                         masks: int = 6, seed: int = 0, device="auto", resume: bool = False, progress=None,
                         force: bool = False, **patch_options):
    """Train (or fine-tune from `init`, e.g. the shipped patch) a toaster patch against `defense`; returns the
    patch trainer's PatchResult (the PNG and sidecar are written to `out`; existing ones only with `force`)."""
    from patchlab.models import load_model
    from patchlab.patch import PatchConfig, train_patch

    model = load_model("efficientnet_lite0", device)
    target = defended_target(model, defense, area, masks, seed)
    options = {"target": "toaster", "eot": "print", "loss": "success", "tv_weight": 1.0, "lr_final": 0.1,
               **patch_options}
    cfg = PatchConfig(images=str(images), models=[model.name], area=area, steps=steps, batch=batch, lr=lr,
                      seed=seed, out=str(out), init=str(init) if init else None, device=str(device), **options)
    # the patch trainer checks its outputs (patch, sidecar, checkpoint) before any work; `force` replaces its own
    return train_patch(cfg, progress=progress, resume=resume, models=[target], force=force)


__all__ = ["ADAPTIVE_DEFENSES", "RandomMask", "defended_target", "train_adaptive_patch"]
