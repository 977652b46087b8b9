"""The shared loop of iterative gradient attacks (BIM, PGD, MI/DI/TI-FGSM): init, step, project, restarts."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from patchlab.attacks.base import Attack, l2_normalize, positive_float, positive_int, project_l2
from patchlab.errors import parse_fraction


class IterativeAttack(Attack):
    """Iterate x ← Π(x + α·direction(∇)). Subclasses pick the direction, the projection and the start.

    `restarts` > 1 reruns (from fresh random starts) only the examples not yet fooled, keeping per example the
    first success or else the run with the highest loss.

    `early_stop=True` freezes each example at its first successful iterate (checked on the logits the gradient
    step computes anyway), so fooled examples cost nothing more; the result is then the first adversarial found
    rather than the last iterate. Off by default (Madry/Kurakin semantics, bit-compatible with torchattacks).
    """

    default_steps = 10
    random_start_default = False

    def __init__(self, model, eps=None, *, steps: int | None = None, alpha: float | str | None = None,
                 random_start: bool | None = None, restarts: int = 1, early_stop: bool = False, **kwargs):
        super().__init__(model, eps, **kwargs)
        self._steps_given = None if steps is None else positive_int(steps, "steps")
        self._alpha_given = None if alpha is None else self._parse_alpha(alpha)
        self.random_start = self.random_start_default if random_start is None else bool(random_start)
        self.restarts = positive_int(restarts, "restarts")
        self.early_stop = bool(early_stop)
        self._on_eps_change()

    def _parse_alpha(self, alpha) -> float:
        if self.norm == "linf":
            return parse_fraction(alpha, "alpha")
        from patchlab.attacks.base import parse_eps

        return positive_float(parse_eps(alpha, "l2", "alpha"), "alpha")

    def _on_eps_change(self) -> None:
        self.steps = self._steps_given or self._default_steps()
        self.alpha = self._alpha_given if self._alpha_given is not None else self._default_alpha()

    def _default_steps(self) -> int:
        return self.default_steps

    def _default_alpha(self) -> float:
        return 2.5 * self.eps / self.steps  # Madry et al.'s rule

    # -- pieces a subclass may change ----------------------------------------------------------------------
    def _init(self, x: torch.Tensor, gen) -> torch.Tensor:
        if not self.random_start:
            return x.clone()
        if self.norm == "linf":
            noise = torch.rand(x.shape, generator=gen, device=x.device, dtype=x.dtype) * (2 * self.eps) - self.eps
            return (x + noise).clamp(0, 1)
        delta = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
        radius = torch.rand((len(x),) + (1,) * (x.dim() - 1), generator=gen, device=x.device, dtype=x.dtype)
        return (x + l2_normalize(delta) * radius * self.eps).clamp(0, 1)

    def _transform(self, x: torch.Tensor, gen):
        return None

    def _direction(self, grad: torch.Tensor, state: dict) -> torch.Tensor:
        return grad.sign() if self.norm == "linf" else l2_normalize(grad)

    def _project(self, adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.norm == "linf":
            delta = torch.clamp(adv - x, min=-self.eps, max=self.eps)
        else:
            delta = project_l2(adv - x, self.eps)
        return torch.clamp(x + delta, min=0, max=1)

    def _step(self, adv: torch.Tensor, grad: torch.Tensor, x: torch.Tensor, state: dict) -> torch.Tensor:
        """Π(adv + α·direction(∇)). For the plain Linf step this runs in place on the gradient buffer (ours, fresh
        from autograd): bit-identical to the out-of-place expression, without its five batch-sized temporaries,
        whose allocation and page faults cost more than the arithmetic on a CPU."""
        if self.norm == "linf" and type(self)._direction is IterativeAttack._direction and \
                type(self)._project is IterativeAttack._project:
            return grad.sign_().mul_(self.alpha).add_(adv).sub_(x).clamp_(-self.eps, self.eps).add_(x).clamp_(0, 1)
        return self._project(adv.detach() + self.alpha * self._direction(grad, state), x).detach()

    # -- the loop ------------------------------------------------------------------------------------------
    def _descend(self, x, y, target, gen, run: int) -> torch.Tensor:
        adv = self._init(x, gen)
        state: dict = {}
        total = self.steps * self.restarts
        active = None  # indices still being attacked (early_stop)
        for step in range(self.steps):
            if active is None:
                transform = self._transform(adv, gen)
                grad, logits = self.input_grad(adv, y, target, transform)
                if self.early_stop:
                    if transform is not None:
                        with torch.no_grad():
                            logits = self.logits(adv)
                    hit = self.is_success(logits.argmax(1), y, target)
                    if bool(hit.any()):
                        active = (~hit).nonzero().squeeze(1)
                        self._freeze_state(state, active)
                        grad = grad[active]
                if active is None:
                    adv = self._step(adv, grad, x, state)
                    self._report(run * self.steps + step + 1, total, {})
                    continue
            else:
                sub_t = None if target is None else target[active]
                transform = self._transform(adv[active], gen)
                grad, logits = self.input_grad(adv[active], y[active], sub_t, transform)
                if transform is not None:
                    with torch.no_grad():
                        logits = self.logits(adv[active])
                hit = self.is_success(logits.argmax(1), y[active], sub_t)
                if bool(hit.any()):
                    self._freeze_state(state, (~hit).nonzero().squeeze(1))
                    grad, active = grad[~hit], active[~hit]
            if len(active) == 0:
                break
            adv[active] = self._project(adv[active] + self.alpha * self._direction(grad, state), x[active]).detach()
            self._report(run * self.steps + step + 1, total, {"active": len(active)})
        return adv

    @staticmethod
    def _freeze_state(state: dict, keep: torch.Tensor) -> None:
        for key, value in state.items():
            state[key] = value[keep]

    def _per_example_loss(self, logits, y, target) -> torch.Tensor:
        if target is None:
            return F.cross_entropy(logits, y, reduction="none")
        return -F.cross_entropy(logits, target, reduction="none")

    def _run(self, x, y, target):
        gen = self.generator()
        best = self._descend(x, y, target, gen, 0)
        if self.restarts == 1:
            return best, self.steps
        with torch.no_grad():
            logits = self.logits(best)
        done = self.is_success(logits.argmax(1), y, target)
        best_loss = self._per_example_loss(logits, y, target)
        runs = 1
        for run in range(1, self.restarts):
            todo = (~done).nonzero().squeeze(1)
            if len(todo) == 0:
                break
            runs += 1
            t = None if target is None else target[todo]
            adv = self._descend(x[todo], y[todo], t, gen, run)
            with torch.no_grad():
                logits = self.logits(adv)
            ok = self.is_success(logits.argmax(1), y[todo], t)
            loss = self._per_example_loss(logits, y[todo], t)
            better = ok | (loss > best_loss[todo])
            idx = todo[better]
            best[idx] = adv[better]
            best_loss[idx] = loss[better]
            done[todo[ok]] = True
        return best, self.steps * runs

    def describe(self) -> dict:
        return {**super().describe(), "steps": self.steps, "alpha": self.alpha, "random_start": self.random_start,
                "restarts": self.restarts}
