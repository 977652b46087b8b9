"""DP-SGD (Abadi et al. 2016) on Opacus: clip every example's gradient to `max_grad_norm`, add Gaussian noise of
std noise_multiplier * max_grad_norm to the sum, sample each logical batch by Poisson sampling, and let an
accountant (RDP or PRV) add up the privacy spent.

    from patchlab.privacy.dpsgd import DPSGDConfig, train_dpsgd
    net = make_digits_model("dpcnn", activation="tanh")
    result = train_dpsgd(net, x, y, DPSGDConfig(target_epsilon=2.0, epochs=15), checkpoint="runs/dp.dpsgd.pt")
    result.epsilon, result.noise_multiplier, accuracy(result.model, x_test, y_test)

The loop is Opacus's `PrivacyEngine` chain: `ModuleValidator` (BatchNorm cannot be made private: it is swapped for
GroupNorm), `make_private_with_epsilon` (or `make_private` with a fixed noise multiplier), `BatchMemoryManager`
(large logical batches in physical chunks). Per-sample clipping by book-keeping ("bk", the default:
patchlab.privacy.bk, one backward pass, on Opacus's ghost-clipping optimizer), torch's ExpandedWeights ("ew"),
Opacus's hooks ("hooks"), functorch, or Opacus's ghost clipping ("ghost", two backward passes): the same update to
float rounding (tested); `patchlab privacy bench speed` times them against a non-private epoch. Image models train
in the channels-last layout in the bk, ghost and hooks modes (CPU max-pooling is 5-10x faster there) and come back
in the default layout.

Repeatability: Poisson sampling and the noise draw from two generators reseeded from (seed, epoch) at the start of
every epoch, so a run resumed from its end-of-epoch checkpoint (model, optimiser, accountant history) equals an
uninterrupted one. Models with fixed feature extractors (`fixed_features` + `trainable`, e.g. the ScatterNet
linear model) get their features computed once; only the trainable part is made private.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from patchlab.artifacts import load_keyed_checkpoint, save_torch
from patchlab.errors import PatchlabError
from patchlab.privacy import fastclip

from patchlab.progress import ProgressFn
from patchlab.registry import Registry

CKPT_FORMAT = "patchlab-dpsgd-1"

# Opacus's accountants, by the name PrivacyEngine takes
ACCOUNTANTS: Registry[str] = Registry("accountant")
ACCOUNTANTS.register("rdp", "RDPAccountant", title="Rényi DP (Mironov 2017; moments accountant)",
                     aliases=("moments", "renyi"))
ACCOUNTANTS.register("prv", "PRVAccountant", title="Privacy random variables (Gopi et al. 2021)")

# how per-sample gradients are computed (Opacus's grad_sample_mode)
GRAD_SAMPLE_MODES: Registry[str] = Registry("grad_sample_mode")
# the default first: book-keeping clipping (patchlab.privacy.bk), the fastest here and the same update as the rest
GRAD_SAMPLE_MODES.register("bk", "bk", title="book-keeping clipping (one backward pass)",
                           aliases=("book-keeping", "bookkeeping"))
GRAD_SAMPLE_MODES.register("ew", "ew", title="torch ExpandedWeights", aliases=("expanded-weights",))
GRAD_SAMPLE_MODES.register("hooks", "hooks", title="Opacus hooks")
GRAD_SAMPLE_MODES.register("ghost", "ghost", title="ghost clipping (per-sample norms only)")
GRAD_SAMPLE_MODES.register("functorch", "functorch", title="functorch vmap")
# the modes train_dpsgd runs in the channels-last layout (tested equal to NCHW hooks); the others stay NCHW
CHANNELS_LAST_MODES = ("bk", "ghost", "hooks")


@dataclass
class DPSGDConfig:
    """Everything that decides a DP-SGD run (round-trips to JSON/YAML with `to_dict`/`from_dict`).

    Give `target_epsilon` (the noise multiplier is then calibrated so that `epochs` epochs spend exactly it) or
    `noise_multiplier` (the epsilon then follows). `batch_size` is the expected logical batch under Poisson
    sampling: the sampling rate is q = 1 / ceil(n / batch_size)."""

    target_epsilon: float | None = 2.0
    noise_multiplier: float | None = None
    delta: float = 1e-5
    max_grad_norm: float = 1.0
    epochs: int = 15
    batch_size: int = 256
    physical_batch_size: int = 512
    lr: float = 2.0
    optimizer: str = "sgd"          # "sgd" (with `momentum`) or "adam"
    momentum: float = 0.0
    accountant: str = "rdp"         # "rdp" or "prv"; the other one is reported beside it
    grad_sample_mode: str = "bk"    # per-sample clipping by "bk" (book-keeping: one backward pass), "ew" (torch's
    #                                 ExpandedWeights), "hooks", "functorch", or "ghost" (Opacus's ghost clipping)
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "DPSGDConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise PatchlabError(f"unknown DP-SGD settings: {', '.join(sorted(unknown))}")
        return cls(**data)

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> "DPSGDConfig":
        import yaml

        return cls.from_dict(yaml.safe_load(text) or {})

    def validate(self) -> None:
        if (self.target_epsilon is None) == (self.noise_multiplier is None):
            raise PatchlabError("give exactly one of target_epsilon= and noise_multiplier=")
        if self.target_epsilon is not None and not self.target_epsilon > 0:
            raise PatchlabError(f"target_epsilon must be > 0, got {self.target_epsilon}")
        if self.noise_multiplier is not None and not self.noise_multiplier > 0:
            raise PatchlabError(f"noise_multiplier must be > 0, got {self.noise_multiplier}")
        if not 0 < self.delta < 1:
            raise PatchlabError(f"delta must lie in (0, 1), got {self.delta}")
        if not self.max_grad_norm > 0:
            raise PatchlabError(f"max_grad_norm must be > 0, got {self.max_grad_norm}")
        if self.epochs < 1 or self.batch_size < 1 or self.physical_batch_size < 1:
            raise PatchlabError("epochs, batch_size and physical_batch_size must be >= 1")
        if not self.lr > 0:
            raise PatchlabError(f"lr must be > 0, got {self.lr}")
        if self.optimizer not in ("sgd", "adam"):
            raise PatchlabError(f"unknown optimizer '{self.optimizer}' (choose from sgd, adam)")
        self.accountant = ACCOUNTANTS.resolve(self.accountant)
        self.grad_sample_mode = GRAD_SAMPLE_MODES.resolve(self.grad_sample_mode)

    def key(self, model: nn.Module, n: int) -> str:
        """What a checkpoint must match to be resumed: every setting and the data size; `epochs` only when it
        decides the noise (a target epsilon), so a fixed-noise run can be extended."""
        payload = {**self.to_dict(), "n": n, "model": getattr(model, "config", type(model).__name__)}
        if self.target_epsilon is None:
            payload["epochs"] = None
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class DPSGDResult:
    model: nn.Module
    config: DPSGDConfig
    epsilon: float                 # by the configured accountant
    epsilons: dict                 # {"rdp": ..., "prv": ...} for the same steps
    noise_multiplier: float
    sample_rate: float
    steps: int
    n: int
    history: list[dict] = field(default_factory=list)  # per epoch: epoch, loss, epsilon, seconds
    seconds: float = 0.0
    resumed_from: int = 0
    stopped: bool = False

    def summary(self) -> dict:
        return {**self.config.to_dict(), "epsilon": self.epsilon, "delta": self.config.delta,
                "epsilons": self.epsilons, "noise_multiplier": self.noise_multiplier, "sample_rate": self.sample_rate,
                "steps": self.steps, "n": self.n, "seconds": self.seconds, "epochs_done": len(self.history)}


def require_opacus() -> None:
    try:
        import opacus  # noqa: F401
    except ImportError:
        raise PatchlabError("DP-SGD needs Opacus: pip install 'patchlab[privacy]'") from None


def split_fixed(model: nn.Module) -> tuple[Callable[[torch.Tensor], torch.Tensor] | None, nn.Module]:
    """(fixed feature function or None, the part DP-SGD trains)."""
    if hasattr(model, "fixed_features") and hasattr(model, "trainable"):
        return model.fixed_features, model.trainable
    return None, model


def epsilon_of(history: list, delta: float, accountant: str) -> float:
    """epsilon spent by an Opacus accountant history [(noise_multiplier, sample_rate, steps), ...]."""
    import opacus.accountants

    if not history:
        return 0.0
    acc = getattr(opacus.accountants, ACCOUNTANTS.get(accountant))()
    acc.history = [tuple(h) for h in history]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(acc.get_epsilon(delta))


def _running_epsilon(history: list, delta: float, accountant: str) -> float:
    """epsilon so far, for progress reports: our RDP accountant (the same numbers as Opacus's, tested, and
    vectorised, so it is cheap once an epoch) or Opacus's PRV."""
    if accountant == "prv":
        return epsilon_of(history, delta, "prv")
    from patchlab.privacy.rdp import DEFAULT_ORDERS, eps_from_rdp, sampled_gaussian_rdp

    if not history:
        return 0.0
    rdp = sum(sampled_gaussian_rdp(q, sigma, DEFAULT_ORDERS, int(steps)) for sigma, q, steps in history)
    return eps_from_rdp(DEFAULT_ORDERS, rdp, delta)[0]


