"""Adversarial training of the small MNIST CNN (Madry et al. 2018; Wong, Rice, Kolter 2020) and its evaluation.

Training minimises the loss at an adversarial point the *training attack* finds inside the eps-ball: PGD with a
random start (Madry), or one FGSM step from a uniform random start with step 1.25 eps (Wong's "fast" FGSM-RS).
The training attack only finds a lower bound on the inner maximum, so the model is then scored with stronger
attacks (PGD-40 with restarts, PGD-100 with restarts on cross-entropy and on the CW margin loss, MI-FGSM;
"strongest" = an example counts as robust only if it survives all of them; `eps_curve` across eps), and the report
shows the training attack's (higher) robust accuracy beside them.

FGSM-RS can "catastrophically overfit" (Wong §5): robust accuracy against PGD collapses within an epoch while
FGSM accuracy soars. Early stopping: after every epoch, PGD accuracy on a fixed monitor set drawn from the training
split; a drop of more than `overfit_drop` below the best ends the run, and the best epoch's weights are kept.

The loop is `patchlab.models.digits.fit` with an attack inside `loss_fn` (`patchlab.attacks` PGD, seeded from fit's
per-epoch generator), so runs are seeded and resume from their per-epoch checkpoint exactly.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from patchlab.attacks.base import margin_loss
from patchlab.attacks.pgd import PGD
from patchlab.errors import PatchlabError
from patchlab.progress import ProgressFn

METHODS = ("standard", "fgsm_rs", "pgd")


@dataclass
class AdvTrainConfig:
    """The defaults are the measured recipe (docs/defenses.md): Wong & Kolter's strided CNN at 32/64 channels and
    256 hidden units, PGD-8 from a random start, eps ramped over 10 epochs, random 2 px shifts, Adam with a cosine
    decay, 60 epochs of the 8000 training-side digits."""

    method: str = "pgd"
    eps: float = 0.3
    steps: int = 8               # PGD training steps (method "pgd")
    alpha: float | None = None   # step size: PGD 2.5 eps / steps (Madry's rule), FGSM-RS 1.25 eps (Wong)
    epochs: int = 60
    batch_size: int = 100
    lr: float = 1e-3
    train: int = 8000            # images of the shared MNIST test set used for training; the rest is the test side
    split_seed: int = 0
    seed: int = 0
    model: str = "strided"       # digits model kind: "strided" (Wong & Kolter's) or "cnn" (2 conv 5x5 + pool)
    width: int = 32
    hidden: int = 256
    shift: int = 2               # random translation of each training image by up to this many pixels
    lr_schedule: str = "cosine"  # or "constant"; cosine is fit's per-step decay to 0 at the last epoch
    monitor: int = 500           # training images the early-stopping PGD check runs on
    overfit_drop: float = 0.2
    ramp_epochs: int = 10        # grow eps linearly over the first N epochs (eps * (epoch + 1) / N)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise PatchlabError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if not 0 <= self.eps <= 1 or self.epochs < 1 or self.steps < 1:
            raise PatchlabError("eps must lie in [0, 1], epochs and steps must be >= 1")
        if self.model not in ("cnn", "strided"):
            raise PatchlabError(f"model must be cnn or strided, got {self.model!r}")
        if self.lr_schedule not in ("constant", "cosine") or self.shift < 0:
            raise PatchlabError(f"lr_schedule must be constant or cosine (got {self.lr_schedule!r}), shift >= 0")

    @property
    def step_size(self) -> float:
        if self.alpha is not None:
            return float(self.alpha)
        return 1.25 * self.eps if self.method == "fgsm_rs" else 2.5 * self.eps / self.steps


def training_attack(model, cfg: AdvTrainConfig, seed: int | None):
    """The attack the training loop uses (PGD with a random start; FGSM-RS is its one-step case)."""
    from patchlab.attacks import make_attack

    steps = 1 if cfg.method == "fgsm_rs" else cfg.steps
    return make_attack("pgd", model, eps=cfg.eps, steps=steps, alpha=cfg.step_size, random_start=True, seed=seed)


def random_shift(x: torch.Tensor, pixels: int, gen: torch.Generator) -> torch.Tensor:
    """Each image moved by a seeded random offset of up to `pixels` in x and y, the border filled with 0 (MNIST's
    background): the usual augmentation when robust training has few digits."""
    if pixels <= 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (pixels, pixels, pixels, pixels))
    off = torch.randint(0, 2 * pixels + 1, (n, 2), generator=gen).tolist()
    return torch.stack([padded[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(off)])


def eps_at(cfg: AdvTrainConfig, epoch: int) -> float:
    """The training eps in (0-based) `epoch` under the linear ramp."""
    if cfg.ramp_epochs <= 0:
        return cfg.eps
    return cfg.eps * min(1.0, (epoch + 1) / cfg.ramp_epochs)


def adversarial_loss(cfg: AdvTrainConfig, epoch: list[int] | None = None):
    """A `fit` loss: cross-entropy at the training attack's point (plain cross-entropy for "standard").
    `epoch` is a one-element list holding the current epoch (for the eps ramp), kept up to date by the caller."""
    from dataclasses import replace

    def adversarial_cross_entropy(model, x, y, gen):
        x = random_shift(x, cfg.shift, gen)
        if cfg.method == "standard":
            return F.cross_entropy(model(x), y)
        seed = int(torch.randint(0, 2 ** 31 - 1, (1,), generator=gen))
        # a ramped eps keeps a given alpha; without one, Madry's / Wong's step rule follows the ramped eps
        now = cfg if not cfg.ramp_epochs or epoch is None else replace(cfg, eps=eps_at(cfg, epoch[0]))
        adv = training_attack(model, now, seed)(x, y).adv
        return F.cross_entropy(model(adv), y)

    adversarial_cross_entropy.__name__ = (f"adv_{cfg.method}_{cfg.eps}_{cfg.steps}_{cfg.step_size}_{cfg.ramp_epochs}"
                                          f"_{cfg.shift}")
    return adversarial_cross_entropy


def mnist_split(folder: str | Path, cfg: AdvTrainConfig):
    from patchlab.data import load_mnist, split_digits

    return split_digits(load_mnist(folder), {"train": cfg.train, "test": -1}, seed=cfg.split_seed)


class MarginPGD(PGD):
    """PGD on Carlini & Wagner's margin loss (max other logit - true logit) instead of cross-entropy: Madry's "CW"
    row. It does not saturate where the softmax does, so it finds examples cross-entropy PGD can miss on a model
    whose softmax is very confident (one sign of gradient masking)."""

    name = "pgd-cw"

    def loss(self, logits, y, target):
        return -margin_loss(logits, y).mean() if target is None else margin_loss(logits, target).mean()


def margin_pgd(model, **kwargs) -> MarginPGD:
    return MarginPGD(model, **kwargs)


def pgd_accuracy(model, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 10, restarts: int = 1,
                 seed: int = 0, batch: int = 500) -> float:
    from patchlab.attacks import make_attack

    attack = make_attack("pgd", model, eps=eps, steps=steps, restarts=restarts, seed=seed, batch_size=batch)
    return float((~attack(x, y).success).float().mean())


def train_adversarial(cfg: AdvTrainConfig, mnist: str | Path, out: str | Path, checkpoint: str | Path | None = None,
                      progress: ProgressFn | None = None) -> dict:
    """Train a digits CNN with `cfg`, write it to `out` (.safetensors), return the run summary with wall and CPU
    seconds. With `checkpoint`, a rerun continues (fit's checkpoint plus the early-stopping record beside it)."""
    import copy
    import threading

    from patchlab.artifacts import write_text
    from patchlab.models.digits import FitConfig, fit, make_digits_model, save_digits_model

    parts = mnist_split(mnist, cfg)
    tr = parts["train"]
    model = make_digits_model(cfg.model, size=28, seed=cfg.seed, width=cfg.width, hidden=cfg.hidden)
    g = torch.Generator().manual_seed(cfg.seed + 17)
    mon = torch.randperm(len(tr), generator=g)[:cfg.monitor]
    mon_x, mon_y = tr.images[mon], tr.labels[mon]
    record_path = Path(str(checkpoint) + ".monitor.json") if checkpoint else None
    record = {"config": asdict(cfg), "epochs": [], "best_epoch": 0, "best": -1.0, "stopped": False, "cpu_seconds": 0.0,
              "wall_seconds": 0.0}
    best_state = None
    if record_path is not None and record_path.is_file():
        saved = json.loads(record_path.read_text())
        if {**saved.get("config", {}), "epochs": None} != {**asdict(cfg), "epochs": None}:  # more epochs may follow
            raise PatchlabError(f"{record_path}: was written with other settings; delete it to start over")
        if cfg.lr_schedule == "cosine" and saved["config"]["epochs"] != cfg.epochs:
            raise PatchlabError(f"{record_path}: its cosine decay was planned for {saved['config']['epochs']} epochs; "
                                "resume with the same epochs, or use lr_schedule='constant' to extend a run")
        record = saved
        best_file = Path(str(checkpoint) + ".best.pt")
        if best_file.is_file():
            best_state = torch.load(best_file, map_location="cpu", weights_only=True)
    steps_per_epoch = -(-len(tr) // cfg.batch_size)
    epoch_now = [0]  # the eps ramp's clock: the epoch fit is in (it resumes after its last saved epoch)
    if checkpoint and Path(checkpoint).is_file():
        epoch_now[0] = len(json.loads(torch.load(checkpoint, map_location="cpu", weights_only=True)["history"]))
    stop = threading.Event()
    cpu0, wall0 = time.process_time(), time.perf_counter()

    def on_step(step: int, total: int, metrics: dict) -> None:
        nonlocal best_state
        if progress:
            progress(step, total, metrics)
        if step % steps_per_epoch:
            return
        epoch = step // steps_per_epoch
        epoch_now[0] = epoch
        robust = pgd_accuracy(model, mon_x, mon_y, cfg.eps, steps=10, seed=epoch)  # early-stopping monitor
        model.train()
        # an epoch redone after an interruption (fit resumes from its last saved epoch) replaces its old record
        record["epochs"] = [r for r in record["epochs"] if r["epoch"] < epoch]
        record["epochs"].append({"epoch": epoch, "monitor_pgd10_accuracy": robust})
        if robust > record["best"]:
            record["best"], record["best_epoch"] = robust, epoch
            best_state = copy.deepcopy(model.state_dict())
            if checkpoint:
                from patchlab.artifacts import save_torch

                save_torch(best_state, Path(str(checkpoint) + ".best.pt"))
        elif cfg.method != "standard" and epoch > cfg.ramp_epochs and robust < record["best"] - cfg.overfit_drop:
            record["stopped"] = True  # catastrophic overfitting: keep the best epoch's weights
            stop.set()
        # CPU and wall time of finished epochs add up across resumed runs (a crashed part-epoch is not counted)
        record["cpu_seconds"] += time.process_time() - on_step.cpu
        record["wall_seconds"] = record.get("wall_seconds", 0.0) + time.perf_counter() - on_step.wall
        on_step.cpu, on_step.wall = time.process_time(), time.perf_counter()
        if record_path is not None:
            write_text(record_path, json.dumps(record))

    on_step.cpu, on_step.wall = cpu0, wall0
    fit_cfg = FitConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, optimizer="adam", seed=cfg.seed,
                        lr_schedule=cfg.lr_schedule)
    if not record["stopped"]:
        fit(model, tr.images, tr.labels, fit_cfg, loss_fn=adversarial_loss(cfg, epoch_now), progress=on_step,
            checkpoint=checkpoint, stop=stop)
    if best_state is not None and cfg.method != "standard":
        model.load_state_dict(best_state)
    model.eval()
    save_digits_model(model, out, "defense-model", "patchlab defend train adversarial")
    return {"out": str(out), "method": cfg.method, "eps": cfg.eps, "n": len(tr), "settings": asdict(cfg),
            "epochs_run": len(record["epochs"]),
            "best_epoch": record["best_epoch"] if cfg.method != "standard" else len(record["epochs"]),
            "early_stopped": record["stopped"], "monitor": record["epochs"],
            "cpu_seconds": record["cpu_seconds"], "wall_seconds": record.get("wall_seconds", 0.0),
            "seconds": time.perf_counter() - wall0}


def evaluate_robustness(model, x: torch.Tensor, y: torch.Tensor, eps: float = 0.3, restarts: int = 10,
                        train_cfg: AdvTrainConfig | None = None, seed: int = 0, batch: int = 500,
                        long_restarts: int = 2, progress: ProgressFn | None = None) -> dict:
    """Accuracy under each attack at `eps` and under all of them together ("strongest"), with Wilson intervals:
    FGSM, PGD-40 (alpha 0.01, Madry's), PGD-40 with `restarts`, PGD-100 with `long_restarts` on cross-entropy and
    on the CW margin loss, MI-FGSM-100.
    `train_cfg` adds the training attack, to show that it is the weaker one."""
    from patchlab.attacks import make_attack
    from patchlab.stats import wilson_interval

    start = time.perf_counter()
    attacks = {"fgsm": make_attack("fgsm", model, eps=eps),
               "pgd40": make_attack("pgd", model, eps=eps, steps=40, alpha=0.01 if eps >= 0.1 else None,
                                    restarts=1, seed=seed, batch_size=batch),
               f"pgd40x{restarts}": make_attack("pgd", model, eps=eps, steps=40, alpha=0.01 if eps >= 0.1 else None,
                                                 restarts=restarts, seed=seed + 1, batch_size=batch),
               f"pgd100x{long_restarts}": make_attack("pgd", model, eps=eps, steps=100, restarts=long_restarts,
                                                       seed=seed + 2, batch_size=batch),
               f"pgd100-cw x{long_restarts}": margin_pgd(model, eps=eps, steps=100, restarts=long_restarts,
                                                          seed=seed + 4, batch_size=batch),
               "mifgsm100": make_attack("mifgsm", model, eps=eps, steps=100, batch_size=batch)}
    if train_cfg is not None and train_cfg.method != "standard":
        attacks = {f"training attack ({train_cfg.method})": training_attack(model, train_cfg, seed + 3), **attacks}
    n = len(x)
    with torch.no_grad():
        clean_ok = model(x).argmax(1) == y
    rows, survives = [], clean_ok.clone()
    lo, hi = wilson_interval(int(clean_ok.sum()), n)
    rows.append({"attack": "none", "accuracy": float(clean_ok.float().mean()), "ci95": [lo, hi]})
    for i, (name, attack) in enumerate(attacks.items()):
        t0 = time.perf_counter()
        ok = ~attack(x, y).success & clean_ok
        if not name.startswith("training"):
            survives &= ok
        lo, hi = wilson_interval(int(ok.sum()), n)
        rows.append({"attack": name, "accuracy": float(ok.float().mean()), "ci95": [lo, hi],
                     "seconds": time.perf_counter() - t0})
        if progress:
            progress(i + 1, len(attacks), {"attack": name, "accuracy": rows[-1]["accuracy"]})
    lo, hi = wilson_interval(int(survives.sum()), n)
    strongest = float(survives.float().mean())
    rows.append({"attack": "strongest (all of the above)", "accuracy": strongest, "ci95": [lo, hi]})
    pgd40 = next(r for r in rows if r["attack"] == "pgd40")
    return {"n": n, "eps": eps, "clean_accuracy": rows[0]["accuracy"], "robust_accuracy": strongest,
            "ci95": [lo, hi], "pgd40_accuracy": pgd40["accuracy"], "rows": rows,
            "seconds": time.perf_counter() - start, "seed": seed}


def eps_curve(model, x: torch.Tensor, y: torch.Tensor, eps_values=(0.1, 0.2, 0.3, 0.4), restarts: int = 2,
              seed: int = 0, batch: int = 500, progress: ProgressFn | None = None) -> list[dict]:
    """Robust accuracy against eps (PGD-40 with `restarts`, and together with margin-loss PGD-100): it must fall as
    eps grows and reach 0 long before eps = 0.5 (every digit can be turned grey), or the gradients are masked."""
    from patchlab.attacks import make_attack
    from patchlab.stats import wilson_interval

    rows = []
    for i, eps in enumerate(eps_values):
        pgd = make_attack("pgd", model, eps=eps, steps=40, alpha=eps / 30, restarts=restarts, seed=seed,
                          batch_size=batch)
        ok = ~pgd(x, y).success
        both = ok & ~margin_pgd(model, eps=eps, steps=100, restarts=1, seed=seed + 1, batch_size=batch)(x, y).success
        row = {"eps": eps, "n": len(x)}
        for key, hit in (("pgd40_accuracy", ok), ("robust_accuracy", both)):
            row[key] = float(hit.float().mean())
            row[key.replace("accuracy", "ci95")] = list(wilson_interval(int(hit.sum()), len(x)))
        rows.append(row)
        if progress:
            progress(i + 1, len(eps_values), {"eps": eps, "robust_accuracy": row["robust_accuracy"]})
    return rows


__all__ = ["adversarial_loss", "AdvTrainConfig", "eps_at", "eps_curve", "evaluate_robustness", "margin_pgd",
           "MarginPGD", "METHODS", "mnist_split", "pgd_accuracy", "random_shift", "train_adversarial",
           "training_attack"]
