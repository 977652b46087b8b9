"""The full-size privacy tables of docs/privacy.md (marker `benchmark`: `make bench`, never the default run).

Each cell's result is saved under test-artifacts/privacy-bench/ (`<table>/<cell>.privacy-cell.json`) and reused by a
rerun, so the tables can be built over several sessions; delete that folder to measure everything afresh. Each
table prints as markdown; targets print as a table and fail when missed.
The same tables: `patchlab privacy bench speed|dpsgd|pate|mia --out DIR`.
"""

from __future__ import annotations

import pytest

from patchlab.bench.targets import Target, check_targets, format_targets

pytestmark = pytest.mark.benchmark


@pytest.fixture(scope="module")
def mnist_split(mnist_dir):
    from patchlab.privacy.data import privacy_data

    return privacy_data(mnist_dir, seed=0)


@pytest.fixture(scope="module")
def bench_out(artifacts_dir):
    return artifacts_dir / "privacy-bench"


def _show(table, rows):
    from patchlab.privacy.experiments import markdown

    print(f"\n{table}\n" + markdown(table, rows))


def test_speed(mnist_split, bench_out):
    from patchlab.privacy.experiments import speed_table

    rows = speed_table(mnist_split, bench_out)
    _show("speed", rows)
    dp_modes = ("hooks", "ew", "ghost", "bk")  # "nonprivate-nchw" is the slower NCHW baseline, for reference
    for r in rows:  # per-sample clipping costs more than a plain epoch, whatever the load
        assert min(r["ratio"][k] for k in dp_modes) > 1.0
        assert r["seconds"]["nonprivate"] <= r["seconds"]["nonprivate-nchw"] * 1.05  # the baseline is the faster one
    # issue 18's goal: a DP-SGD epoch of our CNN at most 2x a non-private one at the same batch size (Beltran et
    # al. 2024 measured Opacus at 2.6-8x), in the default mode (book-keeping clipping)
    targets = []
    for r in rows:
        fastest = min(dp_modes, key=r["ratio"].get)
        targets.append(Target(f"DP-SGD epoch (bk) / non-private, {r['model']}, batch {r['batch_size']}",
                              r["ratio"]["bk"], "<=", 2.0, "x", f"Opacus ghost {r['ratio']['ghost']:.2f}x; "
                              f"fastest mode: {fastest}"))
    print(format_targets(targets))
    check_targets(targets)


def test_dpsgd_epsilon_accuracy(mnist_split, bench_out):
    from patchlab.privacy.experiments import dpsgd_table

    rows = dpsgd_table(mnist_split, bench_out)
    _show("dpsgd", rows)
    for r in rows:
        if r["epsilon"] is not None:
            assert r["epsilon"] <= r["target_epsilon"] + 1e-9  # never spends more than asked
    acc = {(r["variant"], r["target_epsilon"]): r["accuracy"] for r in rows}
    for eps in (1.0, 2.0, 4.0, 8.0):  # accuracy grows with epsilon for our recipe
        assert acc[("+tanh+large-batch", eps)] >= acc[("+tanh+large-batch", 0.5)] - 0.02
    # issue 18: beat Opacus's own MNIST example at equal epsilon and equal data (its recipe run on our split)
    targets = []
    for eps in (0.5, 1.0, 2.0, 4.0, 8.0):
        ours = {v: a for (v, e), a in acc.items() if e == eps and v != "opacus-recipe"}
        best = max(ours, key=ours.get)
        targets.append(Target(f"accuracy at eps {eps:g}: our best - Opacus recipe", 100 * (ours[best] -
                              acc[("opacus-recipe", eps)]), ">=", 0.0, "points", f"ours: {best}"))
    print(format_targets(targets))
    check_targets(targets)


def test_pate(mnist_split, bench_out):
    from patchlab.privacy.experiments import pate_table

    rows = pate_table(mnist_split, bench_out)
    _show("pate", rows)
    for r in rows:
        assert r["epsilon"] <= r["epsilon_data_independent"] + 1e-9
    # the papers' anchors on our 6000 private images (2016: 98.0% at eps 2.04; 2018: eps < 1 with Confident-GNMax).
    # The 95% goal is judged on the recipe chosen on the validation split, over its seeds (not the best test row)
    recipe = [r for r in rows if r["cell"].startswith("recipe-")]
    assert len(recipe) >= 5 and all(r["epsilon"] <= 2.0 + 1e-9 for r in recipe)
    acc = [100 * r["accuracy"] for r in recipe]
    low = min((r for r in rows if r["aggregator"] == "confident" and r["answered"] > 0), key=lambda r: r["epsilon"])
    targets = [Target(f"PATE recipe (chosen on validation): mean student accuracy over {len(recipe)} seeds at "
                      "data-dependent eps <= 2", sum(acc) / len(acc), ">=", 95.0, "%",
                      f"range {min(acc):.1f}-{max(acc):.1f}%, eps <= {max(r['epsilon'] for r in recipe):.2f}, "
                      f"{min(r['answered'] for r in recipe)}-{max(r['answered'] for r in recipe)} answered"),
               Target("Confident-GNMax run with eps < 1 (lowest eps of a run that answered)", low["epsilon"], "<=",
                      1.0, "", f"{low['cell']}: {low['answered']} answered, student {100 * low['accuracy']:.1f}%")]
    print(format_targets(targets))
    check_targets(targets)


def test_mia(mnist_split, bench_out):
    from patchlab.privacy.experiments import mia_table

    rows = mia_table(mnist_split, bench_out)
    _show("mia", rows)
    for r in rows:
        assert not any(r["bound_violations"].values()), r["cell"]  # a point above the DP bound is a bug
        for name, a in r["attacks"].items():
            if r["auc_bound"] is not None:
                assert a["auc"] <= r["auc_bound"], (r["cell"], name)
    leak = next(r for r in rows if r["epsilon"] is None)["attacks"]["lira_online_fixed"]
    targets = [Target("LiRA (online, fixed variance) AUC against the overfit non-private CNN", leak["auc"], ">=", 0.55,
                      note="chance is 0.5")]
    print(format_targets(targets))
    check_targets(targets)
