"""The transfer and theft experiments end to end on the standard data, shared by the CLI, the app and the
benchmarks: which data parts, which models are trained (and cached), which settings.

Data: `source="mnist"` uses the shared 10k MNIST test set (or a folder given as `mnist=`, with the 60k training
set if present); `source="digits8"` uses scikit-learn's bundled 8x8 digits (built in; the app's small runs).
Parts (all disjoint, seeded):

    theft / substitute   mnist: victim 4,000 · attacker 4,000 · test 2,000     digits8: 900 · 500 · 397
    algorithms (5x5)     mnist: 5 x 1,500 · seeds 100 · test 2,400             digits8: 5 x 250 · 50 · 497
    matrix (digits)      mnist: train 8,000 · test 2,000, plus digits8: train 1,297 · test 500

Trained models are cached in `work` (safetensors, keyed by settings and data) when it is given.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from patchlab.data import Digits
from patchlab.errors import PatchlabError
from patchlab.transfer.common import ProgressFn, scaled_progress, train_digits_model
from patchlab.transfer.data import digits8_parts, mnist_parts

SOURCES = ("mnist", "digits8")
THEFT_SPLIT = {"mnist": {"victim": 4000, "attacker": 4000, "test": -1},
               "digits8": {"victim": 900, "attacker": 500, "test": -1}}
ALGO_SPLIT = {"mnist": {"dnn": 1500, "lr": 1500, "svm": 1500, "dt": 1500, "knn": 1500, "seed": 100, "test": -1},
              "digits8": {"dnn": 250, "lr": 250, "svm": 250, "dt": 250, "knn": 250, "seed": 50, "test": -1}}
MATRIX_SPLIT = {"mnist": {"train": 8000, "test": -1}, "digits8": {"train": 1297, "test": -1}}
VICTIM_EPOCHS = {"mnist": 10, "digits8": 15}
VICTIM_LR = {"mnist": 1e-3, "digits8": 2e-3}


def check_source(source: str) -> str:
    if source not in SOURCES:
        raise PatchlabError(f"unknown data source '{source}' (choose from {', '.join(SOURCES)})")
    return source


def parts(source: str, sizes: dict[str, int], mnist: str | Path | None = None, seed: int = 0) -> dict[str, Digits]:
    if source == "mnist":
        return mnist_parts(sizes, mnist, seed)
    if source == "digits8":
        return digits8_parts(sizes, seed)
    raise PatchlabError(f"unknown data source '{source}' (choose from {', '.join(SOURCES)})")


def _cache(work: str | Path | None, sub: str) -> Path | None:
    return None if work is None else Path(work) / sub


def victim_cnn(source: str = "mnist", *, mnist=None, seed: int = 0, work=None, epochs: int | None = None,
               progress: ProgressFn | None = None):
    """The MNIST (or 8x8) CNN victim trained on the 'victim' part, and the theft parts."""
    check_source(source)
    p = parts(source, THEFT_SPLIT[source], mnist, seed)
    v = p["victim"]
    net = train_digits_model("cnn", v.images, v.labels, seed=seed, epochs=epochs or VICTIM_EPOCHS[source],
                             lr=VICTIM_LR[source],
                             cache_dir=_cache(work, "models"), name=f"victim-cnn-{source}", progress=progress)
    return net, p


# -- the digits transfer matrix -------------------------------------------------------------------------------
def digits_zoo(*, names: list[str] | None = None, mnist=None, seed: int = 0, work=None, include_mnist: bool = True,
               epochs: int | None = None, progress: ProgressFn | None = None) -> tuple[dict, dict]:
    """CNN, MLP and logistic regression on MNIST and on the 8x8 digits (cross-dataset pair); returns
    (models by name, the parts). Names: mnist-cnn, ..., d8-logreg; `names` trains only those."""
    sets = {"d8": parts("digits8", MATRIX_SPLIT["digits8"], None, seed)}
    if include_mnist:
        sets = {"mnist": parts("mnist", MATRIX_SPLIT["mnist"], mnist, seed), **sets}
    every = [f"{prefix}-{kind}" for prefix in sets for kind in ("cnn", "mlp", "logreg")]
    wanted = [n for n in every if names is None or n in names]
    unknown = [n for n in names or [] if n not in every]
    if unknown:
        raise PatchlabError(f"unknown model {', '.join(unknown)} (choose from {', '.join(every)})")
    models, total, i = {}, len(wanted), 0
    for prefix, p in sets.items():
        tr = p["train"]
        for kind in ("cnn", "mlp", "logreg"):
            if f"{prefix}-{kind}" not in wanted:
                continue
            ep = epochs or (8 if prefix == "mnist" else 30)
            models[f"{prefix}-{kind}"] = train_digits_model(
                kind, tr.images, tr.labels, seed=seed, epochs=ep, lr=2e-3 if kind != "cnn" else 1e-3,
                cache_dir=_cache(work, "models"), name=f"{prefix}-{kind}",
                progress=scaled_progress(progress, i, 1, total))
            i += 1
    return models, sets


def digits_matrix(*, sources: list[str] | None = None, targets: list[str] | None = None, evaluate_on: str = "mnist",
                  attack: str = "pgd", eps: float = 0.2, target=None, n: int = 1000, mnist=None, seed: int = 0,
                  work=None, include_mnist: bool = True, attack_options: dict | None = None,
                  progress: ProgressFn | None = None) -> dict:
    """The digits matrix at 28x28: MNIST models native, 8x8 models resizing inside. `evaluate_on` picks the
    evaluation images: the MNIST test part or the 8x8 test part (upsampled to 28x28)."""
    from patchlab.data import resize_digits
    from patchlab.transfer.matrix import transfer_matrix

    names = sorted(set(sources or []) | set(targets or [])) if sources and targets else None
    models, sets = digits_zoo(names=names, mnist=mnist, seed=seed, work=work, include_mnist=include_mnist,
                              progress=scaled_progress(progress, 0, 300, 1000))
    key = "mnist" if evaluate_on == "mnist" else "d8"
    if key not in sets:
        raise PatchlabError("evaluate_on='mnist' needs the MNIST models (include_mnist=True)")
    test = resize_digits(sets[key]["test"], 28)
    x, y = test.images[:n], test.labels[:n]
    res = transfer_matrix(_pick(models, sources), _pick(models, targets), x, y, attack=attack, eps=eps, target=target,
                          size=28, seed=seed,
                          num_classes=10, attack_options=attack_options,
                          progress=scaled_progress(progress, 300, 700, 1000))
    res["evaluated_on"] = test.source
    return res


def _pick(models: dict, names: list[str] | None) -> dict:
    if not names:
        return models
    unknown = [m for m in names if m not in models]
    if unknown:
        raise PatchlabError(f"unknown model {', '.join(unknown)} (choose from {', '.join(models)})")
    return {m: models[m] for m in names}


def imagenet_images(folder: str | Path | None, n: int, size: int, seed: int = 0):
    """(images at `size`, labels) from a labelled folder (the shared ImageNet sample by default: a seeded random
    n of its 700), or the 4 built-in photos when folder='builtin'."""
    from patchlab.models.preprocess import preprocess

    if folder == "builtin":
        from patchlab.data import load_samples

        samples = load_samples()[:n]
        return torch.stack([preprocess(s.image, size) for s in samples]), torch.tensor([s.label for s in samples])
    from patchlab.data import labelled_folder, read_image, shared_data_dir

    if folder is None:
        root = shared_data_dir()
        if root is None:
            raise PatchlabError("no ImageNet images: give images= a labelled folder (or 'builtin')")
        folder = root / "imagenet-sample"
    items = labelled_folder(folder)
    order = torch.randperm(len(items), generator=torch.Generator().manual_seed(seed)).tolist()[:n]
    chosen = [items[i] for i in order]
    images = torch.stack([preprocess(read_image(it.path), size) for it in chosen])
    return images, torch.tensor([it.label for it in chosen])


def imagenet_models(names: list[str] | None = None, device: str = "cpu") -> dict:
    """The zoo models by name (default: every zoo model whose weights are on this machine)."""
    from patchlab.models import list_models, shared_model

    if names is None:
        names = [spec.name for spec in list_models(available=True)]
    return {name: shared_model(name, device) for name in names}


def imagenet_matrix(*, sources: list[str] | None = None, targets: list[str] | None = None, images=None, n: int = 100,
                    attack: str = "pgd", eps: float = 4 / 255, target=None, seed: int = 0, batch_size: int = 16,
                    attack_options: dict | None = None, progress: ProgressFn | None = None) -> dict:
    from patchlab.transfer.matrix import transfer_matrix

    names = sorted(set((sources or []) + (targets or []))) or None
    if names is not None and (not sources or not targets):
        names = None  # an unspecified side means every available model
    zoo = imagenet_models(names)
    src, tgt = _pick(zoo, sources), _pick(zoo, targets)
    size = max(int(m.input_size) for m in zoo.values())
    x, y = imagenet_images(images, n, size, seed)
    res = transfer_matrix(src, tgt, x, y, attack=attack, eps=eps, target=target, size=size, seed=seed,
                          num_classes=1000, batch_size=batch_size, attack_options=attack_options, progress=progress)
    res["images"] = "builtin" if images == "builtin" else str(images or "shared imagenet-sample")
    return res


# -- ensembles ---------------------------------------------------------------------------------------------------
def ensemble(*, family: str = "digits", attack: str = "mi", eps: float | None = None, target=None, n: int | None = None,
             images=None, mnist=None, seed: int = 0, work=None, include_mnist: bool = True, fusion: str = "probs",
             attack_options: dict | None = None, progress: ProgressFn | None = None) -> dict:
    """Liu et al.'s Table 4 on the three Lites ('imagenet') or on the six digits models ('digits'); `fusion`:
    "probs" (Liu et al.) or "logits" (Dong et al. 2018), see `EnsembleModel`."""
    from patchlab.data import resize_digits
    from patchlab.transfer.ensemble import check_fusion, ensemble_table

    fusion = check_fusion(fusion)  # before any model is loaded or trained
    if family == "imagenet":
        zoo = imagenet_models()
        size = max(int(m.input_size) for m in zoo.values())
        x, y = imagenet_images(images, n or 100, size, seed)
        return ensemble_table(zoo, x, y, attack=attack, eps=eps or 16 / 255, target=target, size=size, seed=seed,
                              batch_size=16, fusion=fusion, attack_options=attack_options, progress=progress)
    if family != "digits":
        raise PatchlabError(f"unknown ensemble family '{family}' (choose digits or imagenet)")
    models, sets = digits_zoo(mnist=mnist, seed=seed, work=work, include_mnist=include_mnist,
                              progress=scaled_progress(progress, 0, 300, 1000))
    test = resize_digits(sets["mnist" if include_mnist else "d8"]["test"], 28)
    k = n or 1000
    return ensemble_table(models, test.images[:k], test.labels[:k], attack=attack, eps=eps or 0.2, target=target,
                          size=28, seed=seed, batch_size=250, fusion=fusion, attack_options=attack_options,
                          progress=scaled_progress(progress, 300, 700, 1000))


# -- Papernot's substitute attack ----------------------------------------------------------------------------------
def substitute(*, source: str = "mnist", config=None, eps: float = 0.3, attack: str = "fgsm", budget: int | None = None,
               mnist=None, work=None, checkpoint=None, attack_options: dict | None = None, compare: dict | None = None,
               progress: ProgressFn | None = None, stop=None) -> dict:
    from patchlab.transfer.substitute import SubstituteConfig, substitute_attack

    cfg = config or SubstituteConfig(seed_size=100 if source == "mnist" else 50, rounds=6 if source == "mnist" else 3)
    victim, p = victim_cnn(source, mnist=mnist, seed=cfg.seed, work=work, progress=scaled_progress(progress, 0, 1, 5))
    seeds, test = p["attacker"].images, p["test"]
    res = substitute_attack(victim, seeds, test.images, test.labels, cfg, eps=eps, attack=attack, budget=budget,
                            attack_options=attack_options, compare=compare, checkpoint=checkpoint, stop=stop,
                            progress=scaled_progress(progress, 1000, 4000, 5000) if progress else None)
    res["data"] = {"source": source, "victim_train": len(p["victim"]), "seed_pool": len(p["attacker"]),
                   "test": len(test)}
    return res


# -- the 5x5 cross-technique matrix ---------------------------------------------------------------------------------
def algorithms(*, source: str = "mnist", eps: float = 0.3, attack: str = "fgsm", substitute_config=None, mnist=None,
               seed: int = 0, work=None, progress: ProgressFn | None = None) -> dict:
    from patchlab.transfer.algorithms import algorithms_matrix, train_techniques
    from patchlab.transfer.substitute import SubstituteConfig

    p = parts(check_source(source), ALGO_SPLIT[source], mnist, seed)
    models = train_techniques(p, seed=seed, dnn_epochs=10 if source == "mnist" else 30,
                              cache_dir=_cache(work, "models"), progress=scaled_progress(progress, 0, 1, 4))
    cfg = substitute_config or SubstituteConfig(seed_size=len(p["seed"]), rounds=6 if source == "mnist" else 3,
                                                seed=seed)
    res = algorithms_matrix(models, p["seed"].images, p["test"].images, p["test"].labels, eps=eps, attack=attack,
                            substitute=cfg, seed=seed,
                            progress=scaled_progress(progress, 1000, 3000, 4000) if progress else None)
    res["data"] = {"source": source, **{k: len(v) for k, v in p.items()}}
    return res


# -- stealing a CNN, and attacking through the copy ----------------------------------------------------------------
def steal(*, source: str = "mnist", strategies=("random", "jacobian", "uncertainty", "knockoff"),
          outputs=("label", "probs"), budgets=None, mnist=None, seed: int = 0, work=None, config=None,
          progress: ProgressFn | None = None, stop=None) -> dict:
    """Extraction curves for each (strategy, output) against the victim CNN."""
    from patchlab.transfer.extraction import ExtractionConfig, extract

    check_source(source)
    base = config or ExtractionConfig(seed=seed)
    if budgets is None and source == "digits8":
        budgets = (50, 100, 200, 400)
    if budgets is not None:
        base = replace(base, budgets=tuple(budgets))
    runs = [(s, o) for s in strategies for o in outputs]
    configs = [replace(base, strategy=s, output=o) for s, o in runs]  # checks every setting before any training
    victim, p = victim_cnn(source, mnist=mnist, seed=seed, work=work)
    results = []
    for i, ((strategy, output), cfg) in enumerate(zip(runs, configs)):
        ckpt = _extraction_checkpoint(work, source, cfg)
        results.append(extract(victim, p["attacker"].images, p["test"].images, p["test"].labels, cfg, checkpoint=ckpt,
                               stop=stop, progress=scaled_progress(progress, i, 1, len(runs))))
    return {"experiment": "steal", "victim": victim.name, "n": len(p["test"]), "seed": seed,
            "data": {"source": source, **{k: len(v) for k, v in p.items()}}, "runs": results,
            "seconds": sum(r["seconds"] for r in results)}


def _extraction_checkpoint(work, source: str, cfg) -> Path | None:
    """One checkpoint per extraction setting, so `steal` and `theft_plus_plus` share a run when they agree."""
    from patchlab.transfer.common import fingerprint

    if work is None:
        return None
    return Path(work) / "checkpoints" / f"extract-{source}-{cfg.strategy}-{cfg.output}-{fingerprint(cfg.to_dict())}.pt"


def theft_plus_plus(*, source: str = "mnist", strategy: str = "uncertainty", output: str = "probs", budget: int = 3200,
                    attack: str = "pgd", eps: float = 0.3, n: int | None = None, mnist=None, seed: int = 0, work=None,
                    attack_options: dict | None = None, progress: ProgressFn | None = None) -> dict:
    """Steal the victim CNN with one strategy at one budget, then attack it through the copy, white-box, and
    through a model trained independently on the attacker's own labelled part (same architecture as the copy)."""
    from patchlab.transfer.extraction import ExtractionConfig, extract
    from patchlab.transfer.theft import attack_through_copies

    ExtractionConfig(strategy=strategy, output=output)  # checks the settings before any training
    victim, p = victim_cnn(source, mnist=mnist, seed=seed, work=work)
    if source == "digits8":
        budget = min(budget, 400)
    budgets = tuple(b for b in (100, 200, 400, 800, 1600, 3200, 6400) if b < budget) + (budget,)
    cfg = ExtractionConfig(strategy=strategy, output=output, budgets=budgets, seed=seed)
    ckpt = _extraction_checkpoint(work, source, cfg)
    stolen = extract(victim, p["attacker"].images, p["test"].images, p["test"].labels, cfg, checkpoint=ckpt,
                     progress=scaled_progress(progress, 0, 2, 4))
    a = p["attacker"]
    independent = train_digits_model(cfg.arch, a.images, a.labels, seed=seed + 1, epochs=20, lr=cfg.lr,
                                     cache_dir=_cache(work, "models"), name=f"independent-{source}", **cfg.model)
    test = p["test"]
    k = n or len(test)
    res = attack_through_copies(victim, {"stolen copy": stolen["model"], "independent model": independent},
                                test.images[:k], test.labels[:k], attack=attack, eps=eps, seed=seed,
                                attack_options=attack_options, progress=scaled_progress(progress, 2, 2, 4))
    from patchlab.transfer.theft import copy_agreement

    res.update({"extraction": {key: stolen[key] for key in ("strategy", "output", "queries", "fidelity",
                                                             "fidelity_ci95", "accuracy")},
                "independent_agreement": copy_agreement(independent, victim, test.images),
                "data": {"source": source, **{key: len(v) for key, v in p.items()}}})
    return res


