"""`patchlab transfer ...` end to end on the built-in digits: JSON keys, figures, one-line errors."""

from __future__ import annotations

import json

import pytest

from patchlab.cli import main


@pytest.fixture(scope="module")
def work(transfer_cache):
    """The session's model cache: the digits8 victim is trained once for every test."""
    return transfer_cache / "transfer"


def run_json(capsys, args: list[str]) -> dict:
    assert main(args + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_steal_lr_json(capsys, tmp_path):
    out = run_json(capsys, ["transfer", "steal-lr", "--source", "digits8", "--out", str(tmp_path)])
    assert out["queries"] == 65 and out["max_abs_error"] < 1e-6 and out["fidelity"] == 1.0
    assert json.loads((tmp_path / "steal_lr_digits8.transfer.json").read_text())["queries"] == 65


def test_substitute_json_figure_and_resume(capsys, tmp_path, work):
    args = ["transfer", "substitute", "--source", "digits8", "--seeds", "30", "--rounds", "1", "--epochs", "3",
            "--work", str(work), "--out", str(tmp_path)]
    out = run_json(capsys, args)
    assert out["queries"] == 60 and [r["queries"] for r in out["curve"]] == [30, 60]
    for key in ("n", "seconds", "seed", "eps", "misclassification_rate", "misclassification_rate_ci95", "noise"):
        assert key in out
    assert (tmp_path / "substitute_digits8.transfer.png").stat().st_size > 10_000
    again = run_json(capsys, args + ["--force"])  # the finished checkpoint is reused: same curve, nothing retrained
    assert again["curve"] == out["curve"] and again["resumed_from"] == 2


def test_text_output_and_matrix(capsys, tmp_path, work):
    assert main(["transfer", "matrix", "--family", "digits8", "--n", "60", "--attack", "fgsm", "--eps", "0.1",
                 "--sources", "d8-mlp,d8-logreg", "--targets", "d8-mlp", "--work", str(work),
                 "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "d8-logreg" in text and "clean accuracy" in text and (tmp_path / "matrix_digits8.transfer.png").exists()


def test_outputs_are_tagged_and_never_overwritten(capsys, tmp_path):
    from patchlab.artifacts import identify

    args = ["transfer", "steal-lr", "--source", "digits8", "--out", str(tmp_path)]
    assert main(args) == 0
    found = identify(tmp_path / "steal_lr_digits8.transfer.json")
    assert (found.kind, found.written_by) == ("transfer-result", "patchlab transfer steal-lr")
    capsys.readouterr()
    assert main(args) == 2  # its own earlier output: only with --force
    assert "--force replaces it" in capsys.readouterr().err
    assert main(args + ["--force"]) == 0
    other = tmp_path / "other"
    other.mkdir()
    (other / "steal_lr_digits8.transfer.json").write_text('{"mine": 1}\n')
    assert main(["transfer", "steal-lr", "--source", "digits8", "--out", str(other), "--force"]) == 2
    assert "cannot tell what wrote it" in capsys.readouterr().err
    assert json.loads((other / "steal_lr_digits8.transfer.json").read_text()) == {"mine": 1}


@pytest.mark.parametrize("args,message", [
    (["transfer", "substitute", "--source", "digits8", "--eps", "2"], "eps must lie in [0, 1]"),
    (["transfer", "steal", "--source", "digits8", "--strategies", "greedy"], "unknown strategy 'greedy'"),
    (["transfer", "steal", "--source", "cifar"], "unknown data source 'cifar'"),
    (["transfer", "matrix", "--family", "audio"], "unknown family 'audio'"),
    (["transfer", "steal", "--budgets", "10,x"], "--budgets must be integers"),
    (["transfer", "ensemble", "--family", "digits8", "--fusion", "loss"], "unknown ensemble fusion 'loss'"),
])
def test_bad_input_is_one_line(capsys, args, message):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("patchlab: error:") and message in err and len(err.splitlines()) == 1
