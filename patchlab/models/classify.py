"""Batched classification and top-k accuracy over image files or labelled folders."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import torch

from patchlab.data import labelled_folder, read_image
from patchlab.models.preprocess import preprocess
from patchlab.models.zoo import Classifier
from patchlab.progress import ProgressFn


def load_batch(paths: Iterable[str | Path], size: int) -> torch.Tensor:
    """Read and preprocess image files into one (N, 3, size, size) tensor."""
    return torch.stack([preprocess(read_image(p), size) for p in paths])


def iter_batches(paths: list, size: int, batch_size: int) -> Iterator[tuple[int, torch.Tensor]]:
    for start in range(0, len(paths), batch_size):
        yield start, load_batch(paths[start:start + batch_size], size)


@dataclass
class TopK:
    indices: list[int]
    probs: list[float]
    labels: list[str] = field(default_factory=list)

    def as_dict(self) -> list[dict]:
        return [{"index": i, "label": lab, "prob": p} for i, lab, p in zip(self.indices, self.labels, self.probs)]


def topk(model: Classifier, images: torch.Tensor, k: int = 5) -> list[TopK]:
    """Top-k classes for a preprocessed batch."""
    probs = model.predict(images)
    values, indices = probs.topk(min(k, probs.shape[-1]), dim=-1)
    return [TopK(i.tolist(), v.tolist(), [model.labels[j] for j in i.tolist()]) for v, i in zip(values.cpu(), indices.cpu())]


def classify_files(model: Classifier, paths: list[str | Path], k: int = 5, batch_size: int = 16) -> list[TopK]:
    out: list[TopK] = []
    for _, batch in iter_batches(list(paths), model.input_size, batch_size):
        out += topk(model, batch, k)
    return out


def accuracy(model: Classifier, folder: str | Path, limit: int | None = None, batch_size: int = 16,
             progress: ProgressFn | None = None) -> dict:
    """Top-1 and top-5 accuracy on a labelled folder."""
    items = labelled_folder(folder, limit=limit)
    labels = torch.tensor([it.label for it in items])
    paths = [it.path for it in items]
    correct1 = correct5 = 0
    start_time = time.perf_counter()
    for start, batch in iter_batches(paths, model.input_size, batch_size):
        top5 = model.predict(batch).topk(5, dim=-1).indices.cpu()
        y = labels[start:start + len(batch)]
        correct1 += int((top5[:, 0] == y).sum())
        correct5 += int((top5 == y[:, None]).any(1).sum())
        if progress:
            progress(start + len(batch), len(paths), {"top1": correct1 / (start + len(batch))})
    n = len(paths)
    return {"model": model.name, "n": n, "top1": correct1 / n, "top5": correct5 / n,
            "seconds": time.perf_counter() - start_time}
