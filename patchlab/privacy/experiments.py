"""The full-size privacy experiments behind docs/privacy.md: four tables, each a list of cells.

Every cell's result is written to `<out>/<table>/<cell>.privacy-cell.json` as soon as it is done, and a rerun skips the cells
already there, so a long table survives interruptions (and a loaded machine) and can be extended cell by cell.

    tables = {"speed": speed_table, "dpsgd": dpsgd_table, "pate": pate_table, "mia": mia_table}
    rows = dpsgd_table(data, out="runs/privacy-bench")   # then markdown(rows, ...) for the docs

Run them with `patchlab privacy bench speed|dpsgd|pate|mia --out DIR` or `make bench`
(tests/benchmarks/test_bench_privacy.py).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch

from patchlab.artifacts import check_output, read_json, save_torch, write_json
from patchlab.privacy.data import PrivacyData
from patchlab.progress import ProgressFn
from patchlab.registry import Registry

EPSILONS = (0.5, 1.0, 2.0, 4.0, 8.0)
DELTA = 1e-5

# Opacus's examples/mnist_README.md: SampleConvNet (our "dpcnn", ReLU), batch 240, SGD without momentum, inputs
# normalised with MNIST's mean and std; three settings by privacy level (epochs, lr, clipping norm).
OPACUS_SETTINGS = {"eps~1.2": dict(epochs=15, lr=0.25, max_grad_norm=1.5),
                   "eps~2.9": dict(epochs=60, lr=0.15, max_grad_norm=1.0),
                   "eps~6.9": dict(epochs=45, lr=0.25, max_grad_norm=1.5)}
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def opacus_setting(eps: float) -> str:
    return "eps~1.2" if eps <= 2 else ("eps~2.9" if eps <= 4 else "eps~6.9")


# The variants of the epsilon-accuracy table: each trick alone, then together. "large batch" = 512 (vs the
# recipe's 240; ~1/12 of the private part per step) with lr 1 and 30 epochs: the best of four settings tried at
# eps = 2 (batch 240/512/1000, lr 0.25-4; docs/results/privacy.md).
LARGE_BATCH = dict(batch_size=512, lr=1.0, epochs=30, max_grad_norm=1.0)
VARIANTS: Registry[dict] = Registry("variant")
VARIANTS.register("opacus-recipe", {"activation": "relu", "recipe": "opacus"},
                  title="Opacus's MNIST example (ReLU, batch 240)")
VARIANTS.register("+tanh", {"activation": "tanh", "recipe": "opacus"}, title="+ tanh (tempered sigmoid)")
VARIANTS.register("+large-batch", {"activation": "relu", "recipe": "large"}, title="+ large batch (512, 30 epochs)")
VARIANTS.register("+tanh+large-batch", {"activation": "tanh", "recipe": "large"}, title="+ tanh + large batch")
VARIANTS.register("scatternet-linear", {"kind": "scatter", "recipe": "scatter"},
                  title="DP linear model on ScatterNet features")
SCATTER = dict(batch_size=512, lr=1.0, epochs=30, max_grad_norm=1.0)  # best of 4 tried at eps = 2


def _cell(out: Path | None, table: str, name: str, fn: Callable[[], dict]) -> dict:
    """A finished cell's row from `<out>/<table>/<name>.privacy-cell.json`, or run `fn` and save its row there."""
    path = out / table / f"{name}.privacy-cell.json" if out else None
    if path is not None:
        # .cell.json, .json: the names of cells saved by earlier versions
        for done in (path, path.with_name(f"{name}.cell.json"), path.with_name(f"{name}.json")):
            row = read_json(done) if done.is_file() else None
            if isinstance(row, dict) and row.get("cell") == name:
                return {k: v for k, v in row.items() if k not in ("artifact", "written_by")}
        check_output(path, "privacy-bench-cell", force=True)  # only our own cell may be replaced
    row = {"cell": name, **fn()}
    if path is not None:
        write_json(path, row, "privacy-bench-cell", indent=1)
    return row


