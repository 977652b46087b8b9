"""PatchCleanser (Xiang, Mahloujifar, Mittal 2022): certifiably robust patch defense by double masking.

Model-agnostic: it wraps any classifier (a zoo model, a digits CNN, anything mapping [0, 1] images to logits).

Inference (the two-round rule). Predict with each mask of an R-covering set (`masks.mask_set`).
  I.   All one-mask predictions agree: that is the output.
  II.  Otherwise, for each mask whose prediction differs from the majority (a "disagreer"), predict with that mask
       and every other mask together; if all of those agree with the disagreer, output it (the patch was under it).
  III. If no disagreer survives, output the majority.
Certification. If every one-mask and two-mask prediction equals label y, then for any patch the set covers the
defended output is y: the mask covering the patch sees only clean pixels, with or without any second mask.

Cost: K one-mask passes plus K (K - 1) / 2 pairs for a certificate (K = 36: 666 passes). This implementation
reuses the unmasked early features outside each mask (`local.MaskedForward`, about 2x for EfficientNet-Lite), runs
pairs in batches, orders them by the one-mask margins so that a failing pair tends to come first, and stops as
soon as one pair disagrees; an image whose first round is not unanimous for y is rejected after K passes.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

from patchlab.defenses.local import MaskedForward
from patchlab.defenses.masks import MaskSet, mask_set
from patchlab.errors import PatchlabError
from patchlab.progress import ProgressFn



@dataclass
class Verdict:
    """PatchCleanser's answer for one image."""

    prediction: int           # the defended prediction
    certified: bool           # every one- and two-mask prediction equals `certified_for` (see `max_pairs`)
    certified_for: int        # the label the certificate is about (the true label, else the prediction)
    case: int                 # 1 unanimous first round, 2 a disagreer survived round two, 3 majority
    undefended: int           # the plain model's prediction
    passes: int               # masked forward passes spent on this image
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def _majority(preds: torch.Tensor) -> int:
    """Most frequent label; ties go to the smaller class index."""
    values, counts = preds.unique(return_counts=True)
    return int(values[counts.argmax()])