def _epsilons(history: list, delta: float) -> dict:
    out = {"rdp": epsilon_of(history, delta, "rdp")}
    try:
        out["prv"] = epsilon_of(history, delta, "prv")
    except Exception:  # noqa: BLE001 - PRV's discretisation fails at large epsilon (Opacus #591); rdp still holds
        out["prv"] = None
    return out


def _optimizer(params, cfg: DPSGDConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum)


class BatchTensors(torch.utils.data.TensorDataset):
    """A TensorDataset that a DataLoader reads a whole batch at a time (`__getitems__`: one indexing per tensor)
    instead of sample by sample and then stacking: the loader's cost per epoch drops from thousands of small
    tensor operations to a few per batch, for the non-private and the DP-SGD loader alike."""

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return tuple(t[idx] for t in self.tensors)


def _as_batch(batch):
    return batch  # __getitems__ already returns the batch (Opacus wraps this to learn its empty-batch shape)


def batch_loader(x: torch.Tensor, y: torch.Tensor, batch_size: int, **kwargs) -> torch.utils.data.DataLoader:
    """A DataLoader over in-memory (x, y) that fetches each batch with one indexing per tensor."""
    return torch.utils.data.DataLoader(BatchTensors(x, y), batch_size=batch_size, collate_fn=_as_batch, **kwargs)