def _rate(acc: float, n: int) -> dict:
    from patchlab.stats import wilson_interval

    return {"accuracy": acc, "ci95": list(wilson_interval(round(acc * n), n)), "n": n}


# -- table: speed ----------------------------------------------------------------------------------------------------
def speed_table(data: PrivacyData, out: Path | None = None, batch_size: int = 256, repeats: int = 3,
                progress: ProgressFn | None = None) -> list[dict]:
    """Seconds per epoch, non-private against DP-SGD with Opacus's hooks, ExpandedWeights and ghost clipping and
    with book-keeping clipping (patchlab.privacy.bk), same model, data and batch; modes interleaved, best of
    `repeats` epochs each."""
    from patchlab.models.digits import make_digits_model
    from patchlab.privacy.dpsgd import epoch_seconds

    rows = []
    models = {"dpcnn (tanh)": dict(kind="dpcnn", activation="tanh"), "cnn (tanh)": dict(kind="cnn", activation="tanh")}
    for i, (name, mk) in enumerate(models.items()):
        def run(mk=mk):
            r = epoch_seconds(lambda: make_digits_model(**mk, size=data.size, seed=0), data.private.images,
                              data.private.labels, batch_size, repeats=repeats)
            return {"model": name, **r, "threads": torch.get_num_threads()}
        # v4: channels-last on both sides (the faster non-private baseline) and patchlab's conv norm sampler;
        # v5: + book-keeping clipping and fastclip's Linear norm sampler
        rows.append(_cell(out, "speed", f"{mk['kind']}-b{batch_size}-v5", run))
        if progress is not None:
            progress(i + 1, len(models), {"model": name})
    return rows


# -- table: epsilon vs accuracy ----------------------------------------------------------------------------------
def _scatter_features(data: PrivacyData, out: Path | None):
    from patchlab.models.digits import make_digits_model

    path = out / "dpsgd" / "scatter.features.pt" if out else None
    if path is not None:
        for done in (path, path.with_name("scatter-features.pt")):  # the name before features had their own suffix
            if done.is_file():
                f = torch.load(done, weights_only=True)
                return f["private"], f["test"]
        check_output(path, "scatter-features", force=True)
    net = make_digits_model("scatter", size=data.size)
    feats = {"private": net.fixed_features(data.private.images), "test": net.fixed_features(data.test.images)}
    if path is not None:
        save_torch({"format": "patchlab-scatter-features-1", **feats}, path)
    return feats["private"], feats["test"]


def dpsgd_cell(data: PrivacyData, variant: str, eps: float | None, out: Path | None = None, seed: int = 0) -> dict:
    """One (variant, epsilon) cell; eps=None is the variant's model trained without privacy (Adam, `fit`)."""
    from patchlab.models.digits import accuracy, fit, make_digits_model
    from patchlab.privacy.dpsgd import DPSGDConfig, train_dpsgd

    v = VARIANTS[variant]
    x, y, xt, yt = data.private.images, data.private.labels, data.test.images, data.test.labels
    if v["recipe"] == "scatter":
        net = make_digits_model("scatter", size=data.size, seed=seed)
        x, xt = _scatter_features(data, out)
        model = net.trainable
        settings = dict(SCATTER)
    else:
        model = make_digits_model("dpcnn", size=data.size, activation=v["activation"], seed=seed)
        if v["recipe"] == "opacus":
            x, xt = (x - MNIST_MEAN) / MNIST_STD, (xt - MNIST_MEAN) / MNIST_STD
            settings = dict(batch_size=240, **OPACUS_SETTINGS[opacus_setting(eps if eps else 8.0)])
        else:
            settings = dict(LARGE_BATCH)
    t0 = time.perf_counter()
    if eps is None:
        fit(model, x, y, epochs=30, lr=1e-3, batch_size=64, seed=seed)
        info: dict = {"epsilon": None}
    else:
        res = train_dpsgd(model, x, y, DPSGDConfig(target_epsilon=eps, delta=DELTA, seed=seed,
                                                  physical_batch_size=1000, **settings))
        info = {"epsilon": res.epsilon, "epsilon_prv": res.epsilons.get("prv"),
                "noise_multiplier": res.noise_multiplier, "sample_rate": res.sample_rate, "steps": res.steps}
    return {"variant": variant, "target_epsilon": eps, **_rate(accuracy(model, xt, yt), len(yt)), **info,
            "settings": settings if eps is not None else {"epochs": 30, "optimizer": "adam", "lr": 1e-3},
            "seconds": time.perf_counter() - t0, "seed": seed, "n_train": len(y)}


