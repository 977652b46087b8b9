"""`patchlab poison ...` on the small task: JSON keys, figures, and one-line errors."""

from __future__ import annotations

import json

import pytest

from patchlab.cli import main

SMALL = ["--max-sources", "4", "--train-per-class", "24", "--test-per-class", "8", "--device", "cpu"]


def run_json(capsys, args):
    assert main(args + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_influence_json_and_figures(small_task, capsys, tmp_path):
    out = run_json(capsys, ["poison", "influence", *SMALL, "--loo", "12", "--test-index", "3",
                            "--figure", str(tmp_path / "infl.png"), "--loo-figure", str(tmp_path / "loo.png")])
    assert out["n"] == len(small_task.train) and out["seed"] == 0 and out["seconds"] > 0
    assert out["solver"]["solver"] == "exact" and out["test_index"] == 3
    assert out["loo"][0]["n"] == 12 and out["loo"][0]["pearson"] > 0.9
    assert len(out["helpful"]) == 5 and out["helpful"][0]["influence"] <= out["harmful"][0]["influence"]
    assert (tmp_path / "infl.png").stat().st_size > 10_000 and (tmp_path / "loo.png").stat().st_size > 5_000


def test_koh_liang_json_writes_poisons_and_figure(small_task, small_clean, capsys, tmp_path):
    out = run_json(capsys, ["poison", "koh-liang", *SMALL, "--targets", "1", "--max-iters", "30",
                            "--out", str(tmp_path)])
    row = out["rows"][0]
    assert out["eps"] == pytest.approx(2 / 255) and row["num_poisons"] == 1 and row["n"] == 1
    assert row["flip_rate"] == 1.0 and row["ci95"][0] > 0 and row["ci95"][1] == 1.0
    assert row["targets"][0]["flipped"] and "defense" in row
    assert len(list((tmp_path / "k1").glob("*_poison0_*.png"))) == 1
    assert len(list((tmp_path / "k1").glob("*_figure.png"))) == 1
    assert (tmp_path / "koh-liang-k1-eps2.jsonl").is_file()


@pytest.mark.parametrize("args, message", [
    (["poison", "influence", "--classes", "dog"], "two superclasses"),
    (["poison", "influence", "--classes", "dog,unicorn"], "unknown superclass"),
    (["poison", "influence", "--solver", "newton"], "unknown solver"),
    (["poison", "influence", "--problem", "cifar"], "--problem"),
    (["poison", "koh-liang", "--eps", "0.5/255"], "eps"),
    (["poison", "koh-liang", "--poisons", "0"], "--poisons"),
    (["poison", "feature-collision", "--opacity", "1"], "opacity"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("patchlab: error:") and message in err and "\n" not in err
