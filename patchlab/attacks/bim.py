"""BIM / I-FGSM and the iterative least-likely-class method (Kurakin, Goodfellow and Bengio 2016)."""

from __future__ import annotations

import torch

from patchlab.attacks.iterative import LinfIterativeAttack


class BIM(LinfIterativeAttack):
    """Iterative FGSM from the clean image. Kurakin's defaults: α = 1/255, steps = min(255·ε + 4, 1.25·255·ε)."""

    name = "bim"
    title = "BIM / I-FGSM"

    def _default_steps(self) -> int:
        e = self.eps * 255
        return max(1, int(min(e + 4, 1.25 * e)))

    def _default_alpha(self) -> float:
        return min(1 / 255, self.eps) if self.eps > 0 else 1 / 255

    def _project(self, adv, x):
        # clip to [x - ε, x + ε] ∩ [0, 1], written as Kurakin's Clip_{X,ε} (and torchattacks' BIM, bit for bit)
        return torch.clamp(adv, min=torch.clamp(x - self.eps, min=0), max=x + self.eps).clamp(max=1)


class LeastLikely(BIM):
    """Iterative least-likely class: BIM targeted at the class the model finds least likely on the clean image."""

    name = "ll"
    title = "Least-likely class"

    def __init__(self, model, eps=None, **kwargs):
        if kwargs.get("target") is None:
            kwargs["least_likely"] = True
        super().__init__(model, eps, **kwargs)