def dpsgd_table(data: PrivacyData, out: Path | None = None, epsilons=EPSILONS, variants=tuple(VARIANTS),
                baselines: bool = True, progress: ProgressFn | None = None) -> list[dict]:
    cells = [(v, None) for v in variants if baselines] + [(v, e) for e in epsilons for v in variants]
    rows = []
    for i, (v, e) in enumerate(cells):
        name = f"{v}-{'nonprivate' if e is None else f'eps{e:g}'}"
        rows.append(_cell(out, "dpsgd", name, lambda v=v, e=e: dpsgd_cell(data, v, e, out)))
        if progress is not None:
            progress(i + 1, len(cells), {"cell": name})
    return rows


# -- table: PATE ---------------------------------------------------------------------------------------------------
# name -> (teachers, aggregator settings, queries[, other PATEConfig settings])
PATE_RUNS: Registry[tuple] = Registry("PATE run")
PATE_RUNS.register("lnmax-50", (50, dict(aggregator="lnmax", gamma=0.05), 100))
PATE_RUNS.register("gnmax-50", (50, dict(aggregator="gnmax", sigma=10.0), 100))
PATE_RUNS.register("confident-50", (50, dict(aggregator="confident", sigma=5.0, threshold=35.0, sigma1=10.0), 1000))
PATE_RUNS.register("confident-100", (100, dict(aggregator="confident", sigma=10.0, threshold=60.0, sigma1=20.0),
                                     1000))
# fewer queries, more threshold noise: the threshold step (charged on every query) dominates epsilon here
PATE_RUNS.register("confident-50-q100", (50, dict(aggregator="confident", sigma=10.0, threshold=35.0, sigma1=20.0),
                                         100))
# Teachers on fixed ScatterNet features (logistic regression; the features use no private data) and a student on
# the same features, self-trained on the public part. Aggregator settings from a search on the votes (answered
# count, label accuracy and data-dependent epsilon; docs/results/privacy.md); test accuracy played no part in it.
SCATTER_PATE = dict(teacher="scatter-linear", self_training=3)
PATE_RUNS.register("scatter-gnmax-50", (50, dict(aggregator="gnmax", sigma=8.0), 100, SCATTER_PATE))
for _q in (100, 300):
    PATE_RUNS.register(f"scatter-confident-250-q{_q}", (250, dict(aggregator="confident", sigma=15.0, threshold=225.0,
                                                                  sigma1=100.0), _q, SCATTER_PATE))
PATE_RUNS.register("scatter-confident-250-q600", (250, dict(aggregator="confident", sigma=15.0, threshold=200.0,
                                                            sigma1=100.0), 600, SCATTER_PATE))
# The recipe, every setting chosen on a validation split of 500 held-out public images (never the test part;
# scripts/pate_levers.py, docs/results/privacy.md "PATE levers on a validation split"), run with five seeds (the
# teachers' partition and initialisation, the aggregator's noise, the student). Queries: the most of the remaining
# 1500 public images that fit in a data-dependent eps of 2.
RECIPE_TEACHERS = 150
PATE_RECIPE = dict(teacher="scatter-linear", features="public-pca", feature_dim=48, teacher_self_training=0,
                   linear_optimizer="lbfgs", linear_epochs=10, linear_lr=1.0, linear_weight_decay=0.005,
                   student_weight_decay=0.005, curriculum=True, self_training=8, validation=500, target_epsilon=2.0)