def _seed(g: torch.Generator, cfg: DPSGDConfig, epoch: int, salt: int) -> None:
    g.manual_seed((cfg.seed * 1_000_003 + epoch) * 7 + salt)


def train_dpsgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: DPSGDConfig | None = None, *,
                progress: ProgressFn | None = None, checkpoint: str | Path | None = None,
                stop: threading.Event | None = None, **overrides) -> DPSGDResult:
    """Train `model` with DP-SGD on (x, y); returns the trained model and the privacy spent.

    With `checkpoint`, the model, optimiser, accountant history and per-epoch history are written atomically after
    every epoch and an existing checkpoint with the same settings is resumed (other settings: refused). A set
    `stop` event ends the run after the current batch; the last finished epoch stays in the checkpoint.
    `progress(step, total, metrics)` counts logical (noisy) steps; metrics carry epoch, loss and epsilon spent."""
    require_opacus()
    from opacus.validators import ModuleValidator

    cfg = DPSGDConfig.from_dict({**(config or DPSGDConfig()).to_dict(), **overrides})
    cfg.validate()
    if len(x) != len(y) or len(x) == 0:
        raise PatchlabError(f"train_dpsgd: {len(x)} images and {len(y)} labels")
    start = time.perf_counter()
    fixed, trainable = split_fixed(model)
    dev = next(trainable.parameters()).device
    if fixed is not None:
        x = fixed(x.to(dev)).cpu()
    errors = ModuleValidator.validate(trainable, strict=False)
    if errors:
        trainable = ModuleValidator.fix(trainable)  # e.g. BatchNorm -> GroupNorm; a new module
        if fixed is None:
            model = trainable
        else:
            model.trainable = trainable
    key = cfg.key(model, len(x))
    ckpt = Path(checkpoint) if checkpoint else None
    state = load_keyed_checkpoint(ckpt, CKPT_FORMAT, key, "patchlab DP-SGD")
    if state is not None:
        trainable.load_state_dict(state["model"])

    with warnings.catch_warnings():
        # Opacus's "secure RNG off" notice and torch's "full backward hook ... no inputs require gradients" (the
        # images never need gradients here) are expected; everything a user needs is in the result.
        warnings.filterwarnings("ignore", message=".*Secure RNG turned off.*")
        warnings.filterwarnings("ignore", message=".*Full backward hook is firing.*")
        warnings.filterwarnings("ignore", message=".*Optimal order is the (largest|smallest) alpha.*")
        return _train(model, trainable, x, y, cfg, key, ckpt, state, dev, progress, stop, start)


