"""Stealing an ImageNet classifier from its top-k answers on a few hundred images plus augmentations.

The victim (efficientnet_lite0, 4.6M parameters) answers top-k probabilities. The thief owns no ImageNet training
set, only the shared sample (one image per class). Its student is smaller (3.7M parameters): the first six
stages of another public model (efficientnet_lite1), frozen, and a new head (1x1 conv, pooling, linear) trained
on the victim's answers for augmented views of the query images. Training a student from scratch on a few
thousand images does not get off the ground; starting from another model's features is what Knockoff Nets do.

Because the trunk is frozen, its features are computed once per query (and checkpointed as they are collected);
the head then trains in seconds.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from patchlab.artifacts import load_keyed_checkpoint, save_torch
from patchlab.errors import PatchlabError
from patchlab.transfer.common import ProgressFn, fingerprint, predict, rate
from patchlab.transfer.oracle import Oracle

CKPT_FORMAT = "patchlab-imagenet-theft-1"


class LiteStudent(nn.Module):
    """[0, 1] RGB -> 1000 logits: a frozen trunk (stem + first `stages` stages of a Lite model) and a trainable
    head (1x1 conv to `hidden` channels, ReLU6, global average pool, dropout, linear)."""

    def __init__(self, base: str = "efficientnet_lite1", stages: int = 6, hidden: int = 640, size: int = 224,
                 seed: int = 0):
        super().__init__()
        from patchlab.models import load_model

        donor = load_model(base, "cpu")
        self.normalize = donor.normalize
        self.trunk = nn.Sequential(donor.net.conv_stem, *list(donor.net.blocks)[:stages]).eval()
        self.trunk.requires_grad_(False)
        with torch.no_grad():
            channels = self.trunk(torch.zeros(1, 3, size, size)).shape[1]
        gen_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        self.head = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU6(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Dropout(0.2), nn.Linear(hidden, len(donor.labels)))
        torch.random.set_rng_state(gen_state)
        self.input_size = int(size)
        self.labels = list(donor.labels)
        self.name = f"student({base}[:{stages}]+head)"
        self.config = {"base": base, "stages": stages, "hidden": hidden, "size": size}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def train(self, mode: bool = True):
        super().train(mode)
        self.trunk.eval()  # frozen, BatchNorm folded or in eval: never in training mode
        return self

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


def augmented_views(image: torch.Tensor, size: int, count: int, seed: int) -> torch.Tensor:
    """`count` views of one image: the plain centre crop, then random resized crops (scale 0.25-1, ratio 3/4-4/3)
    with horizontal flips and brightness/contrast/saturation jitter, each drawn from its own seeded generator."""
    from patchlab.models.preprocess import preprocess

    views = [preprocess(image, size)]
    _, h, w = image.shape
    for j in range(1, count):
        g = torch.Generator().manual_seed(seed * 100_003 + j)
        u = torch.rand(8, generator=g)
        area = h * w * (0.25 + 0.75 * float(u[0]))
        ratio = math.exp(math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * float(u[1]))
        cw = int(round(min(w, math.sqrt(area * ratio))))
        ch = int(round(min(h, math.sqrt(area / ratio))))
        top, left = int(float(u[2]) * (h - ch)), int(float(u[3]) * (w - cw))
        crop = image[:, top:top + ch, left:left + cw].unsqueeze(0)
        v = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]
        if float(u[4]) < 0.5:
            v = v.flip(-1)
        v = v * (0.7 + 0.6 * float(u[5]))                                       # brightness
        mean = v.mean()
        v = (v - mean) * (0.7 + 0.6 * float(u[6])) + mean                      # contrast
        grey = v.mean(0, keepdim=True)
        v = (v - grey) * (0.6 + 0.8 * float(u[7])) + grey                      # saturation
        views.append(v.clamp(0, 1))
    return torch.stack(views)


@dataclass
class ImagenetTheftConfig:
    heldout: int = 200           # images kept for measuring (never queried)
    views: int = 10              # queries per query image: the centre crop plus views - 1 augmentations
    k: int = 5                   # the victim reveals its top-k probabilities
    base: str = "efficientnet_lite1"
    stages: int = 6
    hidden: int = 640
    epochs: int = 40
    batch_size: int = 128
    lr: float = 2e-3
    limit: int | None = None     # use only the first N images of the folder (small runs)
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def split_folder(folder: str | Path, cfg: ImagenetTheftConfig):
    """(query items, held-out items) of a labelled folder, a seeded random split."""
    from patchlab.data import labelled_folder

    items = labelled_folder(folder)
    if cfg.limit:
        items = items[:cfg.limit]
    if cfg.heldout >= len(items):
        raise PatchlabError(f"heldout={cfg.heldout} leaves no query images out of {len(items)}")
    order = torch.randperm(len(items), generator=torch.Generator().manual_seed(cfg.seed)).tolist()
    held = [items[i] for i in order[:cfg.heldout]]
    query = [items[i] for i in order[cfg.heldout:]]
    return query, held


def collect(oracle: Oracle, student: LiteStudent, query_items, cfg: ImagenetTheftConfig,
            checkpoint: Path | None, key: str, progress: ProgressFn | None, stop: threading.Event | None) -> dict:
    """Ask the oracle about every view of every query image; keep the victim's top-k and the student trunk's
    features. Checkpointed every 20 images, so an interrupted run resumes without asking again."""
    from patchlab.data import read_image

    state = {"format": CKPT_FORMAT, "key": key, "done": 0, "feats": [], "idx": [], "p": [], "labels": [],
             "queries": 0, "seconds": 0.0}
    saved = load_keyed_checkpoint(checkpoint, CKPT_FORMAT, key)
    if saved is not None:
        state = saved
    start = time.perf_counter()
    total = len(query_items)
    for i in range(int(state["done"]), total):
        views = augmented_views(read_image(query_items[i].path), student.input_size, cfg.views,
                                cfg.seed * 1_000_003 + i)
        ans = oracle(views)
        with torch.no_grad():
            state["feats"].append(student.features(views).half())
        state["idx"].append(ans.topk[0])
        state["p"].append(ans.topk[1].float())
        state["labels"].append(torch.full((len(views),), query_items[i].label))
        state["done"] = i + 1
        state["queries"] = int(state["queries"]) + len(views)
        last = i + 1 == total
        if checkpoint is not None and ((i + 1) % 20 == 0 or last):
            save_torch({**state, "seconds": float(state["seconds"]) + time.perf_counter() - start}, checkpoint)
        if progress is not None:
            progress(i + 1, total, {"queries": state["queries"]})
        if stop is not None and stop.is_set() and not last:
            break
    state["seconds"] = float(state["seconds"]) + time.perf_counter() - start
    return state


def train_head(student: LiteStudent, feats: torch.Tensor, targets: torch.Tensor, cfg: ImagenetTheftConfig,
               progress: ProgressFn | None = None) -> list[float]:
    """Fit the head on stored trunk features to soft (N, 1000) or hard (N,) targets; seeded, returns losses."""
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.Adam(student.head.parameters(), lr=cfg.lr, weight_decay=1e-4)
    steps = math.ceil(len(feats) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * steps)
    losses = []
    student.head.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)  # dropout draws
        for epoch in range(cfg.epochs):
            order = torch.randperm(len(feats), generator=gen)
            total = 0.0
            for b in range(steps):
                idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
                logp = student.head(feats[idx].float()).log_softmax(1)
                t = targets[idx]
                loss = F.nll_loss(logp, t) if t.dim() == 1 else -(t * logp).sum(1).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(idx)
            losses.append(total / len(feats))
            if progress is not None:
                progress(epoch + 1, cfg.epochs, {"loss": losses[-1]})
    student.head.eval()
    return losses


def soft_topk(idx: torch.Tensor, p: torch.Tensor, num_classes: int) -> torch.Tensor:
    from patchlab.transfer.oracle import Answer

    return Answer(idx[:, 0], topk=(idx, p)).soft_targets(num_classes)


def agreement(a: torch.Tensor, b_scores: torch.Tensor, b_pred: torch.Tensor) -> dict:
    """Top-1 agreement of predictions `a` with a victim (scores, top-1), and how often `a` is in its top 5."""
    n = len(a)
    top5 = b_scores.topk(5, dim=1).indices
    return {**rate("fidelity", int((a == b_pred).sum()), n),
            **rate("fidelity_top5", int((top5 == a[:, None]).any(1).sum()), n)}


def steal_imagenet(victim, folder: str | Path, config: ImagenetTheftConfig | None = None, *,
                   checkpoint: str | Path | None = None, progress: ProgressFn | None = None,
                   stop: threading.Event | None = None) -> dict:
    """Steal `victim` into a LiteStudent from top-k answers on augmented views of the query images; measure
    fidelity on the held-out images next to two baselines without the victim's answers (the same student
    trained on the query images' true labels, and the donor model itself). Returns JSON-ready results plus
    `model` (the student) and `heldout` (images, labels) for transfer attacks."""
    from patchlab.data import read_image
    from patchlab.models.preprocess import preprocess

    cfg = config or ImagenetTheftConfig()
    start = time.perf_counter()
    query_items, held_items = split_folder(folder, cfg)
    student = LiteStudent(cfg.base, cfg.stages, cfg.hidden, victim.input_size, cfg.seed)
    oracle = Oracle(victim, output="topk", k=cfg.k)
    key = fingerprint(cfg.to_dict(), [str(it.path.name) for it in query_items], victim.name)
    ckpt = Path(checkpoint) if checkpoint else None
    report = None if progress is None else (lambda s, t, m: progress(s, t + 2, m))
    state = collect(oracle, student, query_items, cfg, ckpt, key, report, stop)
    if int(state["done"]) < len(query_items):
        return {"experiment": "imagenet-theft", "stopped": True, "queries": int(state["queries"]),
                "settings": cfg.to_dict(), "seconds": time.perf_counter() - start}
    feats = torch.cat(state["feats"])
    soft = soft_topk(torch.cat(state["idx"]), torch.cat(state["p"]), len(student.labels))
    true = torch.cat(state["labels"])
    # held-out images: the centre crop only
    xh = torch.stack([preprocess(read_image(it.path), victim.input_size) for it in held_items])
    yh = torch.tensor([it.label for it in held_items])
    v_scores = _scores(victim, xh)
    v_pred = v_scores.argmax(1)
    rows = []
    baseline = LiteStudent(cfg.base, cfg.stages, cfg.hidden, victim.input_size, cfg.seed)
    train_head(baseline, feats, true, cfg)
    losses = train_head(student, feats, soft, cfg)
    for name, model in (("stolen student (top-%d answers)" % cfg.k, student),
                        ("same student, true labels instead of answers", baseline)):
        pred = predict(model, xh, 50)
        rows.append({"model": name, **agreement(pred, v_scores, v_pred),
                     **rate("accuracy", int((pred == yh).sum()), len(yh))})
    from patchlab.models import load_model

    donor = load_model(cfg.base, "cpu")
    from patchlab.transfer.common import at_size

    dpred = predict(at_size(donor, victim.input_size), xh, 50)
    rows.append({"model": f"{cfg.base} (the donor, whole, no theft)", **agreement(dpred, v_scores, v_pred),
                 **rate("accuracy", int((dpred == yh).sum()), len(yh))})
    if progress is not None:
        progress(len(query_items) + 2, len(query_items) + 2, {})
    # classes of held-out images the thief ever saw as the victim's top-1 answer on its queries
    seen = set(torch.cat(state["idx"])[:, 0].tolist())
    return {"experiment": "imagenet-theft", "victim": victim.name, "student": student.name,
            "student_parameters": student.parameter_count(),
            "victim_parameters": sum(p.numel() for p in victim.parameters()),
            "trainable_parameters": sum(p.numel() for p in student.head.parameters()),
            "query_images": len(query_items), "n": len(held_items), "queries": int(state["queries"]),
            "victim_accuracy": float((v_pred == yh).float().mean()), "seed": cfg.seed, "settings": cfg.to_dict(),
            "rows": rows, "fidelity": rows[0]["fidelity"], "fidelity_ci95": rows[0]["fidelity_ci95"],
            "heldout_top1_seen_in_answers": float(sum(int(c) in seen for c in v_pred.tolist()) / len(v_pred)),
            "loss_curve": losses, "collect_seconds": state["seconds"], "seconds": time.perf_counter() - start,
            "model": student, "heldout": (xh, yh), "donor": donor}


def _scores(model, x: torch.Tensor) -> torch.Tensor:
    from patchlab.transfer.common import scores

    return scores(model, x, 50)
