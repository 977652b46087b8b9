"""Adversarial patches: shapes, printability losses, the EOT optimiser, scoring (success per area, effect
breakdown), and the PNG + sidecar format."""

from patchlab.patch.io import load_patch, save_patch
from patchlab.patch.losses import default_palette, non_printability, total_variation
from patchlab.patch.shapes import make_mask
from patchlab.patch.train import PatchConfig, PatchResult, PatchTrainer, train_patch

__all__ = ["PatchConfig", "PatchResult", "PatchTrainer", "default_palette", "effect_breakdown", "evaluate_patch",
           "load_patch", "make_mask", "non_printability", "plot_curve", "save_patch", "total_variation", "train_patch"]


def __getattr__(name):
    if name in ("evaluate_patch", "effect_breakdown", "plot_curve"):
        from patchlab.patch import score

        return getattr(score, name)
    raise AttributeError(name)
