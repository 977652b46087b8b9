"""PatchCleanser: the mask set, the feature-reuse path, the two-round rule, and the certificate itself."""

from __future__ import annotations

import pytest
import torch

from patchlab.defenses import PatchCleanser, mask_set, rule_from_map
from patchlab.defenses.local import MaskedForward
from patchlab.errors import PatchlabError


def test_mask_set_matches_the_paper_numbers_and_covers_every_position():
    ms = mask_set(224, 0.02, 6)
    assert (ms.patch, ms.size, ms.stride, len(ms), ms.pairs) == (32, 64, 33, 36, 666)
    # every 32 px patch position is inside at least one mask (R-covering), checked exhaustively per axis and in 2D
    starts = sorted({t for t, _ in ms.boxes})
    assert all(any(s <= x and x + 32 <= s + 64 for s in starts) for x in range(224 - 32 + 1))
    assert all(ms.covering(t, l) for t in range(0, 193, 7) for l in range(0, 193, 5))
    assert not ms.covering(0, 0, side=65)  # a bigger patch is not covered
    assert mask_set(28, 5, 3).to_dict() == {"image_size": 28, "patch": 5, "mask_size": 12, "stride": 8, "masks": 9,
                                            "pairs": 45}
    with pytest.raises(PatchlabError):
        mask_set(224, 1.5, 6)
    with pytest.raises(PatchlabError):
        mask_set(224, 0.02, 0)


def test_feature_reuse_equals_the_plain_masked_forward(lite0):
    ms = mask_set(224, 0.02, 6)
    fast = MaskedForward(lite0, ms)
    assert fast.reuses_features and fast.crop_size < 224
    image = torch.rand(3, 224, 224, generator=torch.Generator().manual_seed(3))
    fast.begin(image)
    got = torch.cat([fast.single([0, 7, 35]), fast.double([(7, 35), (7, 8), (0, 35), (35, 0)])])
    masks = ms.tensor()
    ref_in = []
    for idx in ([0], [7], [35], [7, 35], [7, 8], [0, 35], [35, 0]):
        x = image.clone()
        for i in idx:
            x = torch.where(masks[i], torch.full_like(x, 0.5), x)
        ref_in.append(x)
    with torch.inference_mode():
        ref = lite0(torch.stack(ref_in))
        clean = lite0(image[None])
    assert (got - ref).abs().max() < 1e-3
    assert (fast.clean() - clean).abs().max() < 1e-3
    assert (ref[0] - clean[0]).abs().max() > 0.1  # the masks do change the logits


def test_verdict_follows_the_two_round_rule(mnist_mlp, mnist_parts):
    """The early-exit verdict equals the rule applied to the full prediction map, in all three cases."""
    pc = PatchCleanser(mnist_mlp, 5, k=3, fill=0.0, image_size=28, batch_size=8)
    x, y = mnist_parts["test"].images[:60], mnist_parts["test"].labels[:60]
    x = x.clone()
    x[30:, :, 10:16, 10:16] = 1.0  # a blob in the middle gives disagreeing masks (cases 2 and 3)
    cases = set()
    for image, label in zip(x, y.tolist()):
        v = pc.verdict(image, label)
        pmap = pc.prediction_map(image)
        assert (v.prediction, v.case) == rule_from_map(pmap)
        assert v.certified == bool((pmap == label).all())
        assert v.passes <= pc.masks.pairs
        cases.add(v.case)
    assert cases == {1, 2, 3}


def test_lite0_verdicts_match_the_prediction_map(lite0, heldout_imagenet):
    x, y = heldout_imagenet
    pc = PatchCleanser(lite0, 0.08, k=3)  # 9 masks, 45 pairs: the same code path at a fraction of the cost
    assert pc.engine.reuses_features
    for image, label in zip(x[:2], y[:2].tolist()):
        v = pc.verdict(image, label)
        pmap = pc.prediction_map(image)
        assert (v.prediction, v.case) == rule_from_map(pmap)
        assert v.certified == bool((pmap == label).all())


