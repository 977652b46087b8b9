"""Extracting a CNN through its prediction API under a query budget (model stealing / "copycat" training).

The thief holds unlabelled images (a pool), sends some to the oracle, and trains a copy on the answers (labels
only, all probabilities, or the top-k). How it picks the queries:

- ``random``: pool images in random order (Correia-Silva et al.'s copycat; Knockoff Nets' random strategy);
- ``jacobian``: a random seed set grown by Papernot's Jacobian-based augmentation (synthetic queries);
- ``uncertainty``: the pool images the current copy is least sure of (smallest top-2 margin);
- ``knockoff``: Knockoff Nets' adaptive strategy (Orekondy et al. 2019): a gradient bandit over groups of the
  pool (k-means clusters standing in for their class hierarchy), rewarded by the copy's loss on the answers.

After each budget in `budgets` the copy is trained from scratch on every answer so far and measured on held-out
data: fidelity (agreement with the victim) and accuracy (against the true labels).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from patchlab.artifacts import load_keyed_checkpoint, save_torch
from patchlab.errors import PatchlabError
from patchlab.transfer.common import (ProgressFn, fingerprint, fit_soft, model_fingerprint, predict,
                                      probabilities, rate)
from patchlab.transfer.oracle import Answer, Oracle
from patchlab.transfer.substitute import jacobian_augment, reservoir_sample

STRATEGIES = ("random", "jacobian", "uncertainty", "knockoff")
CKPT_FORMAT = "patchlab-extraction-1"


@dataclass
class ExtractionConfig:
    strategy: str = "random"
    output: str = "label"          # what the oracle reveals: label, probs or topk
    k: int = 5                     # for output="topk"
    budgets: tuple[int, ...] = (100, 200, 400, 800, 1600, 3200)
    arch: str = "cnn"
    model: dict = field(default_factory=lambda: {"width": 16, "hidden": 64})
    epochs: int = 20               # per training of the copy, raised for small sets to reach `min_steps`
    min_steps: int = 300
    batch_size: int = 64
    lr: float = 2e-3
    lam: float = 0.1               # jacobian: the augmentation step
    arms: int = 10                 # knockoff: pool clusters the bandit chooses among
    bandit_lr: float = 0.5         # knockoff: the gradient bandit's step
    seed: int = 0

    def __post_init__(self) -> None:
        self.budgets = tuple(int(b) for b in self.budgets)
        if self.strategy not in STRATEGIES:
            raise PatchlabError(f"unknown strategy '{self.strategy}' (choose from {', '.join(STRATEGIES)})")
        if self.output not in ("label", "probs", "topk"):
            raise PatchlabError(f"output must be label, probs or topk, got '{self.output}'")
        if not self.budgets or any(b < 1 for b in self.budgets) or list(self.budgets) != sorted(set(self.budgets)):
            raise PatchlabError(f"budgets must be increasing positive query counts, got {self.budgets}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["budgets"] = list(self.budgets)
        return d


class _Thief:
    """The chosen queries, their answers and the strategy's state; one `grow(budget)` per step."""

    def __init__(self, cfg: ExtractionConfig, oracle: Oracle | None, pool: torch.Tensor, num_classes: int):
        self.cfg, self.oracle, self.pool, self.k = cfg, oracle, pool, num_classes
        self.inputs = pool[:0].clone()
        self.labels = torch.zeros(0, dtype=torch.long)
        self.soft = torch.zeros(0, num_classes)
        self.used = torch.zeros(len(pool), dtype=torch.bool)
        self.order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(cfg.seed))
        self.prefs = torch.zeros(cfg.arms)
        self.reward_mean, self.reward_n = 0.0, 0
        self.arm_of: torch.Tensor | None = None

    # -- state for checkpoints -------------------------------------------------------------------------------
    def state(self) -> dict:
        return {"inputs": self.inputs, "labels": self.labels, "soft": self.soft, "used": self.used,
                "prefs": self.prefs, "reward_mean": self.reward_mean, "reward_n": self.reward_n}

    def load(self, s: dict) -> None:
        self.inputs, self.labels, self.soft, self.used = s["inputs"], s["labels"], s["soft"], s["used"]
        self.prefs, self.reward_mean, self.reward_n = s["prefs"], float(s["reward_mean"]), int(s["reward_n"])

    # -- asking the oracle -----------------------------------------------------------------------------------
    def _ask(self, x: torch.Tensor) -> Answer:
        ans = self.oracle(x)
        soft = ans.soft_targets(self.k)
        self.inputs = torch.cat([self.inputs, x])
        self.labels = torch.cat([self.labels, ans.labels.cpu()])
        self.soft = torch.cat([self.soft, soft.float().cpu() if soft is not None
                               else torch.nn.functional.one_hot(ans.labels.cpu(), self.k).float()])
        return ans

    def targets(self) -> torch.Tensor:
        return self.labels if self.cfg.output == "label" else self.soft

    def _take_pool(self, idx: torch.Tensor) -> Answer:
        self.used[idx] = True
        return self._ask(self.pool[idx])

    def _unused_in_order(self, count: int) -> torch.Tensor:
        free = self.order[~self.used[self.order]]
        if len(free) < count:
            raise PatchlabError(f"the pool has {int((~self.used).sum())} unqueried images, {count} more asked; "
                                "give a larger pool or smaller budgets")
        return free[:count]

    def grow(self, budget: int, student: nn.Module | None, step: int) -> None:
        need = budget - len(self.inputs)
        if need <= 0:
            return
        strategy = self.cfg.strategy
        if student is None or strategy == "random":
            self._take_pool(self._unused_in_order(need))
        elif strategy == "uncertainty":
            free = (~self.used).nonzero().squeeze(1)
            if len(free) < need:
                self._unused_in_order(need)  # raises the pool-size error
            p = probabilities(student, self.pool[free])
            top2 = p.topk(2, dim=1).values
            margin = top2[:, 0] - top2[:, 1]
            self._take_pool(free[margin.argsort(stable=True)[:need]])
        elif strategy == "jacobian":
            gen = torch.Generator().manual_seed(self.cfg.seed * 7919 + step)
            while need > 0:  # more than doubling: augment again from the new points, with their answers
                idx = reservoir_sample(len(self.inputs), min(need, len(self.inputs)), gen)
                self._ask(jacobian_augment(student, self.inputs[idx], self.labels[idx], self.cfg.lam))
                need -= len(idx)
        else:
            self._knockoff(need, student, step)

    def _knockoff(self, need: int, student: nn.Module, step: int) -> None:
        if self.arm_of is None:
            self.arm_of = cluster_pool(self.pool, self.cfg.arms, self.cfg.seed)
        gen = torch.Generator().manual_seed(self.cfg.seed * 104729 + step)
        chunk = max(1, math.ceil(need / 10))
        done = 0
        while done < need:
            take = min(chunk, need - done)
            picks, arms = [], []
            for _ in range(take):
                free_arm = torch.tensor([bool((~self.used[self.arm_of == a]).any()) for a in range(self.cfg.arms)])
                if not bool(free_arm.any()):
                    self._unused_in_order(need - done)  # raises the pool-size error
                logits = self.prefs.masked_fill(~free_arm, float("-inf"))
                arm = int(torch.multinomial(logits.softmax(0), 1, generator=gen))
                members = ((self.arm_of == arm) & ~self.used).nonzero().squeeze(1)
                pick = members[int(torch.randint(0, len(members), (1,), generator=gen))]
                self.used[pick] = True
                picks.append(int(pick))
                arms.append(arm)
            ans = self._ask(self.pool[torch.tensor(picks)])
            soft = ans.soft_targets(self.k)
            with torch.no_grad():
                logp = student(self.pool[torch.tensor(picks)]).log_softmax(1).cpu()
            rewards = (-(soft.float() * logp).sum(1) if soft is not None
                       else -logp.gather(1, ans.labels.cpu()[:, None]).squeeze(1))
            for arm, r in zip(arms, rewards.tolist()):
                self._bandit_update(arm, r)
            done += take

    def _bandit_update(self, arm: int, reward: float) -> None:
        """Gradient bandit (Sutton & Barto 2.8), Knockoff's policy update, with a running-mean baseline."""
        self.reward_n += 1
        self.reward_mean += (reward - self.reward_mean) / self.reward_n
        pi = self.prefs.softmax(0)
        adv = reward - self.reward_mean
        self.prefs -= self.cfg.bandit_lr * adv * pi
        self.prefs[arm] += self.cfg.bandit_lr * adv


