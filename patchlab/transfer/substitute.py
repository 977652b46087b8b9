"""The substitute-model black-box attack (Papernot et al. 2017, "Practical Black-Box Attacks against Machine
Learning"), with the periodic step size and reservoir sampling of Papernot et al. 2016.

The attacker sees labels only. A substitute is trained on a small seed set labelled by the oracle, then grown by
Jacobian-based dataset augmentation: each round adds x + λ·sign(∂F[Õ(x)]/∂x) for the points x chosen, labels the
new points with the oracle and trains again. Adversarial examples crafted on the substitute are sent to the
oracle.

Rounds and queries: round ρ = 0 trains on the seed set S₀; each later round doubles the set (or, from round
σ = `reservoir_after` on, adds κ = `reservoir_size` points reservoir-sampled from the previous round's new
points), so with 100 seeds the substitute of round ρ has cost 100·2^ρ queries: 800 at ρ = 3, 1,600 at ρ = 4 and
6,400 at ρ = 6 (the query count of the paper's MetaMind attack). Every point is labelled exactly once.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from patchlab.artifacts import load_keyed_checkpoint, save_torch
from patchlab.errors import PatchlabError
from patchlab.transfer.common import ProgressFn, fingerprint, model_fingerprint, predict, rate
from patchlab.transfer.oracle import Oracle

CKPT_FORMAT = "patchlab-substitute-1"


@dataclass
class SubstituteConfig:
    seed_size: int = 100          # |S₀|; the paper's MNIST runs use 150 test-set images, 100 makes 100·2⁶ = 6,400
    rounds: int = 6               # ρ: augmentation rounds (the substitute is trained rounds + 1 times)
    lam: float = 0.1              # λ: the Jacobian step
    tau: int | None = None        # periodic step size: λ_ρ = λ·(-1)^⌊ρ/τ⌋ (Papernot 2016); None keeps λ fixed
    reservoir_after: int | None = None  # σ: from this round on add only κ reservoir-sampled points per round
    reservoir_size: int = 400     # κ
    arch: str = "cnn"             # a patchlab.models.digits kind
    model: dict = field(default_factory=dict)  # its constructor options (width, hidden, activation)
    epochs: int = 10              # training epochs per round (the paper's setting)
    batch_size: int = 64
    lr: float = 1e-3
    warm_start: bool = True       # keep training the same substitute across rounds (else re-initialise)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.seed_size < 1 or self.rounds < 0 or self.epochs < 1 or self.reservoir_size < 1:
            raise PatchlabError(f"substitute: seed_size, epochs and reservoir_size must be >= 1 and rounds >= 0 "
                                f"(got {self.seed_size}, {self.epochs}, {self.reservoir_size}, {self.rounds})")
        if not 0 < self.lam <= 1:
            raise PatchlabError(f"lam must lie in (0, 1], got {self.lam}")
        if self.tau is not None and self.tau < 1:
            raise PatchlabError(f"tau must be >= 1, got {self.tau}")

    def to_dict(self) -> dict:
        return asdict(self)

    def step(self, rho: int) -> float:
        """λ_ρ, the signed Jacobian step of augmentation round ρ."""
        return self.lam * (-1) ** (rho // self.tau) if self.tau else self.lam

    def planned_queries(self) -> list[int]:
        """Queries spent when the substitute of round 0, 1, ..., rounds is trained."""
        out, size, added = [self.seed_size], self.seed_size, self.seed_size
        for rho in range(self.rounds):
            added = min(self.reservoir_size, added) if self.reservoir_after is not None and \
                rho >= self.reservoir_after else size
            size += added
            out.append(size)
        return out

    def rounds_within(self, budget: int) -> int:
        """The last round whose cumulative queries fit in `budget`."""
        fits = [rho for rho, q in enumerate(self.planned_queries()) if q <= budget]
        if not fits:
            raise PatchlabError(f"a budget of {budget} queries does not cover the {self.seed_size} seeds")
        return fits[-1]


def jacobian_augment(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, lam: float,
                     batch_size: int = 256) -> torch.Tensor:
    """x + λ·sign(∂F_label(x)/∂x) clipped to [0, 1], where F is the model's softmax output and `label` the
    oracle's answer for x (the paper's Jacobian-based dataset augmentation)."""
    dev = next(model.parameters()).device
    was = model.training
    model.eval()
    out = []
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size].to(dev).detach().requires_grad_(True)
        with torch.enable_grad():
            p = model(xb).softmax(1).gather(1, labels[i:i + batch_size].to(dev)[:, None]).sum()
            (g,) = torch.autograd.grad(p, xb)
        out.append((xb.detach() + lam * g.sign()).clamp(0, 1).cpu())
    model.train(was)
    return torch.cat(out) if out else x.clone()


def reservoir_sample(n: int, k: int, gen: torch.Generator) -> torch.Tensor:
    """k indices drawn uniformly from range(n) in one pass (Vitter's algorithm R)."""
    k = min(k, n)
    chosen = list(range(k))
    for i in range(k, n):
        j = int(torch.randint(0, i + 1, (1,), generator=gen))
        if j < k:
            chosen[j] = i
    return torch.tensor(sorted(chosen), dtype=torch.long)


@dataclass
class SubstituteResult:
    model: nn.Module
    rows: list[dict]          # one per round: round, queries, size, lam and whatever `on_round` added
    queries: int              # oracle queries spent on training (every point labelled once)
    seconds: float
    resumed_from: int = 0     # rounds already done in the checkpoint this run resumed
    stopped: bool = False
    data: tuple[torch.Tensor, torch.Tensor] | None = None  # the final training set and its oracle labels


def _new_model(cfg: SubstituteConfig, size: int, channels: int, num_classes: int) -> nn.Module:
    from patchlab.models.digits import make_digits_model

    return make_digits_model(cfg.arch, size=size, seed=cfg.seed, channels=channels, num_classes=num_classes,
                             **cfg.model)


def train_substitute(oracle: Oracle, seeds: torch.Tensor, config: SubstituteConfig | None = None, *,
                     num_classes: int = 10, on_round: Callable[[nn.Module, dict], None] | None = None,
                     progress: ProgressFn | None = None, checkpoint: str | Path | None = None,
                     stop: threading.Event | None = None) -> SubstituteResult:
    """Train a substitute for `oracle` from `seeds` (the first `seed_size` are used) by Jacobian augmentation.

    `on_round(model, row)` may add measurements to each round's row (it must not query `oracle`). With
    `checkpoint`, the state is saved (atomically) each time new points have been labelled, so a killed run
    resumes without asking the oracle twice and ends equal to an uninterrupted one; a checkpoint written with
    other settings or seeds is refused."""
    from patchlab.models.digits import fit

    cfg = config or SubstituteConfig()
    if len(seeds) < cfg.seed_size:
        raise PatchlabError(f"substitute: {len(seeds)} seed images given, seed_size is {cfg.seed_size}")
    seeds = seeds[:cfg.seed_size].detach().cpu().float()
    key = fingerprint(cfg.to_dict(), seeds, num_classes, oracle.output, model_fingerprint(oracle.victim))
    ckpt = Path(checkpoint) if checkpoint else None
    size, channels = seeds.shape[-1], seeds.shape[1]
    model = _new_model(cfg, size, channels, num_classes)
    start = time.perf_counter()
    state = load_keyed_checkpoint(ckpt, CKPT_FORMAT, key)
    base_queries = oracle.queries
    if state is None:
        data, labels = seeds, oracle(seeds).labels.cpu()
        new_from, next_round, rows, prior_seconds, spent_before = 0, 0, [], 0.0, 0
        if ckpt is not None:
            _save(ckpt, key, model, data, labels, new_from, 0, rows, 0.0, len(data))
        base_queries = oracle.queries - len(data)
    else:
        model.load_state_dict(state["model"])
        data, labels = state["data"], state["labels"]
        new_from, next_round = int(state["new_from"]), int(state["next_round"])
        rows, prior_seconds, spent_before = list(state["rows"]), float(state["seconds"]), int(state["queries"])
    resumed_from = next_round

    def spent() -> int:
        return spent_before + oracle.queries - base_queries

    total = cfg.rounds + 1
    stopped = False
    for rho in range(next_round, cfg.rounds + 1):
        if not cfg.warm_start:
            model = _new_model(cfg, size, channels, num_classes)
        report = None if progress is None else (
            lambda s, t, m, rho=rho: progress(rho * 1000 + int(1000 * s / max(t, 1)), total * 1000,
                                              {"round": rho, "queries": spent(), **m}))
        res = fit(model, data, labels, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                  seed=cfg.seed * 1000 + rho, progress=report, stop=stop)
        if res.stopped:
            stopped = True
            break
        row = {"round": rho, "queries": spent(), "size": len(data)}
        if on_round is not None:
            on_round(model, row)
        rows.append(row)
        if rho < cfg.rounds:
            lam = cfg.step(rho)
            if cfg.reservoir_after is not None and rho >= cfg.reservoir_after:
                gen = torch.Generator().manual_seed(cfg.seed * 7919 + rho)
                idx = new_from + reservoir_sample(len(data) - new_from, cfg.reservoir_size, gen)
            else:
                idx = torch.arange(len(data))
            fresh = jacobian_augment(model, data[idx], labels[idx], lam)
            fresh_labels = oracle(fresh).labels.cpu()
            new_from = len(data)
            data, labels = torch.cat([data, fresh]), torch.cat([labels, fresh_labels])
        if ckpt is not None:
            _save(ckpt, key, model, data, labels, new_from, rho + 1, rows,
                  prior_seconds + time.perf_counter() - start, spent())
        if progress is not None:
            progress((rho + 1) * 1000, total * 1000, {"round": rho, "queries": spent()})
        if stop is not None and stop.is_set():
            stopped = rho < cfg.rounds
            break
    model.eval()
    seconds = prior_seconds + time.perf_counter() - start
    trained = rows[-1]["size"] if rows else 0
    return SubstituteResult(model, rows, trained, seconds, resumed_from, stopped,
                            (data[:trained], labels[:trained]))


def _save(path: Path, key: str, model: nn.Module, data, labels, new_from: int, next_round: int, rows: list,
          seconds: float, queries: int) -> None:
    save_torch({"format": CKPT_FORMAT, "key": key, "model": model.state_dict(), "data": data, "labels": labels,
                "new_from": new_from, "next_round": next_round, "rows": rows, "seconds": seconds,
                "queries": queries}, path)


# -- the attack through the substitute, measured against the victim ---------------------------------------------
def sign_noise(x: torch.Tensor, eps: float, seed: int = 0) -> torch.Tensor:
    """x + ε·s with s a random ±1 per pixel, clipped: the same L∞ (and, before clipping, the same L2) as an
    FGSM step of size ε. The baseline an attack has to beat."""
    gen = torch.Generator().manual_seed(int(seed))
    s = torch.randint(0, 2, x.shape, generator=gen).float() * 2 - 1
    return (x + eps * s).clamp(0, 1)


def substitute_attack(victim, seeds: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                      config: SubstituteConfig | None = None, *, eps: float = 0.3, attack: str = "fgsm",
                      attack_options: dict | None = None, compare: dict[str, tuple[str, dict]] | None = None,
                      budget: int | None = None, progress: ProgressFn | None = None,
                      checkpoint: str | Path | None = None, stop: threading.Event | None = None) -> dict:
    """Papernot's attack end to end against `victim`, with the oracle's misclassification measured after every
    round: adversarial examples crafted on the substitute (with the attacker's true labels of its own test
    images) are sent to the victim through a second, counting oracle. Beside it, same-norm random sign noise.
    `compare` = {label: (attack, options)} measures more attacks on the same substitutes (row["compare"]).

    Returns the JSON-ready result; `result["model"]` is the final substitute (not JSON)."""
    from patchlab.attacks import make_attack

    cfg = config or SubstituteConfig()
    if budget is not None:
        cfg = SubstituteConfig(**{**cfg.to_dict(), "rounds": min(cfg.rounds, cfg.rounds_within(budget))})
    n = len(test_x)
    start = time.perf_counter()
    oracle = Oracle(victim, output="label", budget=budget)
    attack_oracle = Oracle(victim, output="label")
    with torch.no_grad():
        clean_pred = predict(victim, test_x)  # evaluation only: the attacker never sees these
    correct = clean_pred == test_y
    noise_pred = attack_oracle(sign_noise(test_x, eps, cfg.seed + 1)).labels
    noise_wrong = noise_pred != test_y
    options = dict(attack_options or {})
    options.setdefault("seed", cfg.seed)

    def measure(model: nn.Module, name: str, opts: dict) -> dict:
        adv = make_attack(name, model, eps=eps, **opts)(test_x, test_y).adv.cpu()
        wrong = attack_oracle(adv).labels != test_y
        return {**rate("misclassification_rate", int(wrong.sum()), n),
                **rate("success_rate", int((wrong & correct).sum()), int(correct.sum()))}

    def on_round(model: nn.Module, row: dict) -> None:
        model.eval()
        sub_pred = predict(model, test_x)
        row.update({"substitute_accuracy": float((sub_pred == test_y).float().mean()),
                    "agreement": float((sub_pred == clean_pred).float().mean()), **measure(model, attack, options)})
        if compare:
            row["compare"] = {label: measure(model, name, {"seed": cfg.seed, **opts})
                              for label, (name, opts) in compare.items()}

    result = train_substitute(oracle, seeds, cfg, on_round=on_round, progress=progress, checkpoint=checkpoint,
                              stop=stop)
    rows = result.rows
    last = rows[-1] if rows else {}
    noise = rate("misclassification_rate", int(noise_wrong.sum()), n)
    return {
        "experiment": "substitute", "victim": getattr(victim, "name", "victim"), "n": n, "eps": eps,
        "attack": attack, "attack_options": options, "compare": {k: [a, o] for k, (a, o) in (compare or {}).items()},
        "seed": cfg.seed, "settings": cfg.to_dict(), "budget": budget,
        "queries": result.queries, "attack_queries": attack_oracle.queries,
        "victim_clean_accuracy": float(correct.float().mean()),
        "misclassification_rate": last.get("misclassification_rate"),
        "misclassification_rate_ci95": last.get("misclassification_rate_ci95"),
        "success_rate": last.get("success_rate"), "success_rate_ci95": last.get("success_rate_ci95"),
        "noise": noise, "margin_over_noise": (last.get("misclassification_rate", 0.0) -
                                              noise["misclassification_rate"]) if rows else None,
        "curve": rows, "seconds": time.perf_counter() - start, "resumed_from": result.resumed_from,
        "stopped": result.stopped, "model": result.model,
    }
