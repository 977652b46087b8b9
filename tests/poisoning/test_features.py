"""Views are deterministic real images; features are the input of the model's last layer and come back from the
cache unchanged (a damaged cache file is recomputed)."""

from __future__ import annotations

import torch
import torch.nn as nn

from patchlab.poisoning.features import FeatureCache, augmented_view, final_layer, penultimate
from patchlab.poisoning.task import split_task


def test_views_are_deterministic_8bit_images(imagenet_dir):
    from patchlab.data import read_image
    from patchlab.models import preprocess

    path = sorted(imagenet_dir.iterdir())[0]
    img = read_image(path)
    a, b = augmented_view(img, 224, 3, path.name), augmented_view(img, 224, 3, path.name)
    assert a.dtype == torch.uint8 and a.shape == (3, 224, 224) and torch.equal(a, b)
    assert not torch.equal(a, augmented_view(img, 224, 4, path.name))
    assert torch.equal(augmented_view(img, 224, 0), preprocess(img, 224).mul(255).round().to(torch.uint8))


def test_lite0_features_feed_its_classifier_and_the_cache_round_trips(lite0, imagenet_dir, tmp_path):
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        f = penultimate(lite0, x)
        assert f.shape == (2, 1280) and torch.allclose(final_layer(lite0)(f), lite0(x), atol=1e-4)
    views = [(p, 1) for p in sorted(imagenet_dir.iterdir())[:3]]
    cache = FeatureCache(lite0, tmp_path)
    first = cache.features(views)
    files = sorted(cache.folder.glob("*.pt"))
    assert len(files) == 3 and torch.equal(FeatureCache(lite0, tmp_path).features(views), first)
    files[0].write_bytes(b"not a tensor")
    assert torch.allclose(FeatureCache(lite0, tmp_path).features(views), first, atol=1e-5)
    with torch.no_grad():
        direct = penultimate(lite0, cache.view_image(*views[0]).unsqueeze(0))[0]
    assert torch.allclose(direct, first[0], atol=1e-4)


def test_models_without_forward_head_use_a_private_headless_copy():
    from patchlab.models.zoo import Classifier, Normalize

    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
    model = Classifier(net, Normalize((0.5,) * 3, (0.5,) * 3), "toy", 16, [str(i) for i in range(5)]).eval()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        f = penultimate(model, x)
        assert f.shape == (2, 4) and torch.allclose(net[3](f), model(x), atol=1e-6)
    assert isinstance(net[3], nn.Linear)  # the shared model itself is untouched


def test_split_is_by_photo_and_balanced(imagenet_dir):
    from patchlab.poisoning.task import TaskConfig

    train, test, sources = split_task(imagenet_dir, TaskConfig())
    assert sum(v.label == 0 for v in train) == sum(v.label == 1 for v in train) == 400
    assert sum(v.label == 0 for v in test) == sum(v.label == 1 for v in test) == 100
    assert not {v.source for v in train} & {v.source for v in test}
    assert len(sources["dog"]["train"]) == 55 and len(sources["fish"]["test"]) == 4
    assert split_task(imagenet_dir, TaskConfig())[0] == train  # seeded