PATE_RECIPE_AGG = dict(aggregator="confident", sigma=15.0, threshold=0.7 * RECIPE_TEACHERS, sigma1=90.0)
RECIPE_SEEDS = (0, 1, 2, 3, 4)
for _s in RECIPE_SEEDS:
    PATE_RUNS.register(f"recipe-{RECIPE_TEACHERS}-seed{_s}", (RECIPE_TEACHERS, PATE_RECIPE_AGG, 1500,
                                                             {**PATE_RECIPE, "seed": _s}))


def pate_table(data: PrivacyData, out: Path | None = None, runs=tuple(PATE_RUNS), workers: int | None = None,
               progress: ProgressFn | None = None) -> list[dict]:
    """PATE student accuracy and epsilon; teachers are trained once per teacher count (saved under out) and
    shared by the aggregators."""
    from patchlab.privacy.pate import PATEConfig, fixed_features, run_pate

    rows = []
    feats: dict = {}
    for i, name in enumerate(runs):
        teachers, agg, queries, *extra = PATE_RUNS[name]
        extra = extra[0] if extra else {}

        def run(teachers=teachers, agg=agg, queries=queries, extra=extra):
            cfg = PATEConfig(teachers=teachers, queries=min(queries, len(data.public)), pseudo_label=0.9,
                             workers=workers, **agg, **extra)
            folder = f"teachers-{teachers}" + ("-" + extra["teacher"] if extra.get("teacher") else "")
            if name.startswith("recipe-"):  # its own teachers per seed
                folder = f"recipe-teachers-{teachers}-seed{cfg.seed}"
                if not feats:  # the ScatterNet features once for every recipe run
                    feats.update(fixed_features(data, out / "pate" if out else None))
            res = run_pate(data, cfg, out_dir=out / "pate" / folder if out else None, scatter_features=feats or None)
            s = res.summary()
            s.pop("epsilon_curve")
            return s
        rows.append(_cell(out, "pate", name, run))
        if progress is not None:
            progress(i + 1, len(runs), {"cell": name})
    return rows


# -- table: membership inference -----------------------------------------------------------------------------------
def mia_table(data: PrivacyData, out: Path | None = None, epsilons=EPSILONS, shadows: int = 8, pool: int = 3000,
              workers: int | None = None, progress: ProgressFn | None = None) -> list[dict]:
    """LiRA and the loss attack against an overfit non-private CNN and DP-SGD CNNs at each epsilon. Each model
    trains on a random half of `pool` private examples (~1500: with ~500, DP-SGD models at eps <= 2 stayed near
    chance accuracy, which says nothing about leakage)."""
    from patchlab.privacy.mia import MIAConfig, run_mia

    cells = [None, *epsilons]
    rows = []
    for i, eps in enumerate(cells):
        name = f"pool{pool}-" + ("nonprivate" if eps is None else f"eps{eps:g}")

        def run(eps=eps):
            if eps is None:
                cfg = MIAConfig(shadows=shadows, pool=pool, trainer="fit", model="dpcnn", activation="relu",
                                epochs=60, lr=2e-3, batch_size=64, workers=workers)
            else:
                cfg = MIAConfig(shadows=shadows, pool=pool, trainer="dpsgd", model="dpcnn", activation="tanh",
                                epochs=30, lr=1.0, batch_size=256, target_epsilon=eps, workers=workers)
            res = run_mia(data.private, cfg, test=data.test,
                          out_dir=out / "mia" / f"models-{name}" if out else None)
            s = res.summary(curve_points=300)
            return s
        rows.append(_cell(out, "mia", name, run))
        if progress is not None:
            progress(i + 1, len(cells), {"cell": name})
    return rows


