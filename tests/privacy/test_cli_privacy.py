"""`patchlab privacy ...`: JSON output with the shared keys, files written, one-line errors."""

from __future__ import annotations

import json

import pytest

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
    for name in ("results.json", "dpsgd.png", "dpsgd-eps4.png", "dpsgd-eps4.safetensors", "dpsgd-eps4.ckpt.pt"):
        assert (tmp_path / name).is_file(), name
    # a rerun resumes from the finished checkpoint: same numbers, no new training
    again = _json(capsys, ["privacy", "dpsgd", "--data", "sklearn", "-m", "logreg", "-e", "4", "--epochs", "2",
                           "--batch-size", "100", "--lr", "2", "--limit", "500", "--out", str(tmp_path), "--json",
                           "--no-baseline"])
    assert again["runs"][0]["accuracy"] == run["accuracy"] and again["runs"][0]["epsilon"] == run["epsilon"]


def test_mia_and_pate_commands(capsys, tmp_path):
    out = _json(capsys, ["privacy", "mia", "--data", "sklearn", "-n", "2", "--pool", "120", "-m", "logreg",
                         "--epochs", "5", "--workers", "1", "--out", str(tmp_path / "mia"), "--json"])
    assert out["n"] == 3 * 120 and set(out["attacks"]) >= {"loss", "lira_online_fixed", "lira_offline"}
    assert (tmp_path / "mia" / "roc.png").is_file() and out["epsilon"] is None
    out = _json(capsys, ["privacy", "pate", "--data", "sklearn", "-t", "4", "-a", "gnmax", "--sigma", "1",
                         "-q", "50", "-m", "logreg", "--teacher-epochs", "3", "--student-epochs", "3",
                         "--workers", "1", "--out", str(tmp_path / "pate"), "--json"])
    assert out["answered"] == 50 and out["epsilon"] <= out["epsilon_data_independent"]
    assert (tmp_path / "pate" / "pate.png").is_file() and len(list((tmp_path / "pate" / "teachers").glob("*.json"))) == 4


def test_bad_input_is_one_line(capsys, tmp_path):
    assert main(["privacy", "dpsgd", "--data", str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["privacy", "pate", "--data", "sklearn", "-a", "vote"]) == 2
    assert "unknown aggregator" in capsys.readouterr().err
    assert main(["privacy", "epsilon", "--sigma", "1", "-q", "2", "--steps", "3"]) == 2
    assert main(["privacy", "dpsgd", "-e", "0,1"]) == 2
