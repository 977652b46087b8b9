"""Transfer matrices and ensembles on small real models: the diagonal is the white-box attack, seeded runs repeat,
models of different input sizes share one pixel space."""

from __future__ import annotations

import pytest
import torch

from patchlab.attacks import make_attack
from patchlab.errors import PatchlabError
from patchlab.transfer.common import AtSize, at_size, predict
from patchlab.transfer.ensemble import EnsembleModel, ensemble_table, held_out_summary
from patchlab.transfer.matrix import as_grid, random_targets, transfer_matrix


@pytest.mark.parametrize("attack,options", [("fgsm", {}), ("pgd", {"steps": 5})])
def test_diagonal_equals_the_white_box_attack(d8, d8_models, attack, options):
    test = d8["test"]
    x, y = test.images[:200], test.labels[:200]
    res = transfer_matrix(d8_models, d8_models, x, y, attack=attack, eps=0.15, seed=3, batch_size=64,
                          attack_options=options)
    rows, cols, grid = as_grid(res)
    assert rows == cols == ["cnn", "mlp", "logreg"]
    for i, name in enumerate(rows):
        atk = make_attack(attack, d8_models[name], eps=0.15, seed=3, **options)
        white = torch.cat([atk(x[j:j + 64], y[j:j + 64]).adv_pred.cpu() for j in range(0, 200, 64)])
        assert grid[i][i] == int((white == y).sum()) / len(y)
    # the attacks are real: every white-box cell is far below clean accuracy, transfer sits in between
    for i, name in enumerate(rows):
        assert grid[i][i] < res["clean"][name]["accuracy"] - 0.3
    assert res["per_source"]["cnn"]["linf"] <= 0.15 + 1e-6


def test_seeded_runs_repeat_and_targeted_mode(d8, d8_models):
    test = d8["test"]
    x, y = test.images[:100], test.labels[:100]
    kw = dict(attack="pgd", eps=0.2, seed=5, attack_options={"steps": 5}, target="random")
    a = transfer_matrix(d8_models, d8_models, x, y, **kw)
    b = transfer_matrix(d8_models, d8_models, x, y, **kw)
    assert as_grid(a) == as_grid(b) and a["metric"] == "target_match_rate"
    t = random_targets(y, 10, 5)
    assert bool((t != y).all())
    assert as_grid(a)[2][0][0] > 0.5  # white-box targeted PGD hits its random targets


def test_models_of_other_sizes_share_one_pixel_space(d8, d8_models):
    from patchlab.data import resize_digits

    test = resize_digits(d8["test"], 28)
    x, y = test.images[:100], test.labels[:100]
    big = at_size(d8_models["cnn"], 28)
    assert isinstance(big, AtSize) and big.input_size == 28 and at_size(d8_models["cnn"], 8) is d8_models["cnn"]
    # 8 -> 28 -> 8 is close to the identity, so the wrapped model keeps its accuracy
    assert float((predict(big, x) == y).float().mean()) > 0.85
    res = transfer_matrix({"cnn@28": big}, {"cnn@28": big, "mlp@28": at_size(d8_models["mlp"], 28)}, x, y,
                          attack="fgsm", eps=0.1)
    assert res["size"] == 28 and len(res["cells"]) == 2
    with pytest.raises(PatchlabError, match="size=8"):
        transfer_matrix(d8_models, d8_models, x, y, size=8)


def test_ensemble_model_is_liu_et_al_loss_and_table_layout(d8, d8_models):
    x = d8["test"].images[:16]
    members = list(d8_models.values())
    ens = EnsembleModel(members)
    expected = torch.stack([m(x).softmax(1) for m in members]).mean(0).log()
    assert torch.allclose(ens(x), expected, atol=1e-5)
    # Dong et al. 2018's logit fusion: the weighted mean of the logits
    logits = EnsembleModel(members, weights=[1.0, 0.0, 3.0], fusion="logits")
    assert torch.allclose(logits(x), (members[0](x) + 3 * members[2](x)) / 4, atol=1e-5)
    with pytest.raises(PatchlabError, match="fusion 'loss'"):
        EnsembleModel(members, fusion="loss")
    test = d8["test"]
    table = ensemble_table(d8_models, test.images[:150], test.labels[:150], attack="mi", eps=0.1,
                           attack_options={"steps": 5})
    assert [r["row"] for r in table["rows"]] == ["-cnn", "-mlp", "-logreg", "cnn", "mlp", "logreg"]
    assert all(r["rmsd"] > 0 for r in table["rows"])
    summary = held_out_summary(table)
    assert [s["model"] for s in summary] == ["cnn", "mlp", "logreg"]
    # members of the ensemble are attacked almost white-box: far below their clean accuracy
    minus_cnn = table["rows"][0]["cells"]
    assert minus_cnn["mlp"]["accuracy"] < table["clean"]["mlp"]["accuracy"] - 0.3
    with pytest.raises(PatchlabError):
        EnsembleModel([d8_models["cnn"], at_size(d8_models["mlp"], 28)])