def cluster_pool(pool: torch.Tensor, arms: int, seed: int = 0) -> torch.Tensor:
    """k-means cluster of each pool image (the bandit's arms)."""
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=min(arms, len(pool)), n_init=3, random_state=seed).fit(pool.flatten(1).numpy())
    return torch.from_numpy(km.labels_).long()


def train_copy(cfg: ExtractionConfig, x: torch.Tensor, targets: torch.Tensor, num_classes: int, seed: int,
               stop: threading.Event | None = None) -> nn.Module:
    """A fresh copy trained on the answers (hard or soft), at least `min_steps` updates."""
    from patchlab.models.digits import make_digits_model

    net = make_digits_model(cfg.arch, size=x.shape[-1], seed=seed, channels=x.shape[1], num_classes=num_classes,
                            **cfg.model)
    per_epoch = max(1, math.ceil(len(x) / cfg.batch_size))
    epochs = min(max(cfg.epochs, math.ceil(cfg.min_steps / per_epoch)), 500)
    fit_soft(net, x, targets, epochs=epochs, batch_size=cfg.batch_size, lr=cfg.lr, seed=seed, stop=stop)
    return net.eval()


def extract(victim, pool: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
            config: ExtractionConfig | None = None, *, num_classes: int = 10, progress: ProgressFn | None = None,
            checkpoint: str | Path | None = None, stop: threading.Event | None = None) -> dict:
    """Steal `victim` with one strategy; fidelity and accuracy on (test_x, test_y) after each budget. The
    victim's own test predictions are computed directly (evaluation, not queries). Checkpoints after each budget
    (resumes without asking again). Returns the JSON-ready result; `result["model"]` is the last copy."""
    cfg = config or ExtractionConfig()
    pool = pool.detach().cpu().float()
    thief = _Thief(cfg, None, pool, num_classes)
    key = fingerprint(cfg.to_dict(), pool, num_classes, model_fingerprint(victim))
    ckpt = Path(checkpoint) if checkpoint else None
    victim_pred = predict(victim, test_x)
    n = len(test_y)
    start = time.perf_counter()
    rows, student, done, prior = [], None, 0, 0.0
    state = load_keyed_checkpoint(ckpt, CKPT_FORMAT, key)
    if state is not None:
        thief.load(state["thief"])
        rows, done, prior = list(state["rows"]), int(state["done"]), float(state["seconds"])
        if state.get("student") is not None:
            from patchlab.models.digits import make_digits_model

            student = make_digits_model(cfg.arch, size=pool.shape[-1], seed=cfg.seed, channels=pool.shape[1],
                                        num_classes=num_classes, **cfg.model)
            student.load_state_dict(state["student"])
            student.eval()
    resumed_from = done
    before = len(thief.inputs)
    oracle = Oracle(victim, output=cfg.output, k=cfg.k, budget=cfg.budgets[-1] - before)
    thief.oracle = oracle
    stopped = False
    def save(done_steps: int) -> None:
        if ckpt is not None:
            save_torch({"format": CKPT_FORMAT, "key": key, "thief": thief.state(), "rows": rows, "done": done_steps,
                        "student": None if student is None else student.state_dict(),
                        "seconds": prior + time.perf_counter() - start}, ckpt)

    for step in range(done, len(cfg.budgets)):
        if stop is not None and stop.is_set():
            stopped = True
            break
        budget = cfg.budgets[step]
        if len(thief.inputs) < budget:
            thief.grow(budget, student, step)
            save(step)  # the answers are kept at once: a killed run never asks for them again
        if progress is not None:
            progress(step * 2 + 1, 2 * len(cfg.budgets), {"queries": len(thief.inputs), "strategy": cfg.strategy})
        student = train_copy(cfg, thief.inputs, thief.targets(), num_classes, cfg.seed * 1000 + step, stop)
        if stop is not None and stop.is_set():
            stopped = True
            break
        pred = predict(student, test_x)
        rows.append({"queries": len(thief.inputs), **rate("fidelity", int((pred == victim_pred).sum()), n),
                     **rate("accuracy", int((pred == test_y).sum()), n)})
        save(step + 1)
        if progress is not None:
            progress(step * 2 + 2, 2 * len(cfg.budgets),
                     {"queries": len(thief.inputs), "fidelity": rows[-1]["fidelity"]})
    last = rows[-1] if rows else {}
    return {"experiment": "extraction", "victim": getattr(victim, "name", "victim"), "strategy": cfg.strategy,
            "output": cfg.output, "n": n, "seed": cfg.seed, "settings": cfg.to_dict(),
            "queries": len(thief.inputs), "queries_this_run": oracle.queries,
            "victim_accuracy": float((victim_pred == test_y).float().mean()),
            "fidelity": last.get("fidelity"), "fidelity_ci95": last.get("fidelity_ci95"),
            "accuracy": last.get("accuracy"), "accuracy_ci95": last.get("accuracy_ci95"), "curve": rows,
            "seconds": prior + time.perf_counter() - start, "resumed_from": resumed_from, "stopped": stopped,
            "model": student}
