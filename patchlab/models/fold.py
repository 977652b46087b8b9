"""Fold eval-mode BatchNorm into the convolution before it: the same function with one memory pass less per layer.

A frozen classifier never updates its BatchNorm statistics, so `bn(conv(x))` equals a single convolution with
rescaled weights and a bias. On the CPU this removes a read and a write of every activation map in the forward
pass and again in the backward pass (about 1.3x on EfficientNet-Lite0 forward+backward).
"""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from patchlab.models.fused import ConvReLU6, is_relu6


def _bn_and_rest(module: nn.Module) -> tuple[nn.BatchNorm2d, nn.Module] | None:
    """A plain BatchNorm2d (replaced by Identity) or timm's BatchNormAct2d (replaced by its dropout + activation)."""
    if type(module) is nn.BatchNorm2d:
        return module, nn.Identity()
    if isinstance(module, nn.BatchNorm2d) and type(module).__name__ == "BatchNormAct2d":
        return module, nn.Sequential(module.drop, module.act)
    return None


def _is_eval_relu6(rest: nn.Module) -> bool:
    """BatchNormAct2d's tail when it is just ReLU6 (dropout in eval mode is the identity)."""
    parts = list(rest) if isinstance(rest, nn.Sequential) else [rest]
    *before, act = parts
    return is_relu6(act) and all(type(p) is nn.Identity or (isinstance(p, nn.Dropout) and not p.training)
                                 for p in before)


def fold_batchnorm(net: nn.Module) -> int:
    """Fold every BatchNorm that directly follows a Conv2d among its siblings (in registration order), in place.
    A ReLU6 right after the BatchNorm goes into the convolution too (`ConvReLU6`, oneDNN's fused post-op).

    Only correct when the siblings also run in that order; `load_model` checks the folded net against the original
    on a probe input and keeps the original when they differ. Returns the number of folded layers."""
    folded = 0
    for parent in list(net.modules()):
        names = list(parent._modules)
        for prev_name, name in pairwise(names):
            prev, cur = parent._modules[prev_name], parent._modules[name]
            bn = _bn_and_rest(cur) if cur is not None else None
            if bn is None or prev is None:
                continue
            batchnorm, rest = bn
            if batchnorm.training or not batchnorm.track_running_stats or batchnorm.running_mean is None:
                continue
            if not isinstance(prev, nn.Conv2d) or prev.out_channels != batchnorm.num_features:
                continue
            plain_bn = nn.BatchNorm2d(batchnorm.num_features, batchnorm.eps).eval()
            plain_bn.load_state_dict({k: v for k, v in batchnorm.state_dict().items()
                                      if k in plain_bn.state_dict()})
            with torch.no_grad():
                fused = fuse_conv_bn_eval(prev.eval(), plain_bn)
            fused.requires_grad_(False)
            if _is_eval_relu6(rest):
                fused, rest = ConvReLU6.from_conv(fused), nn.Identity()
            parent._modules[prev_name] = fused
            parent._modules[name] = rest
            folded += 1
    return folded


__all__ = ["fold_batchnorm"]
