"""Small digit classifiers (CNN, MLP, logistic regression) and one resumable training loop for them.

The transfer, defense, privacy and poisoning topics all train models on MNIST-sized data; they share these
builders and `fit`, so a checkpoint written by one loads in another. Inputs are (N, 1, S, S) in [0, 1]. No
BatchNorm anywhere: DP-SGD (Opacus) needs per-sample gradients, which BatchNorm mixes across the batch.

    from patchlab.models.digits import make_digits_model, fit, accuracy
    net = make_digits_model("cnn", size=28)
    fit(net, x_train, y_train, epochs=5, checkpoint="runs/cnn.fit.pt")     # resumes if the file exists
    accuracy(net, x_test, y_test)
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from patchlab.artifacts import atomic_path, load_keyed_checkpoint, save_torch
from patchlab.errors import PatchlabError
from patchlab.progress import ProgressFn
from patchlab.registry import Registry

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]

CKPT_FORMAT = "patchlab-digits-fit-1"
_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "elu": nn.ELU}


def _activation(name: str) -> nn.Module:
    if name not in _ACTIVATIONS:
        raise PatchlabError(f"unknown activation '{name}' (choose from {', '.join(_ACTIVATIONS)})")
    return _ACTIVATIONS[name]()


class _DigitsBase(nn.Module):
    """Common attributes the attacks and the app read: `labels`, `input_size`, `name`, `config`."""

    kind = ""

    def _setup(self, size: int, channels: int, num_classes: int, **extra) -> None:
        self.input_size = int(size)
        self.labels = [str(i) for i in range(num_classes)]
        self.config = {"kind": self.kind, "size": int(size), "channels": int(channels),
                       "num_classes": int(num_classes), **extra}
        self.name = f"digits-{self.kind}"

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate representation (the input of the last linear layer)."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class DigitsCNN(_DigitsBase):
    """Two 5x5 conv + max-pool blocks and two linear layers, as in the MNIST models of Papernot 2016/2017 and
    Madry 2018 (at a smaller width by default)."""

    kind = "cnn"

    def __init__(self, size: int = 28, channels: int = 1, num_classes: int = 10, width: int = 32,
                 hidden: int = 128, activation: str = "relu"):
        super().__init__()
        self._setup(size, channels, num_classes, width=int(width), hidden=int(hidden), activation=activation)
        s = size // 4
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 5, padding=2), _activation(activation), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 5, padding=2), _activation(activation), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(2 * width * s * s, hidden), _activation(activation))
        self.head = nn.Linear(hidden, num_classes)


class DigitsStridedCNN(_DigitsBase):
    """Two 4x4 stride-2 convolutions (no pooling) and two linear layers: the MNIST model of Wong & Kolter 2018 and
    Wong, Rice & Kolter 2020 (16 and 32 channels, 100 hidden units by default). About 15x cheaper per pass than
    `DigitsCNN`, which is what buys PGD adversarial training its many epochs on a CPU."""

    kind = "strided"

    def __init__(self, size: int = 28, channels: int = 1, num_classes: int = 10, width: int = 16,
                 hidden: int = 100, activation: str = "relu"):
        super().__init__()
        self._setup(size, channels, num_classes, width=int(width), hidden=int(hidden), activation=activation)
        s = size // 4
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 4, stride=2, padding=1), _activation(activation),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), _activation(activation),
            nn.Flatten(), nn.Linear(2 * width * s * s, hidden), _activation(activation))
        self.head = nn.Linear(hidden, num_classes)


class DigitsDPCNN(_DigitsBase):
    """The small CNN that DP-SGD work on MNIST uses (TF-Privacy's tutorial, Papernot et al. 2021, Opacus's MNIST
    example): 16 8x8 stride-2 filters, max-pool 2 stride 1, 32 4x4 stride-2 filters, max-pool, 32 hidden units.
    About 26k parameters and strided early layers, so per-sample gradients stay cheap. Needs size >= 16."""

    kind = "dpcnn"

    def __init__(self, size: int = 28, channels: int = 1, num_classes: int = 10, width: int = 16, hidden: int = 32,
                 activation: str = "tanh"):
        super().__init__()
        if size < 16:
            raise PatchlabError(f"the dpcnn model needs images of at least 16 px (got {size}); use 'cnn' for 8x8 "
                                "digits or resize them with resize_digits")
        self._setup(size, channels, num_classes, width=int(width), hidden=int(hidden), activation=activation)
        s1 = (size - 2) // 2 + 1 - 1          # conv 8x8/2 (padding 3), then max-pool 2/1
        s2 = (s1 - 4) // 2 + 1 - 1            # conv 4x4/2, then max-pool 2/1
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 8, stride=2, padding=3), _activation(activation), nn.MaxPool2d(2, 1),
            nn.Conv2d(width, 2 * width, 4, stride=2), _activation(activation), nn.MaxPool2d(2, 1),
            nn.Flatten(), nn.Linear(2 * width * s2 * s2, hidden), _activation(activation))
        self.head = nn.Linear(hidden, num_classes)


class DigitsScatterLinear(_DigitsBase):
    """A linear model on fixed ScatterNet features (Tramer & Boneh 2021): a wavelet scattering transform of order 2
    (kymatio; J scales, L angles, no trainable weights), per-image GroupNorm without parameters, one linear layer.
    `fixed_features` and `trainable` let DP-SGD compute the features once and train only the linear part."""

    kind = "scatter"

    def __init__(self, size: int = 28, channels: int = 1, num_classes: int = 10, J: int = 2, L: int = 8,
                 groups: int = 27):
        super().__init__()
        if size % (2 ** J):
            raise PatchlabError(f"the scatter model needs a size divisible by 2^J = {2 ** J} (got {size})")
        self._setup(size, channels, num_classes, J=int(J), L=int(L), groups=int(groups))
        feats = channels * (1 + J * L + L * L * J * (J - 1) // 2)
        if feats % groups:
            raise PatchlabError(f"groups={groups} must divide the {feats} scattering channels")
        side = size // 2 ** J
        self.feature_shape = (feats, side, side)
        self.trainable = nn.Sequential(nn.GroupNorm(groups, feats, affine=False), nn.Flatten(),
                                       nn.Linear(feats * side * side, num_classes))
        self._scattering = None  # built on first use; a plain attribute, so it is neither saved nor moved

    def _scatter_op(self):
        if self._scattering is None:
            try:  # the 2-D frontend only: `kymatio.torch` also imports the 3-D code, which needs scipy < 1.15
                from kymatio.scattering2d.frontend.torch_frontend import ScatteringTorch2D
            except ImportError:
                raise PatchlabError("the scatter model needs kymatio (pip install 'patchlab[privacy]')") from None
            J, L, size = self.config["J"], self.config["L"], self.config["size"]
            self.__dict__["_scattering"] = ScatteringTorch2D(J=J, shape=(size, size), L=L)  # not a submodule
        return self._scattering

    @torch.no_grad()
    def fixed_features(self, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        """(N, C, S, S) images -> (N, feats, S/2^J, S/2^J) scattering coefficients, on x's device."""
        op = self._scatter_op().to(x.device)
        out = [op(x[i:i + batch_size]).reshape(len(x[i:i + batch_size]), *self.feature_shape)
               for i in range(0, len(x), batch_size)]
        return torch.cat(out) if out else x.new_zeros((0, *self.feature_shape))

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return self.trainable[1](self.trainable[0](self.fixed_features(x)))

    def head(self, z: torch.Tensor) -> torch.Tensor:
        return self.trainable[2](z)


