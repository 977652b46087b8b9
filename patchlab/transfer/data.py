"""Digit data for the transfer and theft experiments: disjoint parts of MNIST, and scikit-learn's 8x8 digits.

The shared data holds only the official 10k MNIST *test* set, so by default every part (victim training data, the
attacker's pool, the evaluation set) is a disjoint random part of those 10,000 images. When `folder` also holds
the 60k training files, the training-side parts come from the 60k set and "test" is the official test set.
"""

from __future__ import annotations

from pathlib import Path

from patchlab.data import Digits, load_digits, load_mnist, split_digits
from patchlab.errors import PatchlabError


def mnist_folder(folder: str | Path | None = None) -> Path:
    """`folder`, or the shared data's mnist/ folder; a one-line error when neither exists."""
    if folder is not None:
        path = Path(folder)
        if not path.is_dir():
            raise PatchlabError(f"{path}: no such MNIST folder")
        return path
    from patchlab.data import shared_data_dir

    root = shared_data_dir()
    if root is None or not (root / "mnist").is_dir():
        raise PatchlabError("no MNIST found: give mnist= a folder with the IDX files (t10k-images-idx3-ubyte[.gz], "
                            "t10k-labels-idx1-ubyte[.gz], optionally the train-* files)")
    return root / "mnist"


def has_mnist_train(folder: Path) -> bool:
    return any((folder / f"train-images{sep}idx3-ubyte{gz}").exists() for sep in ("-", ".") for gz in ("", ".gz"))


def mnist_parts(sizes: dict[str, int], folder: str | Path | None = None, seed: int = 0) -> dict[str, Digits]:
    """Disjoint parts of MNIST by name, e.g. {"victim": 5000, "attacker": 2500, "test": -1} (-1: the rest).

    With only the 10k test set (the shared data) every part is drawn from it. With the 60k training files in
    `folder`, the parts other than "test" are drawn from the training set and "test" is the official test set
    (its first `sizes["test"]` images, or all of it for -1)."""
    path = mnist_folder(folder)
    if not has_mnist_train(path):
        return split_digits(load_mnist(path, "test"), sizes, seed)
    train_sizes = {k: v for k, v in sizes.items() if k != "test"}
    parts = split_digits(load_mnist(path, "train"), train_sizes, seed) if train_sizes else {}
    if "test" in sizes:
        test = load_mnist(path, "test")
        n = len(test) if int(sizes["test"]) == -1 else min(int(sizes["test"]), len(test))
        parts["test"] = Digits(test.images[:n], test.labels[:n], "mnist-test")
    return parts


def digits8_parts(sizes: dict[str, int], seed: int = 0) -> dict[str, Digits]:
    """Disjoint parts of scikit-learn's bundled 8x8 digits (1,797 images, built in, no download)."""
    return split_digits(load_digits(None), sizes, seed)
