"""The shared loop of iterative gradient attacks (BIM, PGD, MI/DI/TI-FGSM), written once, and its norms.

As in Foolbox's `gradient_descent_base.py`: `IterativeAttack` is the loop (start, gradient, step, project, early
stop, restarts); `LinfIterativeAttack` and `L2IterativeAttack` are thin subclasses that give the random start,
the step direction and the projection of their norm. Attacks subclass one of them.
"""

from __future__ import annotations

import abc

import torch
import torch.nn.functional as F

from patchlab.attacks.base import Attack, l2_normalize, parse_eps, positive_float, positive_int, project_l2

STEP_RATIO = 2.5  # Madry et al.'s step size: α = 2.5·ε / steps


class IterativeAttack(Attack):
    """Iterate x ← Π(x + α·direction(∇)). Norm subclasses give `_random_start`, `_direction` and `_project`.

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
        return parse_eps(alpha, self.norm, "alpha")

    def _on_eps_change(self) -> None:
        self.steps = self._steps_given or self._default_steps()
        self.alpha = self._alpha_given if self._alpha_given is not None else self._default_alpha()

    def _default_steps(self) -> int:
        return self.default_steps

    def _default_alpha(self) -> float:
        return STEP_RATIO * self.eps / self.steps

    # -- what a norm gives -------------------------------------------------------------------------------------
    @abc.abstractmethod
    def _random_start(self, x: torch.Tensor, gen) -> torch.Tensor:
        """A random point of the ε-ball around x, inside [0, 1]."""

    @abc.abstractmethod
    def _direction(self, grad: torch.Tensor, state: dict) -> torch.Tensor:
        """The unit step of this norm along the gradient (`state` carries e.g. momentum between steps)."""

    @abc.abstractmethod
    def _project(self, adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Back onto the ε-ball around x, inside [0, 1]."""

    # -- what an attack may change -----------------------------------------------------------------------------
    def _transform(self, x: torch.Tensor, gen):
        """An input transform applied before each gradient (DI-FGSM's input diversity), or None."""
        return None

    def _step(self, adv: torch.Tensor, grad: torch.Tensor, x: torch.Tensor, state: dict) -> torch.Tensor:
        """Π(adv + α·direction(∇))."""
        return self._project(adv.detach() + self.alpha * self._direction(grad, state), x).detach()

    # -- the loop ------------------------------------------------------------------------------------------------
    def _descend(self, x, y, target, gen, run: int) -> torch.Tensor:
        adv = self._random_start(x, gen) if self.random_start else x.clone()
        state: dict = {}
        total = self.steps * self.restarts
        active = None  # indices still being attacked once early_stop has frozen some; None = all, no indexing
        for step in range(self.steps):
            xs, ys, ts, advs = (x, y, target, adv) if active is None else \
                (x[active], y[active], None if target is None else target[active], adv[active])
            transform = self._transform(advs, gen)
            grad, logits = self.input_grad(advs, ys, ts, transform)
            if self.early_stop:
                if transform is not None:
                    with torch.no_grad():
                        logits = self.logits(advs)
                hit = self.is_success(logits.argmax(1), ys, ts)
                if bool(hit.any()):
                    keep = (~hit).nonzero().squeeze(1)
                    self._freeze_state(state, keep)
                    active = keep if active is None else active[keep]
                    grad, xs, advs = grad[keep], xs[keep], advs[keep]
            if active is None:
                adv = self._step(adv, grad, x, state)
                self._report(run * self.steps + step + 1, total, {})
                continue
            if len(active) == 0:
                break
            adv[active] = self._step(advs, grad, xs, state)
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


class LinfIterativeAttack(IterativeAttack):
    """Linf: uniform start in the ε-cube, sign steps, clipping to [x - ε, x + ε] ∩ [0, 1]."""

    norm = "linf"

    def _random_start(self, x, gen):
        noise = torch.rand(x.shape, generator=gen, device=x.device, dtype=x.dtype) * (2 * self.eps) - self.eps
        return (x + noise).clamp(0, 1)

    def _direction(self, grad, state):
        return grad.sign()

    def _project(self, adv, x):
        delta = torch.clamp(adv - x, min=-self.eps, max=self.eps)
        return torch.clamp(x + delta, min=0, max=1)

    def _step(self, adv, grad, x, state):
        """The plain Linf step runs in place on the gradient buffer (ours, fresh from autograd): bit-identical to the
        out-of-place expression, without its five batch-sized temporaries, whose allocation and page faults cost
        more than the arithmetic on a CPU. Attacks that change the direction or the projection take the general
        step."""
        cls = type(self)
        if cls._direction is not LinfIterativeAttack._direction or cls._project is not LinfIterativeAttack._project:
            return super()._step(adv, grad, x, state)
        return grad.sign_().mul_(self.alpha).add_(adv).sub_(x).clamp_(-self.eps, self.eps).add_(x).clamp_(0, 1)


class L2IterativeAttack(IterativeAttack):
    """L2: a random direction at a uniform radius to start, steps along ∇/‖∇‖₂, projection onto the ε-ball."""

    norm = "l2"

    def _parse_alpha(self, alpha) -> float:
        return positive_float(parse_eps(alpha, "l2", "alpha"), "alpha")

    def _random_start(self, x, gen):
        delta = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
        radius = torch.rand((len(x),) + (1,) * (x.dim() - 1), generator=gen, device=x.device, dtype=x.dtype)
        return (x + l2_normalize(delta) * radius * self.eps).clamp(0, 1)

    def _direction(self, grad, state):
        return l2_normalize(grad)

    def _project(self, adv, x):
        return torch.clamp(x + project_l2(adv - x, self.eps), min=0, max=1)
