"""Full-size poisoning results for docs/poisoning.md, beside the papers' numbers:

- influence vs leave-one-out (Pearson) for the exact, CG and LiSSA solvers on the dog-vs-fish head (n = 800) and on
  the MNIST CNN's last layer (n = 5000, the CNN body trained on 2000 other images);
- Koh & Liang's attack: flip rate for k = 1, 2, 5 poisoned training images (paper: 57% with one, 77% with two);
- Shafahi et al.'s feature collision: success over target/base pairs at watermark opacity 0 and 0.3 (paper: 100%
  with one poison in the transfer setting; goal here >= 90% over >= 50 pairs);
- the defense view of every successful poison.

Long: hours on two busy CPU cores, minutes on a GPU. Every attack appends to a JSONL log under
test-artifacts/poisoning-bench/ and a rerun resumes from it. Sizes: POISON_BENCH_TARGETS (default 100),
POISON_BENCH_PAIRS (default 50). Run: pytest -m benchmark -s tests/benchmarks/test_bench_poisoning.py
"""

from __future__ import annotations

import json
import os

import pytest

from patchlab.bench.targets import Target, check_targets, format_targets

pytestmark = [pytest.mark.benchmark, pytest.mark.timeout(0)]  # hours on a CPU; every attack resumes from its log

TARGETS = int(os.environ.get("POISON_BENCH_TARGETS", 100))
PAIRS = int(os.environ.get("POISON_BENCH_PAIRS", 50))
PAPER_KL = {1: 0.57, 2: 0.77}  # Koh & Liang 2017 §5.2: 335/591 with one image, 77% with two


@pytest.fixture(scope="module")
def out_dir(artifacts_dir):
    path = artifacts_dir / "poisoning-bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def task(imagenet_dir, lite0):
    from patchlab.poisoning.task import TaskConfig, build_task

    return build_task(imagenet_dir, lite0, TaskConfig())  # the default cache: computed once per machine


def _save(out_dir, name: str, obj) -> None:
    from patchlab.artifacts import write_text

    write_text(out_dir / f"{name}.json", json.dumps(obj, indent=1, default=float) + "\n")


def test_influence_against_leave_one_out(task, mnist_dir, out_dir):
    from patchlab.poisoning.influence import LissaConfig
    from patchlab.poisoning.problems import digits_setup, dogfish_setup, explain, misclassified

    rows = []
    # digits: the default problem (CNN body on 2000 images, head on 5000 others, 3000 test images)
    for name, setup in (("dogfish", dogfish_setup(task)), ("digits", digits_setup(mnist_dir))):
        # three fixed indices plus the first test point the head gets wrong (Koh & Liang's Fig. 2 choice); every
        # point run is reported and asserted
        wrong = misclassified(setup)
        picks = [(0, "first"), (1, "second"), (len(setup.test_labels) - 1, "last")] + \
            ([(wrong[0], "first misclassified")] if wrong else [])
        for test_index, why in picks:
            ex = explain(setup, test_index, loo=200, compare=("cg", "lissa"), lissa=LissaConfig(depth=1000, repeats=4))
            for c in ex.checks:
                rows.append({"problem": name, "test_index": test_index, "pick": why, "n_train": ex.prob.n,
                             "num_params": ex.prob.num_params, "test_loss": ex.influence.test_loss,
                             "solver": c.solver, "pearson": c.pearson, "spearman": c.spearman, "loo_points": c.n,
                             "seconds": ex.seconds})
    _save(out_dir, "influence_loo", rows)
    print("\nproblem  test  pick                 n_train  params  solver  Pearson  Spearman  (LOO points)")
    for r in rows:
        print(f"{r['problem']:8} {r['test_index']:5} {r['pick']:20} {r['n_train']:7} {r['num_params']:6}  "
              f"{r['solver']:6} {r['pearson']:.4f}   {r['spearman']:.4f}   ({r['loo_points']})")
    targets = [Target(f"influence vs leave-one-out, exact solver, {name} (lowest Pearson of its test points)",
                      min(r["pearson"] for r in rows if r["solver"] == "exact" and r["problem"] == name), ">=", 0.95,
                      note="issue 19 goal") for name in ("dogfish", "digits")]
    print(format_targets(targets))
    check_targets(targets)