def make_private(engine, mode: str, **kwargs) -> tuple:
    """`engine.make_private` (or `make_private_with_epsilon` with `target_epsilon=`) for any of GRAD_SAMPLE_MODES;
    returns (model, optimizer, criterion, data_loader) in every mode. "bk" is patchlab.privacy.bk on Opacus's
    ghost-clipping optimizer; the other modes are Opacus's own."""
    if mode == "bk":
        from patchlab.privacy import bk

        return bk.make_private(engine, **kwargs)
    kwargs.setdefault("criterion", nn.CrossEntropyLoss())
    if kwargs.get("target_epsilon") is not None:
        out = engine.make_private_with_epsilon(grad_sample_mode=mode, **kwargs)
    else:
        kwargs.pop("target_epsilon", None)
        kwargs.pop("target_delta", None)
        kwargs.pop("epochs", None)
        out = engine.make_private(grad_sample_mode=mode, **kwargs)
    if mode == "ghost":
        return out
    return out[0], out[1], kwargs["criterion"], out[2]


def _train(model, trainable, x, y, cfg: DPSGDConfig, key: str, ckpt: Path | None, state: dict | None, dev,
           progress: ProgressFn | None, stop: threading.Event | None, start: float) -> DPSGDResult:
    from opacus import PrivacyEngine
    from opacus.utils.batch_memory_manager import BatchMemoryManager

    fastclip.register()
    if x.dim() == 4 and cfg.grad_sample_mode in CHANNELS_LAST_MODES:
        # channels-last: the fast layout on CPU (max-pooling 5-10x faster), the same numbers to float rounding
        trainable.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    g_sample, g_noise = torch.Generator(), torch.Generator()
    _seed(g_sample, cfg, 0, 1)
    _seed(g_noise, cfg, 0, 2)
    loader = batch_loader(x, y, cfg.batch_size, generator=g_sample)
    trainable.train()
    opt = _optimizer([p for p in trainable.parameters() if p.requires_grad], cfg)
    engine = PrivacyEngine(accountant=cfg.accountant)
    budget = dict(target_epsilon=cfg.target_epsilon, target_delta=cfg.delta, epochs=cfg.epochs) \
        if cfg.target_epsilon is not None else dict(noise_multiplier=cfg.noise_multiplier)
    private_model, dp_opt, criterion, dp_loader = make_private(
        engine, cfg.grad_sample_mode, module=trainable, optimizer=opt, data_loader=loader,
        max_grad_norm=cfg.max_grad_norm, poisson_sampling=True, noise_generator=g_noise, **budget)
    sigma = float(dp_opt.noise_multiplier)
    q = 1.0 / len(loader)  # Opacus's sampling rate for a loader of this batch size
    result = DPSGDResult(model=model, config=cfg, epsilon=0.0, epsilons={}, noise_multiplier=sigma,
                         sample_rate=q, steps=0, n=len(x))
    if state is not None:
        if not math.isclose(float(state["noise_multiplier"]), sigma, rel_tol=1e-9):
            raise PatchlabError(f"{ckpt}: was trained with noise multiplier {state['noise_multiplier']}, this run "
                                f"would use {sigma}")
        dp_opt.original_optimizer.load_state_dict(state["optimizer"])
        engine.accountant.history = [tuple(h) for h in json.loads(state["accountant"])]
        result.history = json.loads(state["history"])
        result.resumed_from = len(result.history)

    steps_per_epoch = len(loader)
    total = steps_per_epoch * cfg.epochs
    prior = sum(r["seconds"] for r in result.history)
    t_run = time.perf_counter()
    eps_now = result.history[-1]["epsilon"] if result.history else 0.0
    loss_now = result.history[-1]["loss"] if result.history else float("nan")
    for epoch in range(result.resumed_from, cfg.epochs):
        t0 = time.perf_counter()
        _seed(g_sample, cfg, epoch, 1)
        _seed(g_noise, cfg, epoch, 2)
        # the loss is summed on the model's device and read once an epoch: no host sync per step on a GPU
        loss_sum, seen = torch.zeros((), device=dev), 0
        with BatchMemoryManager(data_loader=dp_loader, max_physical_batch_size=cfg.physical_batch_size,
                                optimizer=dp_opt) as batches:
            for xb, yb in batches:
                xb, yb = xb.to(dev), yb.to(dev)
                dp_opt.zero_grad(set_to_none=True)
                # An empty Poisson batch is still a step: noise added to a zero sum. Hooks and ghost clipping handle
                # it through forward/backward; ExpandedWeights cannot run an empty batch, so its per-sample
                # gradients are set to empty tensors directly.
                if len(xb) or cfg.grad_sample_mode != "ew":
                    loss = criterion(private_model(xb), yb)
                    loss.backward()
                    if len(xb):
                        loss_sum += loss.detach() * len(xb)
                        seen += len(xb)
                else:
                    for p in dp_opt.params:
                        p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype, device=p.device)
                dp_opt.step()
                steps = sum(int(h[2]) for h in engine.accountant.history)
                if progress is not None:  # the last finished epoch's loss and epsilon
                    progress(steps, total, {"epoch": epoch + 1, "loss": loss_now, "epsilon": eps_now})
                if stop is not None and stop.is_set():
                    result.stopped = True
                    break
        if result.stopped:
            break
        loss_now = float(loss_sum) / max(seen, 1)
        train_seconds = time.perf_counter() - t0
        eps_now = _running_epsilon(engine.accountant.history, cfg.delta, cfg.accountant)
        result.history.append({"epoch": epoch + 1, "loss": loss_now, "epsilon": eps_now,
                               "seconds": time.perf_counter() - t0, "train_seconds": train_seconds})
        if progress is not None:
            progress(min(total, steps_per_epoch * (epoch + 1)), total,
                     {"epoch": epoch + 1, "loss": loss_now, "epsilon": eps_now})
        if ckpt is not None:
            save_torch({"format": CKPT_FORMAT, "key": key, "model": trainable.state_dict(),
                        "optimizer": dp_opt.original_optimizer.state_dict(), "noise_multiplier": sigma,
                        "accountant": json.dumps(engine.accountant.history), "history": json.dumps(result.history)},
                       ckpt)
    if hasattr(private_model, "to_standard_module"):
        private_model.to_standard_module()  # drop Opacus's hooks and grad_sample fields; weights stay in `model`
    history = [tuple(h) for h in engine.accountant.history]
    result.steps = sum(int(h[2]) for h in history)
    result.epsilons = _epsilons(history, cfg.delta)
    result.epsilon = result.epsilons[cfg.accountant] if result.epsilons[cfg.accountant] is not None \
        else result.epsilons["rdp"]
    result.seconds = prior + (time.perf_counter() - t_run) + (t_run - start)
    trainable.to(memory_format=torch.contiguous_format)  # what exports (safetensors) and other code expect
    model.eval()
    return result


