"""Choose PATE's settings on a validation split, never on the test part (docs/results/privacy.md, "PATE levers on a
validation split"). Every run is `patchlab.privacy.pate.run_pate`: the library's teachers, aggregator, analysis and
student; this script only loops over settings and prints a table.

    python scripts/pate_levers.py --grid "teachers=150,250 sigma1=45,90 threshold_frac=0.75,0.8" \
        [--set "sigma=15 feature_dim=48"] [--seeds 0] [--out test-artifacts/pate-levers] [--test]

Every run holds out the last `--validation` (500) public images: never queried, never seen by the student or by the
public PCA; their labels give `validation_accuracy`, the only accuracy printed unless `--test` is given (use --test
once, for the settings already chosen; it adds the test accuracies and the answered labels' accuracy, which needs
the public pool's true labels). `threshold_frac` sets T as a fraction of the teacher count. Queries: the
most of the public pool that fit in `--epsilon` (data-dependent, delta 1e-5; `target_epsilon`). Teachers are saved
under `--out` per teacher setting and reused by every aggregator and student setting.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

from patchlab.data import shared_data_dir
from patchlab.privacy.data import privacy_data
from patchlab.privacy.pate import PATEConfig, fixed_features, run_pate

# The recipe the search starts from (docs/privacy.md, PATE): linear teachers on public-PCA ScatterNet features,
# self-trained on the public pool; Confident-GNMax; the linear student self-trained on the public pool.
BASE = dict(teacher="scatter-linear", features="public-pca", feature_dim=48, teacher_self_training=2,
            aggregator="confident", sigma=15.0, pseudo_label=0.9, self_training=3, workers=1)
TEACHER_KEYS = ("teachers", "features", "feature_dim", "teacher_self_training", "teacher_pseudo_label", "seed",
                "linear_epochs", "linear_lr", "linear_weight_decay", "linear_optimizer")


def _value(text: str):
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def _pairs(spec: str) -> dict[str, list]:
    return {k: [_value(v) for v in vals.split(",")] for k, vals in (p.split("=", 1) for p in spec.split())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grid", default="", help='space-separated name=v1,v2 (PATEConfig fields or threshold_frac)')
    ap.add_argument("--set", default="", help="fixed name=value settings over BASE")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--epsilon", type=float, default=2.0)
    ap.add_argument("--validation", type=int, default=500)
    ap.add_argument("--out", default="test-artifacts/pate-levers")
    ap.add_argument("--test", action="store_true", help="also print the test accuracy (only for chosen settings)")
    args = ap.parse_args()
    data = privacy_data(shared_data_dir() / "mnist", seed=0)
    fixed = {k: v[0] for k, v in _pairs(args.set).items()}
    grid = _pairs(args.grid)
    out = Path(args.out)
    feats = fixed_features(data, out)  # once, for every run
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for values in itertools.product(*grid.values()):
            s = {**BASE, **fixed, **dict(zip(grid, values)), "seed": seed}
            frac = s.pop("threshold_frac", None)
            if frac is not None:
                s["threshold"] = frac * s["teachers"]
            pool = len(data.public) - args.validation
            cfg = PATEConfig(**{"queries": pool, **s}, validation=args.validation, target_epsilon=args.epsilon)
            folder = "-".join(f"{k}{s[k]}" for k in TEACHER_KEYS if k in s)
            res = run_pate(data, cfg, out_dir=out / folder, scatter_features=feats)
            r = res.summary()
            row = {k: r[k] for k in ("teachers", "feature_dim", "teacher_self_training", "sigma", "threshold",
                                     "sigma1", "self_training", "queries", "answered", "validation_accuracy",
                                     "epsilon", "epsilon_data_independent", "pseudo_labelled", "seed", "seconds")}
            if args.test:  # what the selection must not see: test accuracies and the public pool's true labels
                row.update(test_accuracy=r["accuracy"], label_accuracy=r["label_accuracy"],
                           teacher_accuracy_mean=r["teacher_accuracy_mean"], ensemble_accuracy=r["ensemble_accuracy"])
            rows.append(row)
            print(json.dumps(row), flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "levers.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
