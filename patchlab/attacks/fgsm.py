"""Single-step attacks: FGSM (Goodfellow et al. 2014) and its L2 version FGM."""

from __future__ import annotations

import torch

from patchlab.attacks.base import Attack, AttackResult, l2_normalize, parse_eps


class FGSM(Attack):
    """x + ε·sign(∇x loss), clipped to [0, 1]. One gradient evaluation; `sweep` reuses it for many ε."""

    name = "fgsm"
    title = "FGSM (one step)"
    norm = "linf"

    def _direction(self, grad: torch.Tensor) -> torch.Tensor:
        return grad.sign()

    def _run(self, x, y, target):
        grad, _ = self.input_grad(x, y, target)
        return x + self.eps * self._direction(grad), 1

    def sweep(self, images: torch.Tensor, labels=None, epsilons=()) -> list[AttackResult]:
        """One result per ε from a single gradient (the step direction does not depend on ε)."""
        x, y = self._prepare(images, labels)
        with torch.no_grad():
            clean_logits = self.logits(x)
        y = clean_logits.argmax(1) if y is None else y
        target = self._targets(clean_logits, len(x))
        direction = self._direction(self.input_grad(x, y, target)[0])
        results = []
        for eps in epsilons:
            eps = parse_eps(eps, self.norm)
            results.append(self._result(x, x + eps * direction, y, target, 1, extra={"eps": eps}))
        return results


class FGM(FGSM):
    """Fast gradient method in L2: x + ε·∇/‖∇‖₂, clipped to [0, 1]."""

    name = "fgm"
    title = "FGM (L2, one step)"
    norm = "l2"
    default_eps = 1.0

    def _direction(self, grad: torch.Tensor) -> torch.Tensor:
        return l2_normalize(grad)
