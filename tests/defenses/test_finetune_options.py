"""The mask-robust fine-tuning's options: the certifier's input mix, the hardest-of-N masking, the distillation
losses, the validation split and the certification proxy used to choose between recipes."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from patchlab.defenses.finetune import FinetuneConfig, certify_proxy, mask_mixed, masking_loss, split_validation
from patchlab.defenses.masks import mask_set
from patchlab.errors import PatchlabError


class _Tiny(nn.Module):
    """A small conv net on 32 px images with 10 classes."""

    def __init__(self, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, 2), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                                 nn.Linear(32, 10))
        with torch.no_grad():
            self.net[0].weight.mul_(10)  # confident, input-dependent logits

    def forward(self, x):
        return self.net(x)


def test_mixed_masks_are_none_one_or_two_of_the_certifiers_set():
    masks = mask_set(32, 8, 3).tensor()
    x = torch.zeros(400, 3, 32, 32)
    out = mask_mixed(x, masks, torch.Generator().manual_seed(0))
    assert torch.equal(out, mask_mixed(x, masks, torch.Generator().manual_seed(0)))  # seeded
    grey = out[:, 0] == 0.5
    singles = {i: masks[i, 0] for i in range(len(masks))}
    kinds = []
    for g in grey:
        if not g.any():
            kinds.append(0)
        elif any(torch.equal(g, m) for m in singles.values()):
            kinds.append(1)  # one mask (or the same mask drawn twice)
        else:
            assert any(torch.equal(g, singles[a] | singles[b]) for a in singles for b in singles)
            kinds.append(2)
    shares = [kinds.count(k) / len(kinds) for k in (0, 1, 2)]
    # expected 1/4, 1/4 + (1/2)(1/9) (a pair of one mask twice), 1/2 - that; n = 400: within ~4.5 sd
    assert abs(shares[0] - 0.25) < 0.1 and abs(shares[1] - 0.306) < 0.1 and abs(shares[2] - 0.444) < 0.1, shares


@pytest.mark.parametrize("loss", ["distill", "hard", "ce"])
def test_worst_of_trains_on_a_harder_masking_than_the_first_draw(loss):
    student, teacher = _Tiny(0), _Tiny(1)
    x, y = torch.rand(16, 3, 40, 40), torch.randint(0, 10, (16,))
    base = dict(loss=loss, masks="pairs", patch=8, k=3, temperature=2.0)
    one = masking_loss(FinetuneConfig(**base), 32, teacher)(student, x, y, torch.Generator().manual_seed(3))
    worst = masking_loss(FinetuneConfig(**base, worst_of=4), 32, teacher)(student, x, y,
                                                                            torch.Generator().manual_seed(3))
    assert worst > one  # the first of the four draws is the single draw's masking; the hardest is harder


def test_distillation_is_zero_for_the_teacher_itself_at_any_temperature():
    net = _Tiny(0)
    x, y = torch.rand(8, 3, 40, 40), torch.randint(0, 10, (8,))
    for t in (1.0, 4.0):  # no masks: the student sees the teacher's input
        cfg = FinetuneConfig(loss="distill", masks="cutout", holes=0, temperature=t)
        assert masking_loss(cfg, 32, net)(net, x, y, torch.Generator().manual_seed(0)).item() == pytest.approx(
            0.0, abs=1e-5)
    # with masks: KL(teacher on the clean crop || student on the masked crop) at temperature T, times T^2
    from patchlab.defenses.finetune import random_resized_crop

    masked = FinetuneConfig(loss="distill", masks="mixed", patch=8, k=3, temperature=3.0)
    student = _Tiny(1)
    got = masking_loss(masked, 32, net)(student, x, y, torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(0)
    crop = random_resized_crop(x, 32, gen, masked.crop_scale)
    inputs = mask_mixed(crop, mask_set(32, 8, 3).tensor(), gen)
    with torch.no_grad():
        p = (net(crop) / 3).softmax(1)
        q = (student(inputs) / 3).log_softmax(1)
    want = 9 * (p * (p.log() - q)).sum(1).mean()
    assert got.item() == pytest.approx(float(want), rel=1e-4) and float(want) > 0
    # "hard" is cross-entropy on the teacher's top-1 label for the unmasked crop
    hard = FinetuneConfig(loss="hard", masks="cutout", holes=0)
    got = masking_loss(hard, 32, net)(net, x, y, torch.Generator().manual_seed(0))
    crop = random_resized_crop(x, 32, torch.Generator().manual_seed(0), hard.crop_scale)
    with torch.no_grad():
        logits = net(crop)
    assert got.item() == pytest.approx(float(nn.functional.cross_entropy(logits, logits.argmax(1))), rel=1e-5)
    with pytest.raises(PatchlabError):
        FinetuneConfig(temperature=0)
    with pytest.raises(PatchlabError):
        FinetuneConfig(worst_of=0)


def test_mixup_distills_the_teacher_on_mixes_of_two_crops():
    from patchlab.defenses.finetune import random_resized_crop

    teacher, student = _Tiny(0), _Tiny(1)
    x, y = torch.rand(8, 3, 40, 40), torch.randint(0, 10, (8,))
    cfg = FinetuneConfig(loss="distill", masks="mixed", patch=8, k=3, mixup=0.5)
    got = masking_loss(cfg, 32, teacher)(student, x, y, torch.Generator().manual_seed(0))
    # by hand: crops, each mixed with a partner crop at a weight in [0, 0.5], the teacher on the mix, the student on
    # the masked mix
    gen = torch.Generator().manual_seed(0)
    crop = random_resized_crop(x, 32, gen, cfg.crop_scale)
    partner = torch.randperm(8, generator=gen)
    lam = torch.rand(8, generator=gen) * 0.5
    mix = crop * (1 - lam[:, None, None, None]) + crop[partner] * lam[:, None, None, None]
    inputs = mask_mixed(mix, mask_set(32, 8, 3).tensor(), gen)
    with torch.no_grad():
        p, q = teacher(mix).softmax(1), student(inputs).log_softmax(1)
    want = (p * (p.log() - q)).sum(1).mean()
    assert got.item() == pytest.approx(float(want), rel=1e-4)
    assert not torch.allclose(mix, crop, atol=0.05)  # the mixes are not the crops
    # without mixup the same draws give another loss (the mix changes what the teacher labels)
    plain = masking_loss(FinetuneConfig(loss="distill", masks="mixed", patch=8, k=3), 32, teacher)
    assert plain(student, x, y, torch.Generator().manual_seed(0)).item() != pytest.approx(got.item(), rel=1e-3)
    # a teacher matching itself on unmasked mixes has nothing to learn
    same = FinetuneConfig(loss="distill", masks="cutout", holes=0, mixup=0.5)
    assert masking_loss(same, 32, teacher)(teacher, x, y, torch.Generator().manual_seed(0)).item() == pytest.approx(
        0.0, abs=1e-5)
    for bad in (dict(mixup=0.6), dict(mixup=-0.1), dict(mixup=0.3, loss="ce")):
        with pytest.raises(PatchlabError):
            FinetuneConfig(**bad)


def test_validation_split_is_seeded_disjoint_and_inside_the_training_side(imagenet_dir):
    from patchlab.defenses.data import shared_split

    train, val = split_validation(imagenet_dir, 60)
    again_train, again_val = split_validation(imagenet_dir, 60)
    assert [p.name for p in val.paths] == [p.name for p in again_val.paths]
    assert len(val.paths) == 60 and len(train.paths) + 60 == len(shared_split(imagenet_dir, "train").paths)
    assert not {p.name for p in train.paths} & {p.name for p in val.paths}
    assert not {p.name for p in val.paths} & {p.name for p in shared_split(imagenet_dir, "heldout").paths}
    with pytest.raises(PatchlabError, match="val"):
        split_validation(imagenet_dir, 10_000)


def test_subset_keeps_the_validation_images_and_nests(imagenet_dir):
    train, val = split_validation(imagenet_dir, 60)
    names = {n: {p.name for p in split_validation(imagenet_dir, 60, subset=n)[0].paths} for n in (90, 180)}
    assert len(names[90]) == 90 and len(names[180]) == 180
    assert names[90] < names[180] < {p.name for p in train.paths}  # a data curve's points are nested
    small, small_val = split_validation(imagenet_dir, 60, subset=90)
    assert [p.name for p in small_val.paths] == [p.name for p in val.paths]  # scored on the same images
    assert small.labels.tolist() == [int(train.labels[[p.name for p in train.paths].index(q.name)])
                                     for q in small.paths]
    assert split_validation(imagenet_dir, 60, subset=len(train.paths))[0].paths == train.paths  # all: unchanged
    with pytest.raises(PatchlabError, match="subset"):
        split_validation(imagenet_dir, 60, subset=len(train.paths) + 1)
    with pytest.raises(PatchlabError, match="subset"):
        FinetuneConfig(subset=0)


def test_certify_proxy_with_every_pair_is_the_certificate(mnist_mlp, mnist_parts):
    from patchlab.defenses.patchcleanser import PatchCleanser

    te = mnist_parts["test"]
    x, y = te.images[:30], te.labels[:30]
    pc = PatchCleanser(mnist_mlp, 5, k=3, fill=0.0, image_size=28)
    truth = sum(pc.verdict(img, int(lab)).certified for img, lab in zip(x, y)) / len(x)
    full = certify_proxy(mnist_mlp, x, y, 5, 3, pairs=36, fill=0.0, image_size=28)
    none = certify_proxy(mnist_mlp, x, y, 5, 3, pairs=0, fill=0.0, image_size=28)
    assert full["proxy_certified"] == pytest.approx(truth) and 0 < truth < 1
    assert none["proxy_certified"] == none["singles_correct"] >= truth  # fewer pairs can only overstate
    some = certify_proxy(mnist_mlp, x, y, 5, 3, pairs=4, fill=0.0, image_size=28)
    assert none["proxy_certified"] >= some["proxy_certified"] >= full["proxy_certified"]
    # the other shares, from the plain model and the one-mask diagonal of the full prediction map
    singles = sum(bool((pc.prediction_map(img).diagonal() == lab).all()) for img, lab in zip(x, y)) / len(x)
    clean = float((mnist_mlp(x).argmax(1) == y).float().mean())
    for r in (full, none, some):
        assert (r["n"], r["singles_correct"], r["clean_accuracy"]) == (30, pytest.approx(singles), pytest.approx(clean))


def test_batchnorm_train_updates_running_statistics_and_frozen_keeps_them():
    from patchlab.defenses.finetune import FinetuneNet

    x = torch.rand(2, 3, 64, 64)
    for mode, moves in (("frozen", False), ("train", True)):
        net = FinetuneNet("efficientnet_lite0", "all", batchnorm=mode)
        net.train()
        bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
        drops = [m for m in net.modules() if isinstance(m, nn.Dropout)]
        assert all(b.training == moves for b in bns) and not any(d.training for d in drops)
        before = bns[0].running_mean.clone()
        with torch.no_grad():
            net(x)
        assert (not torch.equal(before, bns[0].running_mean)) == moves
        net.eval()
        assert not any(m.training for m in net.modules())
    with pytest.raises(PatchlabError):
        FinetuneConfig(batchnorm="sometimes")


def test_teacher_ensemble_averages_logits_each_at_its_own_input_size():
    from patchlab.defenses.finetune import Teacher, load_teacher

    a, b = _Tiny(0), _Tiny(1)
    a.input_size, b.input_size = 32, 48
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        got = Teacher([a, b])(x)
        # by hand: b sees the crop resized to its 48 px
        big = torch.nn.functional.interpolate(x, size=(48, 48), mode="bicubic", align_corners=False).clamp(0, 1)
        want = (a(x) + b(big)) / 2
    assert torch.allclose(got, want, atol=1e-6)
    assert not torch.allclose(got, a(x), atol=1e-3)  # the second model counts
    # the ensemble is what the distill loss matches: a student equal to the ensemble has nothing to learn
    cfg = FinetuneConfig(loss="distill", masks="cutout", holes=0, teacher="x,y")
    teacher = Teacher([a, b])
    assert masking_loss(cfg, 32, teacher)(teacher, x, torch.zeros(4, dtype=torch.long),
                                          torch.Generator().manual_seed(0)).item() == pytest.approx(0.0, abs=1e-5)
    assert load_teacher(FinetuneConfig(loss="ce"), "cpu") is None
    with pytest.raises(PatchlabError, match="teacher"):
        FinetuneConfig(loss="ce", teacher="efficientnet_lite2")
    with pytest.raises(PatchlabError):
        load_teacher(FinetuneConfig(teacher="efficientnet_lite0,no_such_model"), "cpu")