def _epoch_fn(net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int, lr: float,
              mode: str, channels_last: bool = True) -> Callable[[], None]:
    """One training epoch of `net` as a call: plain SGD over a shuffled loader ("nonprivate"; "nonprivate-nchw" in
    the default NCHW layout, for reference), or DP-SGD (Poisson sampling, clipping, noise multiplier 1) with the
    given per-sample gradient mode."""
    if mode == "nonprivate-nchw":
        mode, channels_last = "nonprivate", False
    if channels_last and x.dim() == 4:
        # the fast layout on CPU (max-pooling 5-10x faster than NCHW): the best non-private baseline, on both sides
        net, x = net.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    # the same in-memory batched loader in every mode, so data loading is equal (and small) on both sides
    loader = batch_loader(x, y, batch_size, shuffle=True, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    crit = nn.CrossEntropyLoss()
    if mode == "nonprivate":
        model = net
    else:
        from opacus import PrivacyEngine

        fastclip.register()
        model, opt, crit, loader = make_private(
            PrivacyEngine(accountant="rdp"), GRAD_SAMPLE_MODES.resolve(mode), module=net, optimizer=opt,
            data_loader=loader, noise_multiplier=1.0, max_grad_norm=1.0, poisson_sampling=True)

    def epoch() -> None:
        for xb, yb in loader:
            opt.zero_grad(set_to_none=True)
            if len(xb):  # an empty Poisson batch: nothing to time
                crit(model(xb), yb).backward()
                opt.step()

    return epoch


def epoch_seconds(make_model: Callable[[], nn.Module], x: torch.Tensor, y: torch.Tensor, batch_size: int,
                  modes: tuple[str, ...] = ("nonprivate", "nonprivate-nchw", "hooks", "ew", "ghost", "bk"),
                  lr: float = 0.5, repeats: int = 3, progress: ProgressFn | None = None) -> dict:
    """Seconds per epoch of the same model, data and batch size trained without privacy and with DP-SGD in each
    Opacus `grad_sample_mode`: the modes run round-robin, `repeats` epochs each after one warm-up epoch, and each
    is judged on its best epoch (other load only ever adds time; patchlab.bench.timing). Every mode runs in the
    channels-last layout (the fastest non-private baseline on CPU: about 2x faster than NCHW for our CNNs), and
    "nonprivate-nchw" is the NCHW non-private epoch for reference; ratios are against "nonprivate". Returns
    {"seconds": {mode: s}, "ratio": {mode: s / nonprivate}, "cpu_seconds": {...}, "cpu_ratio": {...},
    "batch_size": ..., "n": ...}; the CPU-time ratio is the steadier one on a loaded machine."""
    from patchlab.bench.timing import best, interleaved

    require_opacus()
    fns = {}
    cpu: dict[str, list[float]] = {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(Secure RNG|Full backward hook|Optimal order).*")
        for mode in modes:
            fixed, trainable = split_fixed(make_model())
            fns[mode] = _epoch_fn(trainable, fixed(x) if fixed is not None else x, y, batch_size, lr, mode)
        samples = interleaved(fns, rounds=repeats, warmup=1, cpu=cpu)
    if progress is not None:
        progress(len(modes), len(modes), {})
    seconds, cpu_s = best(samples), best(cpu)
    base, base_cpu = seconds.get("nonprivate"), cpu_s.get("nonprivate")
    return {"seconds": seconds, "ratio": {m: v / base for m, v in seconds.items()} if base else {},
            "cpu_seconds": cpu_s, "cpu_ratio": {m: v / base_cpu for m, v in cpu_s.items()} if base_cpu else {},
            "batch_size": batch_size, "n": len(x), "repeats": repeats}