def _patched(image: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Every placement of `content` (C, p, p) on `image` (C, S, S): (positions, C, S, S)."""
    p = content.shape[-1]
    s = image.shape[-1]
    n = s - p + 1
    out = image[None].repeat(n * n, 1, 1, 1)
    for t in range(n):
        for left in range(n):
            out[t * n + left, :, t:t + p, left:left + p] = content if content.dim() == 3 else content[t * n + left]
    return out


def test_a_certified_image_never_flips_under_any_patch_position(mnist_mlp, mnist_parts):
    """The certificate's definition, checked exhaustively: 4 px patches (white, black, checkerboard and a
    per-image gradient-sign patch) at all 625 positions of each certified MNIST digit; the defended prediction
    (the two-round rule on the full map of every patched image) must stay the label every time."""
    net, side = mnist_mlp, 4
    pc = PatchCleanser(net, side, k=3, fill=0.0, image_size=28)
    masks = pc.masks.tensor()
    pairs = [(a, b) for a in range(len(masks)) for b in range(a, len(masks))]
    union = torch.stack([masks[a] | masks[b] for a, b in pairs])
    x, y = mnist_parts["test"].images[:40], mnist_parts["test"].labels[:40]
    verdicts = pc.certify(x, y)
    certified = [i for i, v in enumerate(verdicts) if v.certified]
    assert len(certified) >= 5
    k = len(masks)
    checked = flips = violations = 0
    for i in certified[:8]:
        image, label = x[i], int(y[i])
        probe = image[None].clone().requires_grad_(True)
        torch.nn.functional.cross_entropy(net(probe), y[i:i + 1]).backward()
        grad_sign = (probe.grad[0] > 0).float()
        contents = [torch.ones(1, side, side), torch.zeros(1, side, side),
                    (torch.arange(side * side).view(1, side, side) % 2).float()]
        patched = [_patched(image, c) for c in contents]
        n = 28 - side + 1
        adv = image[None].repeat(n * n, 1, 1, 1)  # the gradient-sign pattern under the patch, per position
        for t in range(n):
            for left in range(n):
                adv[t * n + left, :, t:t + side, left:left + side] = grad_sign[:, t:t + side, left:left + side]
        patched.append(adv)
        for batch in patched:
            with torch.no_grad():
                flips += int((net(batch).argmax(1) != label).sum())
                masked = torch.where(union[None], torch.zeros(()), batch[:, None]).flatten(0, 1)
                preds = net(masked).argmax(1).view(len(batch), len(pairs))
            for row in preds:
                pmap = torch.empty((k, k), dtype=torch.long)
                for (a, b), p in zip(pairs, row.tolist()):
                    pmap[a, b] = pmap[b, a] = p
                violations += rule_from_map(pmap)[0] != label
                checked += 1
    assert checked >= 5 * 4 * 625
    assert flips > 0  # the patches do flip the undefended model on these images: the check has teeth
    assert violations == 0


def test_max_pairs_checks_the_first_pairs_of_the_certifiers_own_order(mnist_mlp, mnist_parts):
    """`max_pairs=N` certifies on the one-mask predictions and the first N pairs of `pair_order` (read off the full
    prediction map); None is every pair, the certificate itself; the defended prediction never changes."""
    pc = PatchCleanser(mnist_mlp, 5, k=3, fill=0.0, image_size=28, batch_size=8)
    x, y = mnist_parts["test"].images[:40].clone(), mnist_parts["test"].labels[:40].tolist()
    x[20:, :, 10:16, 10:16] = 1.0  # some first rounds disagree
    k, seen = len(pc.masks), set()
    for image, label in zip(x, y):
        full = pc.verdict(image, label)
        pmap = pc.prediction_map(image)
        assert full.certified == bool((pmap == label).all())
        pc.engine.begin(image)
        order = pc.pair_order(pc.engine.single(list(range(k))), label)
        for n in (0, 1, 4, 20, k * (k - 1) // 2, None):
            v = pc.verdict(image, label, max_pairs=n)
            want = bool((pmap.diagonal() == label).all()) and all(int(pmap[i, j]) == label for i, j in order[:n])
            assert v.certified == want
            assert (v.prediction, v.case, v.undefended) == (full.prediction, full.case, full.undefended)
            if n is None or n >= k * (k - 1) // 2:
                assert v.certified == full.certified and v.passes == full.passes
            seen.add((n, v.certified, full.certified))
    assert (0, True, False) in seen  # the singles alone overstate some certificates: the check has teeth
    assert (None, True, True) in seen
    with pytest.raises(PatchlabError, match="max_pairs"):
        pc.verdict(x[0], y[0], max_pairs=-1)
