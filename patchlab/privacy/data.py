"""The data every privacy experiment shares: a private training part, a public part and a test part.

- the shared MNIST test set (10k, the only MNIST this project ships): private 6000 / public 2000 / test 2000;
- the full MNIST (a folder holding the 60k train files too): private = the 60k train set, public = 5000 of the
  10k test set, test = the other 5000 (Papernot et al. split MNIST's test set the same way);
- scikit-learn's 1797 8x8 digits (no folder): private 1000 / public 400 / test 397, for the quickest demos.

The private part trains DP-SGD models, PATE's teachers and the membership-inference pool; the public part is
PATE's unlabelled student data; the test part is only ever used to measure accuracy. Splits depend only on the
seed, so every command and the app see the same parts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from patchlab.data import Digits, load_digits, load_mnist, split_digits
from patchlab.errors import PatchlabError

MNIST10K_SIZES = {"private": 6000, "public": 2000, "test": -1}
SKLEARN_SIZES = {"private": 1000, "public": 400, "test": -1}


@dataclass(frozen=True)
class PrivacyData:
    private: Digits
    public: Digits
    test: Digits
    source: str

    @property
    def size(self) -> int:
        return int(self.private.images.shape[-1])

    def sizes(self) -> dict:
        return {"private": len(self.private), "public": len(self.public), "test": len(self.test)}


def _has_mnist_train(folder: Path) -> bool:
    return any((folder / n).exists() for n in ("train-images-idx3-ubyte", "train-images-idx3-ubyte.gz",
                                               "train-images.idx3-ubyte", "train-images.idx3-ubyte.gz"))


def privacy_data(folder: str | Path | None = None, seed: int = 0, sizes: dict[str, int] | None = None,
                 limit_private: int | None = None) -> PrivacyData:
    """The three parts from `folder` (MNIST IDX files) or, with folder=None, scikit-learn's digits.

    `sizes` overrides the default split of a single set (keys private, public, test; one may be -1 = the rest).
    `limit_private` keeps only the first N private examples (the parts stay disjoint)."""
    if folder is None:
        parts = split_digits(load_digits(None), sizes or SKLEARN_SIZES, seed=seed)
        source = "sklearn-digits"
    else:
        folder = Path(folder)
        if not folder.is_dir():
            raise PatchlabError(f"{folder}: no such folder (give a folder with MNIST's IDX files)")
        if _has_mnist_train(folder) and sizes is None:
            rest = split_digits(load_mnist(folder, "test"), {"public": 5000, "test": -1}, seed=seed)
            parts = {"private": load_mnist(folder, "train"), **rest}
            source = "mnist-60k"
        else:
            parts = split_digits(load_mnist(folder, "test"), sizes or MNIST10K_SIZES, seed=seed)
            source = "mnist-10k"
    missing = {"private", "public", "test"} - set(parts)
    if missing:
        raise PatchlabError(f"privacy_data: sizes= must name the parts private, public and test (missing {missing})")
    private = parts["private"]
    if limit_private is not None:
        if limit_private < 1:
            raise PatchlabError(f"limit_private must be >= 1, got {limit_private}")
        private = Digits(private.images[:limit_private], private.labels[:limit_private], private.source)
    return PrivacyData(private, parts["public"], parts["test"], source)


def default_model(size: int) -> str:
    """The digits model the privacy experiments use at this image size: the DP-SGD papers' CNN from 16 px up."""
    return "dpcnn" if size >= 16 else "cnn"


def model_kwargs(kind: str | None, activation: str, size: int) -> dict:
    """make_digits_model settings for `kind` (None: default_model) at `size`, narrower for 8x8 digits."""
    kind = kind or default_model(size)
    kw: dict = {"kind": kind, "size": size}
    if kind in ("cnn", "dpcnn", "mlp"):
        kw["activation"] = activation
    if kind == "cnn" and size < 16:
        kw.update(width=16, hidden=32)
    if kind == "scatter" and size < 16:
        kw.update(J=1, groups=9)
    return kw