def _koh_liang(task, lite0, out_dir, k: int, eps255: float, name: str) -> dict:
    from patchlab.poisoning.koh_liang import KohLiangConfig, choose_targets, run_targets, summarize, train_clean

    cfg = KohLiangConfig(num_poisons=k, eps=eps255 / 255, step=eps255 / 255 / 4)
    clean = train_clean(task, cfg.l2)
    targets = choose_targets(task, clean, TARGETS, seed=0)
    results = run_targets(task, lite0, cfg, targets, log=out_dir / f"{name}.jsonl", clean=clean)
    s = summarize(results)
    _save(out_dir, name.replace("-", "_"), s)
    return s


@pytest.mark.parametrize("k", [1, 2, 5])
def test_koh_liang_flip_rate(task, lite0, out_dir, k):
    s = _koh_liang(task, lite0, out_dir, k, 2, f"koh-liang-k{k}")
    print(f"\nk = {k}: flipped {s['flipped']}/{s['n']} = {s['flip_rate']:.1%} {s['ci95']}, per class "
          f"{ {c: round(v['flip_rate'], 3) for c, v in s['per_class'].items()} }, median confidence "
          f"{s.get('median_confidence_after')}, mean other predictions moved {s.get('mean_others_moved')}")
    if k in PAPER_KL:  # at least the paper's rate (issue 19's goal is k = 1)
        targets = [Target(f"Koh & Liang flip rate, k = {k}, n = {s['n']}", s["flip_rate"], ">=", PAPER_KL[k],
                          note="Koh & Liang 2017 §5.2")]
        print(format_targets(targets))
        check_targets(targets)


@pytest.mark.parametrize("k", [1, 2, 5])
def test_koh_liang_one_grey_level(task, lite0, out_dir, k):
    """The smallest box an 8-bit image allows (+-1/255): closer to Koh & Liang's sub-grey-level perturbation."""
    s = _koh_liang(task, lite0, out_dir, k, 1, f"koh-liang-eps1-k{k}")
    print(f"\neps 1/255, k = {k}: flipped {s['flipped']}/{s['n']} = {s['flip_rate']:.1%} {s['ci95']}")


@pytest.mark.parametrize("opacity", [0.0, 0.3])
def test_feature_collision_success(task, lite0, out_dir, opacity):
    from patchlab.poisoning.feature_collision import FeatureCollisionConfig, choose_pairs, run_pairs, summarize
    from patchlab.poisoning.koh_liang import train_clean
    cfg = FeatureCollisionConfig(opacity=opacity)
    clean = train_clean(task, cfg.l2)
    pairs = choose_pairs(task, clean, PAIRS, seed=0)
    results = run_pairs(task, lite0, cfg, pairs, log=out_dir / f"feature-collision-opacity{opacity:g}.jsonl",
                        clean=clean)
    s = summarize(results)
    _save(out_dir, f"feature_collision_opacity{opacity:g}", s)
    print(f"\nopacity {opacity:.0%}: success {s['successes']}/{s['n']} = {s['success_rate']:.1%} {s['ci95']}, "
          f"{s['per_direction']}, median poison L-inf {s['median_poison_linf'] * 255:.1f}/255")
    if opacity == 0.0:
        targets = [Target(f"feature collision success, one poison, n = {s['n']} pairs", s["success_rate"], ">=", 0.9,
                          note="issue 19 goal; Shafahi et al. 2018: 100%")]
        print(format_targets(targets))
        check_targets(targets)


def test_defense_view_table(out_dir):
    """Reads the attack results above (run them first) and prints the share of poisons in the top 1% by score."""
    files = sorted(out_dir.glob("koh_liang_*.json")) + sorted(out_dir.glob("feature_collision_opacity*.json"))
    if not files:
        pytest.fail("no attack results in test-artifacts/poisoning-bench; run the attack benchmarks first")
    table = {}
    print("\nattack                       poisons  loss   influence  k-NN   spectral  (share in the top 1%)")
    for f in files:
        d = json.loads(f.read_text()).get("defense")
        if not d:
            continue
        table[f.stem] = d
        print(f"{f.stem:28} {d['n_poisons']:7}  " + "  ".join(
            f"{d[s]['top1pct_rate']:.0%}".rjust(w) for s, w in (("loss", 4), ("influence", 9), ("knn", 5),
                                                                  ("spectral", 8))))
    _save(out_dir, "defense_view", table)
    assert table