class DigitsMLP(_DigitsBase):
    kind = "mlp"

    def __init__(self, size: int = 28, channels: int = 1, num_classes: int = 10, hidden: int = 256,
                 activation: str = "relu"):
        super().__init__()
        self._setup(size, channels, num_classes, hidden=int(hidden), activation=activation)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(channels * size * size, hidden), _activation(activation))
        self.head = nn.Linear(hidden, num_classes)


class DigitsLogReg(_DigitsBase):
    """Multinomial logistic regression on raw pixels; `features` is the flattened image."""

    kind = "logreg"

    def __init__(self, size: int = 28, channels: int = 1, num_classes: int = 10):
        super().__init__()
        self._setup(size, channels, num_classes)
        self.body = nn.Flatten()
        self.head = nn.Linear(channels * size * size, num_classes)


DIGITS_MODELS: Registry[type[_DigitsBase]] = Registry("digits model")
for _cls in (DigitsCNN, DigitsMLP, DigitsLogReg, DigitsDPCNN, DigitsScatterLinear, DigitsStridedCNN):
    DIGITS_MODELS.register(_cls.kind, _cls)


def make_digits_model(kind: str, size: int = 28, seed: int | None = 0, **kwargs) -> _DigitsBase:
    """A freshly initialised digit model; `seed` fixes the initial weights (None: the global RNG)."""
    cls = DIGITS_MODELS.get(kind)
    if seed is None:
        return cls(size=size, **kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return cls(size=size, **kwargs)


def save_digits_model(model: _DigitsBase, path: str | Path, kind: str | None = None,
                      written_by: str | None = None) -> Path:
    """Weights as safetensors with the constructor settings in its metadata (loads without unpickling); with
    `kind`, tagged as that artifact kind (`patchlab.artifacts.identify` reads it back)."""
    from safetensors.torch import save_file

    from patchlab.artifacts import safetensors_tag

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"patchlab": json.dumps(model.config), **(safetensors_tag(kind, written_by) if kind else {})}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)
    return Path(path)


