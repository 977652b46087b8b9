"""The two-class transfer task of the poisoning experiments: ImageNet superclasses from the shared sample.

The shared sample has one photo per ImageNet class, so a class of the task is a *superclass*: every dog breed in
the sample (indices 151-268, 82 photos) against every fish (0-6 and 389-397, 11 photos), the talk's dog -> fish
pair and the Koh & Liang / Shafahi et al. "Dogfish" setting. Dogs and fish are far apart in ImageNet feature space
and the superclass boundaries are standard (no judgement calls about which breeds belong).

The split is by *source photo*, so no test photo has a training view: per class, a seeded shuffle of its photos
puts `test_fraction` (at least one) into the test side. Each side is then filled with augmented views (see
`features.augmented_view`) until it has `train_per_class` / `test_per_class` views per class, spreading views
evenly over the class's photos (fish photos get more views than dog photos, which keeps the classes balanced).
This split is the poisoning topic's own; the patch evaluation's split (patchlab/patch/data.py) is unrelated.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from patchlab.errors import PatchlabError
from patchlab.progress import ProgressFn
from patchlab.registry import Registry


# ImageNet index ranges of each superclass (the standard WordNet subtrees)
SUPERCLASSES: Registry[tuple[int, ...]] = Registry("superclass")
for _name, _members, _title in (
    ("dog", tuple(range(151, 269)), "dogs (ImageNet 151-268)"),
    ("fish", tuple(range(0, 7)) + tuple(range(389, 398)), "fish (ImageNet 0-6, 389-397)"),
    ("bird", tuple(range(7, 25)) + tuple(range(80, 101)) + tuple(range(127, 147)), "birds"),
    ("cat", tuple(range(281, 294)), "cats (ImageNet 281-293)"),
    ("snake", tuple(range(52, 69)), "snakes (ImageNet 52-68)"),
    ("primate", tuple(range(365, 385)), "primates (ImageNet 365-384)"),
    ("insect", tuple(range(300, 320)), "insects (ImageNet 300-319)"),
):
    SUPERCLASSES.register(_name, _members, title=_title)


@dataclass(frozen=True)
class View:
    source: Path  # the photo
    seed: int     # 0: eval transform; >= 1: augmentation seed
    label: int    # task label: 0 = first class, 1 = second

    @property
    def name(self) -> str:
        return f"{self.source.stem}#{self.seed}"


@dataclass
class TaskConfig:
    classes: tuple[str, str] = ("dog", "fish")
    train_per_class: int = 400
    test_per_class: int = 100
    test_fraction: float = 1 / 3
    split_seed: int = 0
    max_sources: int | None = None  # use at most this many photos per class (small test runs)

    def to_dict(self) -> dict:
        return {**asdict(self), "classes": list(self.classes)}


@dataclass
class TransferTask:
    """Views, task labels and frozen penultimate features of both sides of the split."""

    config: TaskConfig
    model_name: str
    train: list[View]
    test: list[View]
    train_features: torch.Tensor
    test_features: torch.Tensor
    sources: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # class -> side -> photo names
    cache: object | None = None  # the FeatureCache that made the features (renders views)

    @property
    def class_names(self) -> tuple[str, str]:
        return self.config.classes

    @property
    def train_labels(self) -> torch.Tensor:
        return torch.tensor([v.label for v in self.train])

    @property
    def test_labels(self) -> torch.Tensor:
        return torch.tensor([v.label for v in self.test])

    def image(self, view: View) -> torch.Tensor:
        """The view as a float image in [0, 1] at the model's input size."""
        return self.cache.view_image(view.source, view.seed)

    def summary(self) -> dict:
        per = {}
        for c, name in enumerate(self.config.classes):
            per[name] = {"train_photos": len(self.sources[name]["train"]), "test_photos": len(self.sources[name]["test"]),
                         "train_views": sum(v.label == c for v in self.train),
                         "test_views": sum(v.label == c for v in self.test)}
        return {"model": self.model_name, **self.config.to_dict(), "per_class": per,
                "n_train": len(self.train), "n_test": len(self.test), "feature_dim": int(self.train_features.shape[1])}


def superclass_photos(folder: str | Path, name: str) -> list[Path]:
    """The photos of the folder whose ImageNet label lies in superclass `name`."""
    from patchlab.data import labelled_folder

    members = set(SUPERCLASSES.get(name))  # unknown names: one line with a suggestion
    return sorted(it.path for it in labelled_folder(folder) if it.label in members)


def _spread(sources: list[Path], count: int, label: int) -> list[View]:
    """`count` views spread evenly over `sources`: seed 0 (the plain photo) first, then augmentations."""
    per = math.ceil(count / len(sources))
    views = [View(src, seed, label) for seed in range(per) for src in sources]
    return views[:count]


def split_task(folder: str | Path, config: TaskConfig) -> tuple[list[View], list[View], dict]:
    """The views of both sides (no features yet)."""
    if len(config.classes) != 2 or config.classes[0] == config.classes[1]:
        raise PatchlabError(f"classes must name two different superclasses, got {config.classes}")
    if not 0 < config.test_fraction < 1:
        raise PatchlabError(f"test_fraction must lie in (0, 1), got {config.test_fraction}")
    if config.train_per_class < 1 or config.test_per_class < 1:
        raise PatchlabError("train_per_class and test_per_class must be >= 1")
    train, test, sources = [], [], {}
    for label, name in enumerate(config.classes):
        photos = superclass_photos(folder, name)
        gen = torch.Generator().manual_seed(config.split_seed * 1009 + label)
        photos = [photos[i] for i in torch.randperm(len(photos), generator=gen).tolist()]
        if config.max_sources:
            photos = photos[:config.max_sources]
        if len(photos) < 2:
            raise PatchlabError(f"{folder}: superclass '{name}' has {len(photos)} photo(s); two or more are needed")
        n_test = min(len(photos) - 1, max(1, round(config.test_fraction * len(photos))))
        test_src, train_src = sorted(photos[:n_test]), sorted(photos[n_test:])
        train += _spread(train_src, config.train_per_class, label)
        test += _spread(test_src, config.test_per_class, label)
        sources[name] = {"train": [p.name for p in train_src], "test": [p.name for p in test_src]}
    return train, test, sources


def build_task(folder: str | Path, model, config: TaskConfig | None = None, cache_dir: str | Path | None = None,
               progress: ProgressFn | None = None) -> TransferTask:
    """Split, render and featurise the task (features come from the on-disk cache when present)."""
    from patchlab.poisoning.features import FeatureCache

    config = config or TaskConfig()
    train, test, sources = split_task(folder, config)
    cache = FeatureCache(model, cache_dir)
    views = [(v.source, v.seed) for v in train + test]
    feats = cache.features(views, progress=progress)
    return TransferTask(config, getattr(model, "name", "model"), train, test, feats[:len(train)],
                        feats[len(train):], sources, cache)