# -- Tramèr's equation solving ------------------------------------------------------------------------------------
def steal_logreg(*, source: str = "mnist", queries: int | None = None, mnist=None, seed: int = 0) -> dict:
    """Train a softmax regression victim (scikit-learn, multinomial) and copy it exactly from d+1 confidence
    queries; parameter error and agreement on held-out images."""
    import time

    from sklearn.linear_model import LogisticRegression

    from patchlab.transfer.common import LinearModel, predict
    from patchlab.transfer.equation_solving import compare_parameters, extract_softmax_regression
    from patchlab.transfer.oracle import Oracle

    start = time.perf_counter()
    p = parts(check_source(source), THEFT_SPLIT[source], mnist, seed)
    v, test = p["victim"], p["test"]
    size = int(v.images.shape[-1])
    est = LogisticRegression(max_iter=2000).fit(v.images.flatten(1).numpy(), v.labels.numpy())
    victim = LinearModel.from_sklearn(est, size, "softmax-regression", dtype=torch.float64)
    oracle = Oracle(victim, output="probs", dtype=torch.float64)
    dim = size * size
    stolen = extract_softmax_regression(oracle, dim, queries=queries, shape=(1, size, size), seed=seed)
    err = compare_parameters(victim.weight.data, victim.bias.data, stolen)
    copy = LinearModel(stolen["weight"], stolen["bias"], size, "stolen")
    agree = float((predict(copy, test.images.double()) == predict(victim, test.images.double())).float().mean())
    return {"experiment": "tramer", "victim": "scikit-learn LogisticRegression (multinomial)", "dim": dim,
            "num_classes": stolen["num_classes"], "queries": stolen["queries"], "oracle_queries": oracle.queries,
            "unknowns": stolen["num_classes"] * (dim + 1),
            "identifiable_unknowns": (stolen["num_classes"] - 1) * (dim + 1),
            "victim_accuracy": float(est.score(test.images.flatten(1).numpy(), test.labels.numpy())),
            **err, "fidelity": agree, "n": len(test), "seed": seed, "residual": stolen["residual"],
            "seconds": time.perf_counter() - start, "data": {"source": source, "victim_train": len(v)}}