def load_digits_model(path: str | Path, device: str | torch.device = "cpu") -> _DigitsBase:
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise PatchlabError(f"{path}: model file not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})["patchlab"])
        state = load_file(str(path))
    except Exception:  # noqa: BLE001 - any failure to read is the same user error
        raise PatchlabError(f"{path}: not a patchlab digits model (.safetensors written by save_digits_model)") \
            from None
    kind = meta.pop("kind")
    model = make_digits_model(kind, seed=None, **meta)
    model.load_state_dict(state)
    return model.to(device).eval()


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    out = torch.cat([model(x[i:i + batch_size].to(dev)).float().cpu() for i in range(0, len(x), batch_size)])
    model.train(was_training)
    return out


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    if len(x) == 0:
        return 0.0
    return float((predict_logits(model, x, batch_size).argmax(1) == y.cpu()).float().mean())


@dataclass
class FitConfig:
    epochs: int = 5
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: str = "adam"        # "adam", "sgd" (momentum 0.9) or "lbfgs" (for small convex models, full batch:
                                   # each step up to 20 iterations with a strong-Wolfe line search)
    weight_decay: float = 0.0
    seed: int = 0
    lr_schedule: str = "constant"  # "constant" or "cosine" (per step, to 0 at the last step)

    def key(self, model: nn.Module, n: int, loss_name: str) -> str:
        payload = json.dumps({**asdict(self), "epochs": None, "n": n, "loss": loss_name,
                              "model": getattr(model, "config", type(model).__name__)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)  # one row per epoch: epoch, loss, train_accuracy, seconds
    seconds: float = 0.0
    resumed_from: int = 0
    stopped: bool = False


def cross_entropy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return F.cross_entropy(model(x), y)


def _optimizer(model: nn.Module, cfg: FitConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "lbfgs":  # weight decay is added to the loss (see fit)
        return torch.optim.LBFGS(params, lr=cfg.lr, max_iter=20, history_size=10, line_search_fn="strong_wolfe")
    raise PatchlabError(f"unknown optimizer '{cfg.optimizer}' (choose from adam, sgd, lbfgs)")


def _lbfgs_closure(model, opt, loss_fn, xb, yb, gen, weight_decay: float) -> torch.Tensor:
    """L-BFGS re-evaluates the objective in its line search: the loss plus weight decay as the penalty wd/2 |w|^2
    (whose gradient is what Adam's weight_decay adds)."""
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(model, xb, yb, gen)
    total = loss + 0.5 * weight_decay * sum((p * p).sum() for p in model.parameters() if p.requires_grad)
    total.backward()
    return total.detach()


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: FitConfig | None = None, *,
        loss_fn: LossFn = cross_entropy, progress: ProgressFn | None = None, checkpoint: str | Path | None = None,
        stop: threading.Event | None = None, **overrides) -> FitResult:
    """Train `model` in place on (x, y) with minibatches.

    Each epoch's shuffle and every random draw inside `loss_fn` come from a generator seeded by (seed, epoch), so a
    run resumed from its end-of-epoch checkpoint equals an uninterrupted one. With `checkpoint`, the model,
    optimiser and history are written (atomically) after every epoch, and an existing checkpoint made with the
    same settings is resumed; one made with other settings is refused. `loss_fn(model, xb, yb, gen)` replaces
    the plain cross-entropy (adversarial training passes its attack here). A set `stop` event ends the run after
    the current batch, saving nothing beyond the last finished epoch.
    """
    cfg = FitConfig(**{**asdict(config or FitConfig()), **overrides})
    if cfg.epochs < 1 or cfg.batch_size < 1 or not cfg.lr > 0:
        raise PatchlabError(f"fit: epochs and batch_size must be >= 1 and lr > 0 (got {cfg})")
    if len(x) != len(y) or len(x) == 0:
        raise PatchlabError(f"fit: {len(x)} images and {len(y)} labels")
    dev = next(model.parameters()).device
    opt = _optimizer(model, cfg)
    lbfgs = cfg.optimizer == "lbfgs"
    steps_per_epoch = (len(x) + cfg.batch_size - 1) // cfg.batch_size
    total_steps = steps_per_epoch * cfg.epochs
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps) if cfg.lr_schedule == "cosine"
             else None)
    key = cfg.key(model, len(x), getattr(loss_fn, "__name__", type(loss_fn).__name__))
    result = FitResult()
    ckpt = Path(checkpoint) if checkpoint else None
    state = load_keyed_checkpoint(ckpt, CKPT_FORMAT, key, "patchlab digits training")
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if sched is not None:
            sched.load_state_dict(json.loads(state["scheduler"]))
        result.history = json.loads(state["history"])
        result.resumed_from = len(result.history)
    start = time.perf_counter()
    prior = sum(r["seconds"] for r in result.history)
    for epoch in range(result.resumed_from, cfg.epochs):
        t0 = time.perf_counter()
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
        order = torch.randperm(len(x), generator=gen)
        model.train()
        loss_sum, correct, seen = 0.0, 0, 0
        with torch.random.fork_rng(devices=[]):  # dropout-like draws from the global RNG repeat on resume too
            torch.manual_seed(cfg.seed * 1_000_003 + epoch)
            for b in range(steps_per_epoch):
                idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
                xb, yb = x[idx].to(dev, non_blocking=True), y[idx].to(dev, non_blocking=True)
                if lbfgs:
                    loss = opt.step(lambda: _lbfgs_closure(model, opt, loss_fn, xb, yb, gen, cfg.weight_decay))
                else:
                    loss = loss_fn(model, xb, yb, gen)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                if sched is not None:
                    sched.step()
                loss_sum += float(loss.detach()) * len(idx)
                seen += len(idx)
                if progress is not None:
                    progress(epoch * steps_per_epoch + b + 1, total_steps,
                             {"epoch": epoch + 1, "loss": loss_sum / seen})
                if stop is not None and stop.is_set():
                    result.stopped = True
                    break
        if result.stopped:
            break
        with torch.no_grad():
            correct = (predict_logits(model, x).argmax(1) == y.cpu()).sum().item() if len(x) <= 20000 else -1
        result.history.append({"epoch": epoch + 1, "loss": loss_sum / max(seen, 1),
                               "train_accuracy": correct / len(x) if correct >= 0 else None,
                               "seconds": time.perf_counter() - t0})
        if ckpt is not None:
            save_torch({"format": CKPT_FORMAT, "key": key, "model": model.state_dict(),
                        "optimizer": opt.state_dict(), "history": json.dumps(result.history),
                        "scheduler": json.dumps(sched.state_dict() if sched is not None else {})}, ckpt)
    model.eval()
    result.seconds = prior + (time.perf_counter() - start)
    return result


