"""Universal adversarial perturbation (Moosavi-Dezfooli et al. 2017): one δ that fools most images of a set."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from patchlab.attacks.base import Attack, project_l2
from patchlab.attacks.deepfool import deepfool_step
from patchlab.errors import PatchlabError, check_unit_interval, positive_float, positive_int


@dataclass
class UniversalFit:
    perturbation: torch.Tensor   # (C, H, W)
    fooling_rate: float          # fraction of the fit images whose prediction changes
    passes: int
    queries: int                 # gradient evaluations in total


class UniversalPerturbation(Attack):
    """Algorithm 1 of the paper, batched: for the images that v does not yet fool, a few DeepFool steps at x + v
    give a minimal extra perturbation; each is added to v and v is projected back onto the ε-ball (Linf by
    default, ε = 10/255 as in the paper). Passes over the set stop when the fooling rate reaches 1 - δ.

    `fit(images)` learns v; calling the attack applies v (fitting on the given images first if not yet fitted).
    Success is judged against the clean prediction (fooling rate), as in the paper, when labels are None.
    """

    name = "uap"
    title = "Universal perturbation (UAP)"
    supports_targeted = False
    universal = True
    default_eps = 10 / 255

    def __init__(self, model, eps=None, *, norm: str = "linf", max_passes: int = 5, delta: float = 0.2,
                 deepfool_steps: int = 10, overshoot: float = 0.02, num_classes: int = 10, fit_batch: int = 16,
                 **kwargs):
        if norm not in ("linf", "l2"):
            raise PatchlabError(f"universal perturbation norm must be 'linf' or 'l2', got {norm!r}")
        self.norm = norm
        super().__init__(model, eps, **kwargs)
        self.max_passes = positive_int(max_passes, "max_passes")
        self.delta = check_unit_interval("delta", delta)
        self.deepfool_steps = positive_int(deepfool_steps, "deepfool_steps")
        self.overshoot = positive_float(overshoot, "overshoot", allow_zero=True)
        self.num_classes = positive_int(num_classes, "num_classes", minimum=2)
        self.fit_batch = positive_int(fit_batch, "fit_batch")
        self.perturbation: torch.Tensor | None = None
        self.fit_result: UniversalFit | None = None

    def _project(self, v: torch.Tensor) -> torch.Tensor:
        if self.norm == "linf":
            return v.clamp(-self.eps, self.eps)
        return project_l2(v[None], self.eps)[0]

    @torch.no_grad()
    def _predict(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        out = []
        for i in range(0, len(x), 64):
            out.append(self.logits((x[i:i + 64] + v).clamp(0, 1)).argmax(1))
        return torch.cat(out)

    def fit(self, images: torch.Tensor) -> UniversalFit:
        x, _ = self._prepare(images, None)
        clean = self._predict(x, torch.zeros_like(x[0]))
        v = torch.zeros_like(x[0])
        gen = self.generator()
        queries = 0
        rate = 0.0
        passes = 0
        for passes in range(1, self.max_passes + 1):
            order = torch.randperm(len(x), generator=gen, device=gen.device) if gen is not None else torch.randperm(len(x))
            for start in range(0, len(x), self.fit_batch):
                idx = order[start:start + self.fit_batch].to(x.device)
                xb, yb = x[idx], clean[idx]
                with torch.no_grad():
                    logits = self.logits((xb + v).clamp(0, 1))
                todo = logits.argmax(1) == yb
                if not bool(todo.any()):
                    continue
                xb, yb, logits = xb[todo], yb[todo], logits[todo]
                k = min(self.num_classes, logits.shape[1])
                others = logits.scatter(1, yb[:, None], float("-inf")).topk(k - 1, dim=1).indices
                cands = torch.cat([yb[:, None], others], 1)
                r_tot = torch.zeros_like(xb)
                active = torch.arange(len(xb), device=x.device)
                for _ in range(self.deepfool_steps):
                    if len(active) == 0:
                        break
                    adv = (xb[active] + v + (1 + self.overshoot) * r_tot[active]).clamp(0, 1)
                    r, still, q = deepfool_step(self.logits, adv, yb[active], cands[active], self.norm)
                    queries += q * len(active)
                    active_keep = active[still]
                    r_tot[active_keep] += r[still]
                    active = active_keep
                # add each image's minimal perturbation in turn, projecting after each (as in Algorithm 1)
                for r in r_tot:
                    if float(r.abs().max()) > 0:
                        v = self._project(v + (1 + self.overshoot) * r)
            fooled = self._predict(x, v) != clean
            rate = float(fooled.float().mean())
            self._report(passes, self.max_passes, {"fooling_rate": rate})
            if rate >= 1 - self.delta:
                break
        self.perturbation = v.detach()
        self.fit_result = UniversalFit(self.perturbation, rate, passes, queries)
        return self.fit_result

    def __call__(self, images, labels=None):
        if self.perturbation is None:
            self.fit(images)
        return super().__call__(images, labels)

    def _run(self, x, y, target):
        v = self.perturbation.to(x.device)
        if v.shape != x.shape[1:]:
            raise PatchlabError(f"the perturbation is {tuple(v.shape)} but the images are {tuple(x.shape[1:])}")
        return x + v, 0

    def with_eps(self, eps):
        clone = super().with_eps(eps)
        clone.perturbation = None
        clone.fit_result = None
        return clone

    def describe(self):
        out = {**super().describe(), "max_passes": self.max_passes, "delta": self.delta}
        if self.fit_result is not None:
            out["fit_fooling_rate"] = self.fit_result.fooling_rate
        return out
