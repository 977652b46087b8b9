"""`patchlab privacy ...`: JSON output with the shared keys, files written, one-line errors."""

from __future__ import annotations

import json

import pytest

from patchlab.artifacts import identify
from patchlab.cli import main


def _json(capsys, args) -> dict:
    assert main(args) == 0
    return json.loads(capsys.readouterr().out)


def test_epsilon_command(capsys):
    out = _json(capsys, ["privacy", "epsilon", "--sigma", "4", "-q", "0.01", "--steps", "10000", "--json"])
    assert out["epsilon"] == pytest.approx(out["epsilon_opacus_rdp"], rel=1e-6)
    assert out["epsilon_opacus_prv"] < out["epsilon"] and out["delta"] == 1e-5


def test_dpsgd_command_writes_results(capsys, tmp_path):
    out = _json(capsys, ["privacy", "dpsgd", "--data", "sklearn", "-m", "logreg", "-e", "4", "--epochs", "2",
                         "--batch-size", "100", "--lr", "2", "--limit", "500", "--out", str(tmp_path), "--json"])
    run = out["runs"][0]
    assert out["sizes"] == {"private": 500, "public": 400, "test": 397} and out["baseline"]["n"] == 397
    assert 3.9 <= run["epsilon"] <= 4.0 and run["delta"] == 1e-5 and run["n"] == 397
    assert run["ci95"][0] <= run["accuracy"] <= run["ci95"][1] and run["seed"] == 0
    assert out["epsilon"] == run["epsilon"] and out["n"] == 397 and out["delta"] == 1e-5
    kinds = {"dpsgd.json": "dpsgd-results", "dpsgd.png": "dpsgd-plot", "eps4.history.png": "dpsgd-history-plot",
             "eps4.digits.safetensors": "digits-model", "eps4.dpsgd.pt": "dpsgd-checkpoint",
             "baseline.fit.pt": "digits-fit-checkpoint"}
    for name, kind in kinds.items():
        assert identify(tmp_path / name).kind == kind, name
    args = ["privacy", "dpsgd", "--data", "sklearn", "-m", "logreg", "-e", "4", "--epochs", "2", "--batch-size",
            "100", "--lr", "2", "--limit", "500", "--out", str(tmp_path), "--json", "--no-baseline"]
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    # a rerun over finished results is refused before any work, and changes nothing
    assert main(args) == 2
    assert "earlier `patchlab privacy dpsgd` run; not overwritten: --force replaces it" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    # with --force it resumes from the finished checkpoint: the same numbers, no new training
    again = _json(capsys, [*args, "--force"])
    assert again["runs"][0]["accuracy"] == run["accuracy"] and again["runs"][0]["epsilon"] == run["epsilon"]
    assert again["runs"][0]["history"] == run["history"]  # the per-epoch seconds too: nothing was retrained


def test_mia_and_pate_commands(capsys, tmp_path):
    out = _json(capsys, ["privacy", "mia", "--data", "sklearn", "-n", "2", "--pool", "120", "-m", "logreg",
                         "--epochs", "5", "--workers", "1", "--out", str(tmp_path / "mia"), "--json"])
    assert out["n"] == 3 * 120 and set(out["attacks"]) >= {"loss", "lira_online_fixed", "lira_offline"}
    assert identify(tmp_path / "mia" / "roc.png").kind == "mia-roc-plot" and out["epsilon"] is None
    assert identify(tmp_path / "mia" / "mia.json").kind == "mia-results"
    assert identify(tmp_path / "mia" / "model-002.job.json").kind == "trained-model-job"
    out = _json(capsys, ["privacy", "pate", "--data", "sklearn", "-t", "4", "-a", "gnmax", "--sigma", "1",
                         "-q", "50", "-m", "logreg", "--teacher-epochs", "3", "--student-epochs", "3",
                         "--workers", "1", "--out", str(tmp_path / "pate"), "--json"])
    assert out["answered"] == 50 and out["epsilon"] <= out["epsilon_data_independent"]
    assert identify(tmp_path / "pate" / "pate.png").kind == "pate-plot"
    assert identify(tmp_path / "pate" / "student.digits.safetensors").written_by == "patchlab privacy pate"
    assert len(list((tmp_path / "pate" / "teachers").glob("*.job.json"))) == 4
    out = _json(capsys, ["privacy", "pate", "--data", "sklearn", "-t", "4", "-a", "gnmax", "--sigma", "1",
                         "-q", "50", "--teacher", "scatter-linear", "--linear-epochs", "30", "--workers", "1",
                         "--json"])
    assert out["teacher"] == "scatter-linear" and out["teacher_accuracy_mean"] > 0.7 and out["accuracy"] > 0.6
    # the recipe's options: public-PCA teachers self-trained on the public pool, a validation hold-out, the most
    # queries within a target epsilon, L-BFGS linear models, a curriculum-labelling student
    out = _json(capsys, ["privacy", "pate", "--data", "sklearn", "-t", "10", "--sigma", "5", "--sigma1", "5",
                         "--threshold", "8", "-q", "300", "--teacher", "scatter-linear", "--features", "public-pca",
                         "--feature-dim", "16", "--teacher-self-training", "1", "--validation", "100",
                         "--target-epsilon", "20", "--linear-optimizer", "lbfgs", "--linear-epochs", "5",
                         "--linear-lr", "1", "--curriculum", "--self-training", "2", "--workers", "1", "--json"])
    assert out["features"] == "public-pca" and out["sizes"]["validation"] == 100 and out["sizes"]["public"] == 300
    assert out["epsilon"] <= 20 and 50 < out["queries"] < 300  # the budget, not the pool, sets the queries (123)
    assert out["target_epsilon"] == 20 and out["validation_accuracy"] > 0.6  # measured 0.71 (n = 100)
    # another command's file where a teacher goes is refused before any training
    (tmp_path / "other" / "teachers").mkdir(parents=True)
    (tmp_path / "other" / "teachers" / "teacher-001.digits.safetensors").write_bytes(b"not a model")
    assert main(["privacy", "pate", "--data", "sklearn", "-t", "4", "-a", "gnmax", "-q", "50", "-m", "logreg",
                 "--workers", "1", "--out", str(tmp_path / "other")]) == 2
    assert "teacher-001.digits.safetensors exists and patchlab cannot tell what wrote it" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "other").rglob("*")) == ["teacher-001.digits.safetensors", "teachers"]


def test_bad_input_is_one_line(capsys, tmp_path):
    assert main(["privacy", "dpsgd", "--data", str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["privacy", "pate", "--data", "sklearn", "-a", "gnmx"]) == 2
    assert "unknown aggregator 'gnmx'; did you mean 'gnmax'?" in capsys.readouterr().err
    assert main(["privacy", "dpsgd", "--accountant", "prvv"]) == 2
    assert "unknown accountant 'prvv'; did you mean 'prv'?" in capsys.readouterr().err
    assert main(["privacy", "bench", "dpsgd", "--variants", "+tanh,+tanhh"]) == 2
    assert "unknown variant '+tanhh'; did you mean '+tanh'?" in capsys.readouterr().err
    assert main(["privacy", "epsilon", "--sigma", "1", "-q", "2", "--steps", "3"]) == 2
    assert main(["privacy", "dpsgd", "-e", "0,1"]) == 2