def fit_self_training(train: Callable[[torch.Tensor, torch.Tensor], nn.Module], x: torch.Tensor, y: torch.Tensor,
                      unlabelled: torch.Tensor | None, rounds: int, threshold: float,
                      logits: Callable[[nn.Module, torch.Tensor], torch.Tensor] = predict_logits,
                      curriculum: bool = False) -> tuple[nn.Module, int]:
    """Self-training: `train(x, y)` fits a fresh model; then `rounds` times, the model labels `unlabelled`, and a
    fresh model is fitted on (x, y) plus the inputs it labelled with probability >= `threshold`; with `curriculum`
    (curriculum labelling, Cascante-Bonilla et al. 2021) round r of R keeps instead, per predicted class, the most
    confident r/R share of len(unlabelled)/classes inputs, so that the classes stay balanced and the last round
    labels about all of them. `logits(model, inputs)` gives its logits (default predict_logits). Returns (the last
    model, how many pseudo-labels it used)."""
    model, used = train(x, y), 0
    if unlabelled is None or not len(unlabelled) or (threshold <= 0 and not curriculum):
        return model, used
    for r in range(rounds):
        probs = logits(model, unlabelled).softmax(1)
        conf, guess = probs.max(1)
        if curriculum:
            k = round((r + 1) / rounds * len(unlabelled) / probs.shape[1])
            keep = torch.zeros(len(unlabelled), dtype=torch.bool)
            for c in guess.unique():
                members = torch.nonzero(guess == c).flatten()
                keep[members[conf[members].argsort(descending=True, stable=True)[:k]]] = True
        else:
            keep = conf >= threshold
        used = int(keep.sum())
        if not used:
            break
        model = train(torch.cat([x, unlabelled[keep]]), torch.cat([y, guess[keep]]))
    return model, used
