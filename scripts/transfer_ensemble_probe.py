"""Why the Liu et al. ensemble does not beat the best single model on the held-out MNIST CNN (docs/transfer.md,
"Why the digits ensemble gain is missing"). Crafts MI-FGSM ε = 0.2 examples on several sources from the digits
benchmark's models and prints every model's accuracy on them (n = 1,000 MNIST test digits, seeded).

    PYTHONPATH=. python scripts/transfer_ensemble_probe.py [base] [steps]

Models are trained (or loaded) exactly as `pytest -m benchmark tests/benchmarks/test_bench_transfer.py -k digits`
does, in test-artifacts/transfer-bench.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from patchlab.data import resize_digits, shared_data_dir
from patchlab.transfer import experiments as E
from patchlab.transfer.common import at_size, predict
from patchlab.transfer.ensemble import EnsembleModel
from patchlab.transfer.matrix import craft

WORK = Path(__file__).resolve().parents[1] / "test-artifacts" / "transfer-bench"


def main(parts: list[str]) -> None:
    models, sets = E.digits_zoo(mnist=shared_data_dir() / "mnist", work=WORK)
    test = resize_digits(sets["mnist"]["test"], 28)
    x, y = test.images[:1000], test.labels[:1000]
    W = {k: at_size(m, 28) for k, m in models.items()}
    for k, m in W.items():  # logit scale and confidence of each model on MNIST
        with torch.no_grad():
            z = torch.cat([m(x[i:i + 250]) for i in range(0, len(x), 250)])
        p_true = z.softmax(1)[torch.arange(len(y)), y]
        print(f"{k}: clean accuracy {(z.argmax(1) == y).float().mean():.3f}, logit std {z.std(1).mean():.2f}, "
              f"mean p[y] {p_true.mean():.3f}")

    def run(label, src, attack="mi", steps=20):
        t = time.perf_counter()
        adv = craft(src, x, y, attack, 0.2, None, 250, None, seed=0, steps=steps)
        acc = {k: 100 * float((predict(W[k], adv) == y).float().mean()) for k in W}
        cells = " ".join(f"{k} {v:.1f}" for k, v in acc.items())
        print(f"{label:42s} {cells}  ({time.perf_counter() - t:.0f}s)")

    five = [k for k in W if k != "mnist-cnn"]
    mnist_only = ["mnist-mlp", "mnist-logreg"]
    with_cnn = [k for k in W if k != "mnist-mlp"]
    if "base" in parts:
        for fusion in ("probs", "logits"):
            run(f"{fusion}: the five others of mnist-cnn", EnsembleModel([W[k] for k in five], fusion=fusion))
            run(f"{fusion}: mnist-mlp + mnist-logreg", EnsembleModel([W[k] for k in mnist_only], fusion=fusion))
            run(f"{fusion}: -mnist-mlp (the CNN a member)", EnsembleModel([W[k] for k in with_cnn], fusion=fusion))
        run("single mnist-mlp", W["mnist-mlp"])
        run("single mnist-logreg", W["mnist-logreg"])
    if "steps" in parts:
        for steps in (50, 100):
            run(f"probs: the five others, MI {steps} steps", EnsembleModel([W[k] for k in five]), steps=steps)
            run(f"single mnist-mlp, MI {steps} steps", W["mnist-mlp"], steps=steps)
        run("probs: the five others, PGD-20", EnsembleModel([W[k] for k in five]), attack="pgd")
        run("single mnist-mlp, PGD-20", W["mnist-mlp"], attack="pgd")


if __name__ == "__main__":
    main(sys.argv[1:] or ["base"])
