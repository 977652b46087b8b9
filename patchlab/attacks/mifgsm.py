"""The momentum family, made for transfer to unseen models: MI-FGSM (Dong 2018), DI-FGSM (Xie 2019) and TI-FGSM
(Dong 2019)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from patchlab.attacks.iterative import LinfIterativeAttack
from patchlab.errors import PatchlabError, check_unit_interval, positive_float, positive_int


class MIFGSM(LinfIterativeAttack):
    """Momentum iterative FGSM: g ← μ·g + ∇/mean|∇|; x ← Π(x + α·sign(g)). α defaults to ε/steps."""

    name = "mifgsm"
    title = "MI-FGSM (momentum)"
    default_decay = 1.0
    default_diversity = 0.0

    def __init__(self, model, eps=None, *, decay: float | None = None, diversity_prob: float | None = None,
                 resize_rate: float = 0.9, **kwargs):
        self.decay = positive_float(self.default_decay if decay is None else decay, "decay", allow_zero=True)
        self.diversity_prob = check_unit_interval(
            "diversity_prob", self.default_diversity if diversity_prob is None else diversity_prob)
        self.resize_rate = check_unit_interval("resize_rate", resize_rate, allow_zero=False)
        super().__init__(model, eps, **kwargs)

    def _default_alpha(self) -> float:
        return self.eps / self.steps

    def _smooth(self, grad: torch.Tensor) -> torch.Tensor:
        return grad

    def _direction(self, grad, state):
        grad = self._smooth(grad)
        grad = grad / grad.abs().mean(dim=tuple(range(1, grad.dim())), keepdim=True).clamp_min(1e-12)
        if "momentum" in state:
            grad = grad + self.decay * state["momentum"]
        state["momentum"] = grad
        return grad.sign()

    def _transform(self, x, gen):
        """Input diversity: with probability p, shrink to a random size in [rate·S, S) and pad back to S at random."""
        if self.diversity_prob <= 0:
            return None
        p = self.diversity_prob
        size = x.shape[-1]
        low = int(size * self.resize_rate)
        if low >= size:
            return None

        def rand_int(lo, hi):
            return int(torch.randint(lo, hi, (1,), generator=gen, device=gen.device if gen else "cpu")) if gen \
                else int(torch.randint(lo, hi, (1,)))

        def rand_uniform():
            return float(torch.rand((1,), generator=gen, device=gen.device)) if gen else float(torch.rand(1))

        if rand_uniform() >= p:
            return None
        rnd = rand_int(low, size)
        top, left = rand_int(0, size - rnd + 1), rand_int(0, size - rnd + 1)

        def diverse(z):
            small = F.interpolate(z, size=(rnd, rnd), mode="bilinear", align_corners=False)
            return F.pad(small, (left, size - rnd - left, top, size - rnd - top), value=0.0)

        return diverse

    def describe(self):
        return {**super().describe(), "decay": self.decay, "diversity_prob": self.diversity_prob}


class DIFGSM(MIFGSM):
    """Diverse-inputs FGSM: random resize-and-pad before each gradient (p = 0.5), momentum off by default."""

    name = "difgsm"
    title = "DI-FGSM (input diversity)"
    default_decay = 0.0
    default_diversity = 0.5


def gaussian_kernel(size: int = 15, nsig: float = 3.0) -> torch.Tensor:
    """The TI paper's kernel: outer product of a normal pdf sampled on [-nsig, nsig], summing to 1."""
    xs = torch.linspace(-nsig, nsig, size, dtype=torch.float64)
    k1 = torch.exp(-0.5 * xs ** 2) / math.sqrt(2 * math.pi)
    k2 = torch.outer(k1, k1)
    return (k2 / k2.sum()).float()


class TIFGSM(MIFGSM):
    """Translation-invariant FGSM: the gradient is smoothed by a Gaussian kernel (15 px, 3σ); with input
    diversity (p = 0.5) and no momentum by default, like torchattacks."""

    name = "tifgsm"
    title = "TI-FGSM (translation-invariant)"
    default_decay = 0.0
    default_diversity = 0.5

    def __init__(self, model, eps=None, *, kernel_size: int = 15, nsig: float = 3.0, **kwargs):
        kernel_size = positive_int(kernel_size, "kernel_size")
        if kernel_size % 2 == 0:
            raise PatchlabError(f"kernel_size must be odd, got {kernel_size}")
        self.kernel = gaussian_kernel(kernel_size, positive_float(nsig, "nsig"))
        super().__init__(model, eps, **kwargs)

    def _smooth(self, grad):
        c = grad.shape[1]
        k = self.kernel.to(grad.device, grad.dtype).expand(c, 1, *self.kernel.shape)
        return F.conv2d(grad, k, padding=self.kernel.shape[-1] // 2, groups=c)
