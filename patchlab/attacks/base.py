"""The shared attack base: ε parsing, target modes, losses, norms and the `AttackResult` every attack returns."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field, fields
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from patchlab.errors import PatchlabError, parse_eps, positive_float, positive_int  # noqa: F401 (used by attacks)
from patchlab.progress import ProgressFn


@dataclass
class AttackResult:
    """What every attack returns. Tensors live on the model's device.

    `queries` counts gradient evaluations per example (one forward + backward through the model, or one backward
    for each class gradient in DeepFool/UAP); forward-only checks are not counted. Attacks that stop early
    report the largest count in the batch.
    """

    adv: torch.Tensor          # (N, C, H, W) in [0, 1]
    success: torch.Tensor      # (N,) bool: misclassified (untargeted) or classified as the target (targeted)
    linf: torch.Tensor         # (N,) Linf norm of adv - images
    l2: torch.Tensor           # (N,) L2 norm of adv - images
    queries: int
    labels: torch.Tensor       # (N,) true labels used for the untargeted criterion
    adv_pred: torch.Tensor     # (N,) top-1 class of the adversarial images
    target: torch.Tensor | None = None  # (N,) target classes in targeted / least-likely mode
    extra: dict = field(default_factory=dict)

    @property
    def success_rate(self) -> float:
        return float(self.success.float().mean()) if len(self.success) else 0.0

    @classmethod
    def concat(cls, parts: list["AttackResult"]) -> "AttackResult":
        """One result from the results of consecutive batches (queries: the largest per-example count)."""
        joined = {}
        for f in fields(cls):
            values = [getattr(p, f.name) for p in parts]
            if f.name == "queries":
                joined[f.name] = max(values)
            elif f.name == "extra":
                joined[f.name] = {}
            else:
                joined[f.name] = None if values[0] is None else torch.cat(values)
        return cls(**joined)


def model_device(model: nn.Module) -> torch.device:
    dev = getattr(model, "device", None)
    if isinstance(dev, torch.device):
        return dev
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def model_labels(model: nn.Module) -> list[str] | None:
    return getattr(model, "labels", None)


def resolve_class(model: nn.Module, query: int | str, num_classes: int | None = None) -> int:
    """A class index from an int, an index string, a wnid or a class name (with 'did you mean')."""
    from patchlab.data.classes import imagenet_classes, lookup_class

    labels = model_labels(model)
    if labels is None:
        if num_classes is None:
            raise PatchlabError("this model has no class names; give the target as a class index")
        labels = [str(i) for i in range(num_classes)]
    index = imagenet_classes()
    wnids = index.wnids if tuple(labels) == index.names else None
    return lookup_class(query, labels, wnids)


def norms(delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flat = delta.detach().flatten(1)
    return flat.abs().amax(1), flat.norm(dim=1)


def l2_normalize(v: torch.Tensor, tiny: float = 1e-12) -> torch.Tensor:
    n = v.flatten(1).norm(dim=1).clamp_min(tiny)
    return v / n.view(-1, *([1] * (v.dim() - 1)))


def project_l2(delta: torch.Tensor, eps: float) -> torch.Tensor:
    n = delta.flatten(1).norm(dim=1)
    factor = (eps / n.clamp_min(1e-12)).clamp(max=1.0)
    return delta * factor.view(-1, *([1] * (delta.dim() - 1)))


def margin_loss(logits: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
    """logit[cls] - max other logit, per example."""
    true = logits.gather(1, cls[:, None]).squeeze(1)
    other = logits.scatter(1, cls[:, None], float("-inf")).amax(1)
    return true - other


class Attack(abc.ABC):
    """Base of every attack. Subclasses implement `_run(x, y, target) -> (adv, queries)`.

    Modes: untargeted (default); targeted with `target=` a class index/name (or a per-example tensor);
    least-likely with `least_likely=True` (target = the class the model finds least likely on the clean image).
    Labels may be None: then the model's own predictions are used (avoids label leaking).
    """

    name = "attack"
    title = "attack"             # display name (the app's attack list)
    norm = "linf"
    supports_targeted = True
    uses_eps = True
    universal = False            # True: fits one perturbation to a set of images (UAP), not one per image
    default_eps: float | None = 8 / 255

    @classmethod
    def options(cls) -> set[str]:
        """The keyword options this attack takes (its and its bases' __init__ parameters)."""
        import inspect

        allowed: set[str] = set()
        for klass in cls.__mro__:
            if "__init__" in vars(klass):
                allowed |= {p for p in inspect.signature(klass.__init__).parameters
                            if p not in ("self", "model", "args", "kwargs")}
        return allowed

    def __init__(self, model: nn.Module, eps: float | str | None = None, *, target: int | str | torch.Tensor | None = None,
                 least_likely: bool = False, seed: int | None = None, batch_size: int | None = None,
                 progress: ProgressFn | None = None):
        self.model = model
        if self.uses_eps:
            self.eps = parse_eps(self.default_eps if eps is None else eps, self.norm)
        else:
            if eps is not None:
                raise PatchlabError(f"{self.name} takes no eps (it finds a minimal perturbation)")
            self.eps = None
        if target is not None and least_likely:
            raise PatchlabError("choose either a target class or least-likely mode, not both")
        if (target is not None or least_likely) and not self.supports_targeted:
            raise PatchlabError(f"{self.name} is untargeted only")
        self.target = self._resolve_target(target)
        self.least_likely = bool(least_likely)
        self.seed = seed
        self.batch_size = None if batch_size is None else positive_int(batch_size, "batch_size")
        self.progress = progress

    # -- mode helpers ---------------------------------------------------------------------------------------
    def _resolve_target(self, target):
        if target is None or isinstance(target, torch.Tensor):
            return target
        return resolve_class(self.model, target)

    @property
    def targeted(self) -> bool:
        return self.target is not None or self.least_likely

    @property
    def mode(self) -> str:
        return "least-likely" if self.least_likely else ("targeted" if self.target is not None else "untargeted")

    @property
    def device(self) -> torch.device:
        return model_device(self.model)

    def generator(self) -> torch.Generator | None:
        if self.seed is None:
            return None
        g = torch.Generator(device=self.device)
        g.manual_seed(int(self.seed))
        return g

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def loss(self, logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        """Cross-entropy to ascend: CE(y) untargeted, -CE(target) targeted (mean over the batch, as torchattacks)."""
        if target is None:
            return F.cross_entropy(logits, y)
        return -F.cross_entropy(logits, target)

    def input_grad(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None,
                   transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(∇_x loss, logits) with gradients only for the input (model parameters stay frozen)."""
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = self.logits(transform(x) if transform else x)
            loss = self.loss(logits, y, target)
            (grad,) = torch.autograd.grad(loss, x)
        return grad, logits.detach()

    def is_success(self, pred: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        return pred != y if target is None else pred == target

    def _report(self, step: int, total: int, metrics: dict | None = None) -> None:
        if self.progress is not None:
            self.progress(step, total, metrics or {})

    # -- the call ----------------------------------------------------------------------------------------------
    def _prepare(self, images: torch.Tensor, labels) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not isinstance(images, torch.Tensor):
            raise PatchlabError("images must be a tensor (N, C, H, W) in [0, 1]")
        if images.dim() == 3:
            images = images.unsqueeze(0)
        if images.dim() != 4:
            raise PatchlabError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
        if not images.is_floating_point():
            raise PatchlabError("images must be float tensors in [0, 1]")
        x = images.detach().to(self.device, torch.float32)
        if x.numel() and (float(x.min()) < 0 or float(x.max()) > 1):
            raise PatchlabError(f"images must lie in [0, 1] (got min {float(x.min()):.3g}, max {float(x.max()):.3g}); "
                                "the model normalises inside")
        size = getattr(self.model, "input_size", None)
        if size is not None and tuple(x.shape[-2:]) != (size, size):
            raise PatchlabError(f"images are {x.shape[-2]}x{x.shape[-1]} but {getattr(self.model, 'name', 'the model')} "
                                f"takes {size}x{size}; use patchlab.models.preprocess first")
        if labels is None:
            y = None
        else:
            y = torch.as_tensor(labels).to(self.device, torch.long).reshape(-1)
            if len(y) == 1 and len(x) > 1:
                y = y.expand(len(x))
            if len(y) != len(x):
                raise PatchlabError(f"{len(x)} images but {len(y)} labels")
        return x, y

    def _targets(self, clean_logits: torch.Tensor | None, n: int) -> torch.Tensor | None:
        if self.least_likely:
            return clean_logits.argmin(1)
        if self.target is None:
            return None
        t = torch.as_tensor(self.target, device=self.device, dtype=torch.long).reshape(-1)
        if len(t) == 1:
            t = t.expand(n)
        if len(t) != n:
            raise PatchlabError(f"{n} images but {len(t)} targets")
        labels = model_labels(self.model)
        if labels is not None and (int(t.min()) < 0 or int(t.max()) >= len(labels)):
            raise PatchlabError(f"target class out of range (0..{len(labels) - 1})")
        return t.clone()

    def __call__(self, images: torch.Tensor, labels: torch.Tensor | list | int | None = None) -> AttackResult:
        x, y = self._prepare(images, labels)
        if self.batch_size and len(x) > self.batch_size:
            parts = [self._attack_batch(x[i:i + self.batch_size], None if y is None else y[i:i + self.batch_size])
                     for i in range(0, len(x), self.batch_size)]
            return AttackResult.concat(parts)
        return self._attack_batch(x, y)

    def _attack_batch(self, x: torch.Tensor, y: torch.Tensor | None) -> AttackResult:
        needs_clean = y is None or self.least_likely
        clean_logits = None
        if needs_clean:
            with torch.no_grad():
                clean_logits = self.logits(x)
        if y is None:
            y = clean_logits.argmax(1)
        target = self._targets(clean_logits, len(x))
        adv, queries = self._run(x, y, target)
        return self._result(x, adv, y, target, queries)

    def _result(self, x: torch.Tensor, adv: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None,
                queries: int, extra: dict | None = None) -> AttackResult:
        """The AttackResult of adversarial images `adv` for clean images `x` (every attack's result is built here)."""
        adv = adv.detach().clamp(0, 1).contiguous()
        with torch.no_grad():
            pred = self.logits(adv).argmax(1)
        linf, l2 = norms(adv - x)
        return AttackResult(adv=adv, success=self.is_success(pred, y, target), linf=linf, l2=l2, queries=int(queries),
                            labels=y, adv_pred=pred, target=target, extra=extra or {})

    @abc.abstractmethod
    def _run(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> tuple[torch.Tensor, int]:
        """Return (adversarial images, gradient evaluations per example)."""

    def with_eps(self, eps: float) -> "Attack":
        """A shallow copy of this attack at another ε (for accuracy-vs-ε curves)."""
        import copy

        clone = copy.copy(self)
        clone.eps = parse_eps(eps, self.norm)
        clone._on_eps_change()
        return clone

    def _on_eps_change(self) -> None:
        """Hook for attacks whose derived settings (e.g. step size) depend on ε."""

    def describe(self) -> dict:
        return {"attack": self.name, "norm": self.norm, "eps": self.eps, "mode": self.mode,
                "target": None if self.target is None or isinstance(self.target, torch.Tensor) else int(self.target)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v}' for k, v in self.describe().items())})"