class PatchCleanser:
    """Double-masking defense around `model` for square patches of up to `patch` (area fraction or side in pixels),
    with `k` x `k` masks filled with the grey value `fill`."""

    name = "patchcleanser"

    def __init__(self, model: nn.Module, patch: float | int = 0.02, k: int = 6, fill: float = 0.5,
                 batch_size: int = 64, reuse: bool = True, image_size: int | None = None):
        size = int(image_size or getattr(model, "input_size", 0))
        if size < 2:
            raise PatchlabError("PatchCleanser needs the model's input size (image_size=)")
        if not 0 <= fill <= 1:
            raise PatchlabError(f"fill must lie in [0, 1], got {fill}")
        if batch_size < 1:
            raise PatchlabError(f"batch_size must be at least 1, got {batch_size}")
        self.model, self.image_size, self.batch_size = model, size, int(batch_size)
        self.masks: MaskSet = mask_set(size, patch, k)
        self.engine = MaskedForward(model, self.masks, fill, reuse)
        self.settings = {"patch_side": self.masks.patch, "mask_size": self.masks.size, "masks": len(self.masks),
                         "pairs": self.masks.pairs, "fill": float(fill), "reuse": self.engine.reuses_features}

    # -- batching helpers -------------------------------------------------------------------------------------------
    def _chunks(self, items: list) -> list[list]:
        return [items[i:i + self.batch_size] for i in range(0, len(items), self.batch_size)]

    def _all_equal(self, pairs: list[tuple[int, int]], label: int) -> bool:
        """Every pair predicts `label`. Batches grow from a quarter of `batch_size` (a failing pair, if any, tends
        to sit at the front of the margin order) to the full size, and the first batch with a failure stops it."""
        size, start = max(1, self.batch_size // 4), 0
        while start < len(pairs):
            chunk = pairs[start:start + size]
            if not bool((self.engine.double(chunk).argmax(1) == label).all()):
                return False
            start += len(chunk)
            size = min(2 * size, self.batch_size)
        return True

    def _second_round(self, first: torch.Tensor, preds: torch.Tensor, majority: int) -> int | None:
        """The first disagreer mask (in index order) whose every two-mask prediction equals its own, or None.

        All disagreer rows advance together in waves of a few pairs each (one batch), and a row drops out at its
        first disagreeing pair, so a spurious disagreer costs a few passes instead of K - 1. Within a row the
        masks least likely to keep the disagreer's label go first."""
        k = len(self.masks)
        probs = first.float().softmax(1).cpu()
        todo = {}
        for i in (preds != majority).nonzero().flatten().tolist():
            others = [j for j in range(k) if j != i]
            todo[i] = sorted(others, key=lambda j: float(probs[j, preds[i]]))
        while todo:
            lowest = min(todo)
            if not todo[lowest]:
                return lowest  # every lower disagreer already failed
            per_row = max(2, self.batch_size // len(todo))
            batch = [(i, j) for i in sorted(todo) for j in todo[i][:per_row]]
            got = self.engine.double(batch).argmax(1).cpu()
            failed = {i for (i, _), y in zip(batch, got.tolist()) if y != int(preds[i])}
            for i in list(todo):
                todo[i] = todo[i][per_row:]
                if i in failed:
                    del todo[i]
        return None

    def pair_order(self, first: torch.Tensor, target: int) -> list[tuple[int, int]]:
        """Every mask pair, the ones most likely to break a certificate for `target` first: ranked by the one-mask
        margins (`first`: the K one-mask logits), least confident masks first."""
        k = len(self.masks)
        logp = first.float().log_softmax(1).cpu()
        others = logp.clone()
        others[:, target] = float("-inf")
        margin = logp[:, target] - others.max(1).values
        rank = torch.empty(k, dtype=torch.long)
        rank[margin.argsort()] = torch.arange(k)
        pairs = sorted(((i, j) for i in range(k) for j in range(i + 1, k)),
                       key=lambda p: (int(rank[p[0]] + rank[p[1]]), p))
        # the pass starts from its first mask's map: put the less confident mask first
        return [(i, j) if rank[i] < rank[j] else (j, i) for i, j in pairs]

    # -- one image ----------------------------------------------------------------------------------------------------
    def verdict(self, image: torch.Tensor, label: int | None = None, certify: bool = True,
                max_pairs: int | None = None) -> Verdict:
        """The defended prediction of one (3, S, S) image in [0, 1], and whether it is certified for `label`
        (None: for the defended prediction itself, which needs no ground truth, e.g. live). `max_pairs`: check
        only the first N pairs of `pair_order` (hardest first), a cheaper screen for model selection that can only
        overstate the certificate; None checks every pair (the certificate)."""
        if image.shape[-1] != self.image_size or image.shape[-2] != self.image_size:
            raise PatchlabError(f"PatchCleanser expects {self.image_size}x{self.image_size} images, "
                                f"got {tuple(image.shape[-2:])}")
        if max_pairs is not None and max_pairs < 0:
            raise PatchlabError(f"max_pairs must be None or >= 0, got {max_pairs}")
        start = time.perf_counter()
        eng = self.engine
        eng.passes = 0
        eng.begin(image)
        undefended = int(eng.clean().argmax(1))
        k = len(self.masks)
        first = torch.cat([eng.single(c) for c in self._chunks(list(range(k)))])
        preds = first.argmax(1).cpu()

        majority = _majority(preds)
        prediction, case = majority, 1
        if not bool((preds == majority).all()):
            survivor = self._second_round(first, preds, majority)
            prediction, case = (majority, 3) if survivor is None else (int(preds[survivor]), 2)

        target = prediction if label is None else int(label)
        certified = False
        if certify and bool((preds == target).all()):
            certified = self._all_equal(self.pair_order(first, target)[:max_pairs], target)
        return Verdict(prediction, certified, target, case, undefended, eng.passes, time.perf_counter() - start)

    # -- batches ------------------------------------------------------------------------------------------------------
    def certify(self, images: torch.Tensor, labels: torch.Tensor | list[int] | None = None,
                progress: ProgressFn | None = None, max_pairs: int | None = None) -> list[Verdict]:
        """Verdicts for (N, 3, S, S) images; certificates for `labels` (None: for the defended predictions),
        over the first `max_pairs` pairs only when set (see `verdict`)."""
        out = []
        for n, image in enumerate(images):
            out.append(self.verdict(image, None if labels is None else int(labels[n]), max_pairs=max_pairs))
            if progress:
                done = out[-1]
                progress(n + 1, len(images), {"certified": sum(v.certified for v in out) / len(out),
                                              "passes": done.passes})
        return out

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """(N,) defended predictions (no certification work)."""
        return torch.tensor([self.verdict(x, certify=False).prediction for x in images])

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.predict(images)

    def prediction_map(self, image: torch.Tensor) -> torch.Tensor:
        """(K, K) labels of every one-mask (diagonal) and two-mask pass, all 666 computed (no early exit): the
        reference's precomputed form, for checking `verdict` and as the baseline the speed-up is measured against."""
        k = len(self.masks)
        eng = self.engine
        eng.begin(image)
        out = torch.empty((k, k), dtype=torch.long)
        out[range(k), range(k)] = torch.cat([eng.single(c) for c in self._chunks(list(range(k)))]).argmax(1).cpu()
        pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
        for chunk in self._chunks(pairs):
            got = eng.double(chunk).argmax(1).cpu()
            for (i, j), y in zip(chunk, got.tolist()):
                out[i, j] = out[j, i] = y
        return out


def rule_from_map(prediction_map: torch.Tensor) -> tuple[int, int]:
    """(prediction, case) of the two-round rule read off a full prediction map."""
    first = prediction_map.diagonal()
    majority = _majority(first)
    if bool((first == majority).all()):
        return majority, 1
    for i in (first != majority).nonzero().flatten().tolist():
        if bool((prediction_map[i] == first[i]).all()):
            return int(first[i]), 2
    return majority, 3


def summarize(verdicts: list[Verdict], labels: list[int] | torch.Tensor) -> dict:
    """certified_accuracy, clean_accuracy (defended), undefended accuracy, with Wilson 95% intervals, and costs."""
    from patchlab.stats import wilson_interval

    n = len(verdicts)
    labels = [int(y) for y in labels]
    cert = sum(v.certified and v.certified_for == y for v, y in zip(verdicts, labels))
    clean = sum(v.prediction == y for v, y in zip(verdicts, labels))
    plain = sum(v.undefended == y for v, y in zip(verdicts, labels))
    seconds = sum(v.seconds for v in verdicts)
    return {"n": n,
            "certified_accuracy": cert / n if n else 0.0, "certified_ci95": list(wilson_interval(cert, n)),
            "clean_accuracy": clean / n if n else 0.0, "clean_ci95": list(wilson_interval(clean, n)),
            "undefended_accuracy": plain / n if n else 0.0, "undefended_ci95": list(wilson_interval(plain, n)),
            "passes_per_image": sum(v.passes for v in verdicts) / n if n else 0.0,
            "seconds_per_image": seconds / n if n else 0.0, "seconds": seconds}


__all__ = ["PatchCleanser", "Verdict", "rule_from_map", "summarize"]
