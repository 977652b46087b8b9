"""`patchlab poison ...` on the small task: JSON keys, figures, and one-line errors."""

from __future__ import annotations

import json

import pytest

from patchlab.artifacts import Identity, identify, read_jsonl
from patchlab.cli import main
from patchlab.data import save_image

SMALL = ["--max-sources", "4", "--train-per-class", "24", "--test-per-class", "8", "--device", "cpu"]


def run_json(capsys, args):
    assert main(args + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_influence_json_and_figures(small_task, capsys, tmp_path):
    out = run_json(capsys, ["poison", "influence", *SMALL, "--loo", "12", "--test-index", "3",
                            "--figure", str(tmp_path / "dog.influence.png"), "--loo-figure", str(tmp_path / "dog.loo.png")])
    assert out["n"] == len(small_task.train) and out["seed"] == 0 and out["seconds"] > 0
    assert out["solver"]["solver"] == "exact" and out["test_index"] == 3
    assert out["loo"][0]["n"] == 12 and out["loo"][0]["pearson"] > 0.9
    assert len(out["helpful"]) == 5 and out["helpful"][0]["influence"] <= out["harmful"][0]["influence"]
    assert (tmp_path / "dog.influence.png").stat().st_size > 10_000 and (tmp_path / "dog.loo.png").stat().st_size > 5_000
    assert identify(tmp_path / "dog.influence.png").kind == "influence-figure"
    # nothing lost: its own figure only with --force, another command's file never
    assert main(["poison", "influence", "--figure", str(tmp_path / "dog.influence.png")]) == 2
    assert "--force replaces it" in capsys.readouterr().err
    save_image(small_task.image(small_task.test[0]), tmp_path / "photo.png", kind="perturbation")
    assert main(["poison", "influence", "--force", "--loo-figure", str(tmp_path / "photo.png")]) == 2
    assert "perturbed photo written by `patchlab perturb`" in capsys.readouterr().err


def test_koh_liang_json_writes_poisons_and_figure(small_task, small_clean, capsys, tmp_path):
    out = run_json(capsys, ["poison", "koh-liang", *SMALL, "--targets", "1", "--max-iters", "30",
                            "--out", str(tmp_path)])
    row = out["rows"][0]
    assert out["eps"] == pytest.approx(2 / 255) and row["num_poisons"] == 1 and row["n"] == 1
    assert row["flip_rate"] == 1.0 and row["ci95"][0] > 0 and row["ci95"][1] == 1.0
    assert row["targets"][0]["flipped"] and "defense" in row
    poisons = list((tmp_path / "k1").glob("target*_0_*.poison.png"))
    assert len(poisons) == 1 and identify(poisons[0]) == Identity("poison", "patchlab poison koh-liang")
    assert identify(tmp_path / "k1" / f"target{row['targets'][0]['target']:04d}.figure.png").kind == "poison-figure"
    assert identify(tmp_path) == Identity("poison-run", "patchlab poison koh-liang")
    assert len(read_jsonl(tmp_path / "koh-liang-k1.jsonl")) == 1

    # the same settings resume (the journal's row, no new work); others are refused; --force starts over
    again = run_json(capsys, ["poison", "koh-liang", *SMALL, "--targets", "1", "--max-iters", "30",
                              "--out", str(tmp_path)])
    assert again["rows"][0]["targets"] == row["targets"] and len(read_jsonl(tmp_path / "koh-liang-k1.jsonl")) == 1
    other = ["poison", "koh-liang", *SMALL, "--targets", "1", "--max-iters", "30", "--eps", "1/255", "--out",
             str(tmp_path)]
    assert main(other) == 2
    assert "other settings; not overwritten: --force starts it over" in capsys.readouterr().err
    assert main(["poison", "feature-collision", *SMALL, "--out", str(tmp_path)]) == 2
    assert "holds a run of `patchlab poison koh-liang`" in capsys.readouterr().err
    (tmp_path / "k1" / "mine.png").write_bytes(b"not patchlab's")
    assert main(other + ["--force", "--json"]) == 0
    capsys.readouterr()
    assert json.loads((tmp_path / "run.json").read_text())["eps"] == pytest.approx(1 / 255)
    rows = read_jsonl(tmp_path / "koh-liang-k1.jsonl")  # the old journal went with the old settings
    assert len(rows) == 1 and max(rows[0]["result"]["poison_linf"]) <= 1 / 255 + 1e-6
    assert (tmp_path / "k1" / "mine.png").read_bytes() == b"not patchlab's"  # only its own files went


@pytest.mark.parametrize("args, message", [
    (["poison", "influence", "--classes", "dog"], "two superclasses"),
    (["poison", "influence", "--classes", "dog,unicorn"], "unknown superclass"),
    (["poison", "influence", "--solver", "newton"], "unknown influence solver 'newton'"),
    (["poison", "influence", "--solver", "lisa"], "did you mean 'lissa'"),
    (["poison", "influence", "--classes", "dog,fsh"], "did you mean 'fish'"),
    (["poison", "influence", "--problem", "cifar"], "unknown influence problem 'cifar'"),
    (["poison", "koh-liang", "--eps", "0.5/255"], "eps"),
    (["poison", "koh-liang", "--poisons", "0"], "--poisons"),
    (["poison", "feature-collision", "--opacity", "1"], "opacity"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("patchlab: error:") and message in err and "\n" not in err
