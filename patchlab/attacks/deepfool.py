"""DeepFool (Moosavi-Dezfooli, Fawzi and Frossard 2016), L2 and Linf, batched over examples."""

from __future__ import annotations

import torch

from patchlab.attacks.base import Attack
from patchlab.errors import PatchlabError, positive_float, positive_int


def deepfool_step(model, x: torch.Tensor, label: torch.Tensor, candidates: torch.Tensor, norm: str):
    """One linearisation step at x: (perturbation r, still-correct mask, gradient evaluations).

    `candidates` (N, K) holds the classes to consider, column 0 being the current label.
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        still = logits.argmax(1) == label
        f0 = logits.gather(1, label[:, None])
        grads, diffs = [], []
        for k in range(1, candidates.shape[1]):
            fk = logits.gather(1, candidates[:, k:k + 1])
            diff = (fk - f0).squeeze(1)
            (g,) = torch.autograd.grad(diff.sum(), x, retain_graph=k < candidates.shape[1] - 1)
            grads.append(g)
            diffs.append(diff.detach())
    w = torch.stack(grads, 1)                     # (N, K-1, C, H, W)
    f = torch.stack(diffs, 1)                     # (N, K-1)
    wf = w.flatten(2)
    dual = wf.norm(dim=2) if norm == "l2" else wf.abs().sum(2)
    dist = (f.abs() + 1e-4) / dual.clamp_min(1e-12)
    best = dist.argmin(1)
    pick = torch.arange(len(x), device=x.device)
    wb, db = w[pick, best], dist[pick, best]
    shape = (-1,) + (1,) * (x.dim() - 1)
    if norm == "l2":
        r = db.view(shape) * wb / wb.flatten(1).norm(dim=1).clamp_min(1e-12).view(shape)
    else:
        r = db.view(shape) * wb.sign()
    return r.detach(), still, candidates.shape[1] - 1


class DeepFool(Attack):
    """Minimal perturbation by iterated linearisation towards the nearest of the top `num_classes` classes.

    Untargeted only. `norm` is "l2" (default) or "linf". Examples leave the loop once misclassified;
    the total perturbation is scaled by (1 + overshoot).
    """

    name = "deepfool"
    title = "DeepFool"
    uses_eps = False
    supports_targeted = False

    def __init__(self, model, eps=None, *, steps: int = 50, overshoot: float = 0.02, num_classes: int = 10,
                 norm: str = "l2", **kwargs):
        super().__init__(model, eps, **kwargs)
        if norm not in ("l2", "linf"):
            raise PatchlabError(f"DeepFool norm must be 'l2' or 'linf', got {norm!r}")
        self.norm = norm
        self.steps = positive_int(steps, "steps")
        self.overshoot = positive_float(overshoot, "overshoot", allow_zero=True)
        self.num_classes = positive_int(num_classes, "num_classes", minimum=2)

    def _run(self, x, y, target):
        with torch.no_grad():
            logits = self.logits(x)
        k = min(self.num_classes, logits.shape[1])
        others = logits.scatter(1, y[:, None], float("-inf")).topk(k - 1, dim=1).indices
        candidates = torch.cat([y[:, None], others], 1)
        r_tot = torch.zeros_like(x)
        adv = x.clone()
        active = torch.arange(len(x), device=x.device)
        queries = 0
        for step in range(self.steps):
            if len(active) == 0:
                break
            r, still, q = deepfool_step(self.logits, adv[active], y[active], candidates[active], self.norm)
            if not bool(still.any()):
                break
            queries += q
            keep = active[still]
            r_tot[keep] += r[still]
            adv[keep] = (x[keep] + (1 + self.overshoot) * r_tot[keep]).clamp(0, 1)
            active = keep
            self._report(step + 1, self.steps, {"active": len(active)})
        return adv, queries

    def describe(self):
        return {**super().describe(), "steps": self.steps, "overshoot": self.overshoot, "num_classes": self.num_classes}
