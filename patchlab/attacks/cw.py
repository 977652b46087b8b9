"""Carlini-Wagner L2 (2017) with the binary search over c, so the defaults work."""

from __future__ import annotations

import torch

from patchlab.attacks.base import Attack, margin_loss
from patchlab.errors import positive_float, positive_int


class CW(Attack):
    """Minimise ‖δ‖₂² + c·max(margin, -κ) in tanh space with Adam; c per example by binary search.

    Per example: c starts at `initial_const`; after each of `binary_search_steps` rounds c bisects towards the
    bracket if the round found an adversarial, else grows 10× (or bisects once bracketed). The smallest-L2
    adversarial seen at any iterate is kept. Each round starts where the previous one ended (the reference
    code restarts from x): failing examples keep their progress as c grows, fooled ones shrink back towards
    the boundary as c drops. Within a round Adam's step decays from `lr` to `lr`/10 (cosine), so
    a short round still makes large early moves and then settles near the boundary. `abort_early` stops a
    round when the loss has not improved by 0.01% over a tenth of `steps` (as in the reference code; off by
    default because with short rounds it stops during the initial transient). Examples that never succeed
    come back unchanged (success False).
    """

    name = "cw"
    title = "Carlini-Wagner L2"
    norm = "l2"
    uses_eps = False

    def __init__(self, model, eps=None, *, steps: int = 50, binary_search_steps: int = 5,
                 initial_const: float = 0.1, lr: float = 0.01, kappa: float = 0.0, abort_early: bool = False,
                 **kwargs):
        super().__init__(model, eps, **kwargs)
        self.steps = positive_int(steps, "steps")
        self.binary_search_steps = positive_int(binary_search_steps, "binary_search_steps")
        self.initial_const = positive_float(initial_const, "initial_const")
        self.lr = positive_float(lr, "lr")
        self.kappa = positive_float(kappa, "kappa", allow_zero=True)
        self.abort_early = bool(abort_early)

    def _f(self, logits, y, target):
        if target is None:
            return margin_loss(logits, y).clamp(min=-self.kappa)
        return (-margin_loss(logits, target)).clamp(min=-self.kappa)

    def _run(self, x, y, target):
        n = len(x)
        dev = x.device
        w_start = torch.atanh((x * 2 - 1).clamp(-1 + 1e-6, 1 - 1e-6))
        lower = torch.zeros(n, device=dev)
        upper = torch.full((n,), 1e10, device=dev)
        const = torch.full((n,), self.initial_const, device=dev)
        best_l2 = torch.full((n,), float("inf"), device=dev)
        best_adv = x.clone()
        queries = 0
        total = self.binary_search_steps * self.steps
        for round_ in range(self.binary_search_steps):
            w = w_start.clone().requires_grad_(True)
            opt = torch.optim.Adam([w], lr=self.lr)
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.steps, eta_min=self.lr / 10)
            found = torch.zeros(n, dtype=torch.bool, device=dev)
            prev = float("inf")
            check_every = max(self.steps // 10, 1)
            for step in range(self.steps):
                with torch.enable_grad():
                    adv = (torch.tanh(w) + 1) / 2
                    l2sq = (adv - x).flatten(1).pow(2).sum(1)
                    logits = self.logits(adv)
                    loss = (l2sq + const * self._f(logits, y, target)).sum()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                queries += 1
                with torch.no_grad():
                    ok = self.is_success(logits.argmax(1), y, target)
                    if self.kappa > 0:
                        ok &= self._f(logits, y, target) <= -self.kappa + 1e-6
                    improved = ok & (l2sq < best_l2)
                    best_l2 = torch.where(improved, l2sq, best_l2)
                    best_adv[improved] = adv[improved].detach()
                    found |= ok
                opt.step()
                schedule.step()
                self._report(round_ * self.steps + step + 1, total, {"success": float((best_l2 < float("inf")).float().mean())})
                if self.abort_early and step % check_every == 0:
                    if loss.item() > prev * 0.9999:
                        break
                    prev = loss.item()
            w_start = w.detach()  # warm start: the next round continues from here with the new c
            with torch.no_grad():
                upper = torch.where(found, torch.minimum(upper, const), upper)
                lower = torch.where(found, lower, torch.maximum(lower, const))
                bracketed = upper < 1e9
                const = torch.where(found | bracketed, (lower + upper) / 2, const * 10)
        return best_adv, queries

    def describe(self):
        return {**super().describe(), "steps": self.steps, "binary_search_steps": self.binary_search_steps,
                "initial_const": self.initial_const, "lr": self.lr, "kappa": self.kappa}
