"""The CUDA path, checked without a GPU: tensors follow the model's device (the "meta" device stands in for a GPU:
any CPU tensor meeting a meta one raises, like a CPU tensor meeting a CUDA one), host-to-device copies go through
pinned memory only where it helps, and bf16 autocast in the optimisation's model pass keeps predictions and the patch
gradient (CPU bf16 autocast, the same code path as CUDA's)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.scale.conftest import PATCH


@pytest.fixture(scope="module")
def lite0_meta():
    from patchlab.models import load_model

    return load_model("efficientnet_lite0", "meta")


def test_models_and_defended_models_follow_their_device(lite0_meta):
    from patchlab.sweep.defenses import Defended, defended

    x = torch.rand(2, 3, 224, 224, device="meta")
    assert lite0_meta.device.type == "meta"
    assert lite0_meta(x).device.type == "meta" and lite0_meta(x).shape == (2, 1000)
    blur = Defended(lite0_meta, torch.nn.AvgPool2d(3, 1, 1), "blur")
    assert blur.device.type == "meta" and blur(x).device.type == "meta"
    assert defended(lite0_meta, "none") is lite0_meta
    with pytest.raises(RuntimeError):  # a stray host tensor is caught: what would fail on a GPU fails here
        lite0_meta(torch.rand(2, 3, 224, 224))


def test_to_device_pins_only_for_cuda_and_keeps_values():
    from patchlab.models import to_device
    from patchlab.patch.data import to_float

    bank = torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8)
    assert to_device(bank, "cpu") is bank  # no copy on the CPU
    assert to_device(bank, "meta").device.type == "meta"
    x = to_float(bank, torch.device("cpu"))
    assert x.dtype == torch.float32 and torch.equal(x, bank.float() / 255)
    assert to_float(bank, torch.device("meta")).device.type == "meta"


def test_camera_eager_backend_keeps_its_logits(lite0):
    from patchlab.capture.inference import EagerBackend

    frame = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    got = EagerBackend(lite0).logits(frame)
    with torch.inference_mode():
        want = lite0(torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255)[0].numpy()
    assert np.allclose(got, want, atol=1e-4)


def test_bf16_autocast_keeps_predictions_and_the_patch_gradient(lite0, imagenet_dir):
    """The model pass of patch optimisation under bf16 autocast (PatchConfig.bf16, `patch train --bf16`): on 16
    patched held-out frames (shipped toaster patch, 10% area, digital preset) top-1 agrees with fp32 on at least 15,
    and the patch gradient of the training loss points the same way (cosine >= 0.9)."""
    from patchlab.eot import EOT, load_config
    from patchlab.patch.data import list_scene_images, load_scenes
    from patchlab.patch.io import load_patch
    from patchlab.patch.train import _adv_loss

    rgba, meta = load_patch(PATCH)
    held = [p for p in list_scene_images(imagenet_dir) if p.name not in set(meta["train_images"])][::17][:16]
    scenes = load_scenes(held, 224).float() / 255
    texture = rgba[:3].clone().requires_grad_(True)
    frames = EOT(load_config("digital"))(torch.cat([texture, rgba[3:]]), scenes, 0.10,
                                         torch.Generator().manual_seed(0)).images
    grads, preds = [], []
    for bf16 in (False, True):
        loss, _, _ = _adv_loss([lite0], frames, 859, None, bf16=bf16)
        grads.append(torch.autograd.grad(loss, texture, retain_graph=True)[0].flatten())
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            preds.append(lite0(frames).argmax(-1))
    agree = int((preds[0] == preds[1]).sum())
    cosine = float(F.cosine_similarity(grads[0], grads[1], dim=0))
    assert agree >= 15, f"bf16 changed {16 - agree} of 16 predictions"
    assert cosine >= 0.9, f"bf16 patch gradient cosine {cosine:.3f}"