# -- ImageNet: steal efficientnet_lite0 --------------------------------------------------------------------------
def steal_imagenet(*, images=None, config=None, attack: str = "mifgsm", eps: float = 8 / 255, steps: int = 10,
                   work=None, progress: ProgressFn | None = None, stop=None) -> dict:
    """Lite0 stolen into a smaller student from top-k answers; then theft++ on the held-out images: attacks on
    the student vs white-box vs the donor model (independent)."""
    from patchlab.data import shared_data_dir
    from patchlab.models import load_model
    from patchlab.transfer.common import at_size
    from patchlab.transfer.imagenet import ImagenetTheftConfig, steal_imagenet as run
    from patchlab.transfer.theft import attack_through_copies

    folder = images
    if folder is None:
        root = shared_data_dir()
        if root is None:
            raise PatchlabError("no ImageNet images: give images= a labelled folder")
        folder = root / "imagenet-sample"
    cfg = config or ImagenetTheftConfig()
    victim = load_model("efficientnet_lite0", "cpu")
    ckpt = None if work is None else Path(work) / "checkpoints" / "imagenet-theft.pt"
    res = run(victim, folder, cfg, checkpoint=ckpt, stop=stop, progress=scaled_progress(progress, 0, 3, 5))
    if res.get("stopped"):
        return res
    xh, yh = res.pop("heldout")
    student, donor = res.pop("model"), res.pop("donor")
    pp = attack_through_copies(victim, {"stolen student": student, f"{cfg.base} (independent)": at_size(donor, 224)},
                               xh, yh, attack=attack, eps=eps, seed=cfg.seed, attack_options={"steps": steps},
                               batch_size=16, progress=scaled_progress(progress, 3, 2, 5))
    res["theft++"] = pp
    return res