# -- markdown ------------------------------------------------------------------------------------------------------
def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def markdown(table: str, rows: list[dict]) -> str:
    if table == "speed":
        modes = [m for m in ("hooks", "ew", "ghost", "bk") if all(m in r["seconds"] for r in rows)]
        titles = {"hooks": "Opacus hooks", "ew": "ExpandedWeights", "ghost": "Opacus ghost clipping",
                  "bk": "book-keeping (patchlab)"}
        lines = ["| model | batch | non-private s/epoch (NCHW layout) | " + " | ".join(
            f"{titles[m]} s/epoch (ratio; CPU-time ratio)" for m in modes) + " |", "|---|---|---|" + "---|" * len(modes)]
        for r in rows:
            s, q, c = r["seconds"], r["ratio"], r.get("cpu_ratio", {})
            nchw = f" ({s['nonprivate-nchw']:.2f})" if "nonprivate-nchw" in s else ""
            lines.append(f"| {r['model']} | {r['batch_size']} | {s['nonprivate']:.2f}{nchw} | " + " | ".join(
                f"{s[m]:.2f} ({q[m]:.2f}x" + (f"; {c[m]:.2f}x)" if m in c else ")") for m in modes) + " |")
        return "\n".join(lines)
    if table == "dpsgd":
        variants = list(dict.fromkeys(r["variant"] for r in rows))
        eps = sorted({r["target_epsilon"] for r in rows if r["target_epsilon"] is not None})
        lines = ["| variant | non-private | " + " | ".join(f"ε = {e:g}" for e in eps) + " |",
                 "|---|---|" + "---|" * len(eps)]
        for v in variants:
            cells = {r["target_epsilon"]: r for r in rows if r["variant"] == v}
            out = [_pct(cells[None]["accuracy"]) if None in cells else "–"]
            for e in eps:
                r = cells.get(e)
                out.append("–" if r is None else f"{_pct(r['accuracy'])} (ε {r['epsilon']:.2f})")
            lines.append(f"| {v} | " + " | ".join(out) + " |")
        return "\n".join(lines)
    if table == "pate":
        lines = ["| run | teachers (examples each) | teacher acc. | aggregator | answered / queries | label acc. | "
                 "student acc. (validation) | ε data-dep. | ε data-indep. |", "|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            kind = r.get("teacher", "network")
            val = r.get("validation_accuracy")
            lines.append(f"| {r['cell']} | {r['teachers']} {kind} ({r['sizes']['per_teacher']}) | "
                         f"{_pct(r['teacher_accuracy_mean'])} | {r['aggregator']} | {r['answered']}/{r['queries']} | "
                         f"{_pct(r['label_accuracy'])} | {_pct(r['accuracy'])}"
                         + (f" ({_pct(val)})" if val is not None else "") + f" | {r['epsilon']:.2f} | "
                         f"{r['epsilon_data_independent']:.2f} |")
        return "\n".join(lines)
    if table == "mia":
        names = ["loss", "lira_online", "lira_online_fixed", "lira_offline", "lira_offline_fixed"]
        lines = ["| target models | train / test acc. | ε | AUC bound | " + " | ".join(
            f"{n} AUC, TPR@0.1%, TPR@1%" for n in names) + " |", "|---|---|---|---|" + "---|" * len(names)]
        for r in rows:
            a = r["attacks"]
            eps = "–" if r["epsilon"] is None else f"{r['epsilon']:.2f}"
            bound = "–" if r["auc_bound"] is None else f"{r['auc_bound']:.3f}"
            lines.append(f"| {r['cell']} | {_pct(r['train_accuracy'])} / {_pct(r['test_accuracy'])} | {eps} | "
                         f"{bound} | " + " | ".join(f"{a[n]['auc']:.3f}, {_pct(a[n]['tpr_at_0.1%'])}, "
                                                   f"{_pct(a[n]['tpr_at_1%'])}" for n in names) + " |")
        return "\n".join(lines)
    raise ValueError(table)


TABLES: Registry[Callable[..., list[dict]]] = Registry("benchmark table")
TABLES.register("speed", speed_table, title="DP-SGD seconds per epoch against non-private")
TABLES.register("dpsgd", dpsgd_table, title="accuracy against epsilon, with and without each trick")
TABLES.register("pate", pate_table, title="PATE student accuracy and epsilon")
TABLES.register("mia", mia_table, title="membership inference, non-private against DP-SGD at each epsilon")
