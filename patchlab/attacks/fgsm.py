"""Single-step attacks: FGSM (Goodfellow et al. 2014) and its L2 version FGM."""

from __future__ import annotations

import torch

from patchlab.attacks.base import Attack, AttackResult, l2_normalize, norms, parse_eps


class FGSM(Attack):
    """x + ε·sign(∇x loss), clipped to [0, 1]. One gradient evaluation; `sweep` reuses it for many ε."""

    name = "fgsm"
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
            adv = (x + eps * direction).clamp(0, 1)
            with torch.no_grad():
                pred = self.logits(adv).argmax(1)
            linf, l2 = norms(adv - x)
            results.append(AttackResult(adv=adv, success=self.is_success(pred, y, target), linf=linf, l2=l2, queries=1,
                                        labels=y, adv_pred=pred, target=target, extra={"eps": eps}))
        return results


class FGM(FGSM):
    """Fast gradient method in L2: x + ε·∇/‖∇‖₂, clipped to [0, 1]."""

    name = "fgm"
    norm = "l2"
    default_eps = 1.0

    def _direction(self, grad: torch.Tensor) -> torch.Tensor:
        return l2_normalize(grad)
