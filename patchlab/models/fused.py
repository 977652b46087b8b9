"""A convolution with ReLU6 fused in, for frozen EfficientNet-Lite layers on the CPU.

`relu6(conv(x))` in eager PyTorch writes the convolution's output, then clones it (the in-place ReLU6's backward
needs the pre-activation) and clamps the clone: two extra passes over every activation map. oneDNN applies the clamp
as a post-op inside the convolution, so the forward costs what the convolution alone costs. The backward masks the
incoming gradient where the output was clamped (0 < y < 6, the same rule as PyTorch's ReLU6) and calls the
convolution's own backward. Everywhere else (CUDA, autocast, tracing, ONNX export, torch.compile, other dtypes) the
module runs the plain `hardtanh(conv(x), 0, 6)`, so results and exports are unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable


def _fused_forward(x, weight, bias, stride, padding, dilation, groups):
    return torch.ops.mkldnn._convolution_pointwise(x, weight, bias, padding, stride, dilation, groups,
                                                  "hardtanh", [0.0, 6.0], "")


class _ConvReLU6Function(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups):
        y = _fused_forward(x, weight, bias, stride, padding, dilation, groups)
        ctx.save_for_backward(x, weight, y)
        ctx.conf = (stride, padding, dilation, groups, bias is not None)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, weight, y = ctx.saved_tensors
        stride, padding, dilation, groups, has_bias = ctx.conf
        grad = torch.ops.aten.hardtanh_backward(grad, y, 0.0, 6.0)
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], has_bias and ctx.needs_input_grad[2]]
        gx, gw, gb = torch.ops.aten.convolution_backward(grad, x, weight, [weight.shape[0]] if has_bias else None,
                                                         stride, padding, dilation, False, [0, 0], groups, mask)
        return gx, gw, gb, None, None, None, None


_HAS_FUSED_OP = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")


def _can_fuse(x: torch.Tensor) -> bool:
    return (_HAS_FUSED_OP and x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4
            and not torch.is_autocast_enabled("cpu")
            and not torch.jit.is_tracing() and not torch.jit.is_scripting() and not torch.onnx.is_in_onnx_export()
            and not torch.compiler.is_compiling())


class ConvReLU6(nn.Conv2d):
    """`relu6(conv(x))` as one module; same parameters and state-dict keys as the Conv2d it replaces."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding_mode == "zeros" and isinstance(self.padding, tuple) and _can_fuse(x):
            args = (list(self.stride), list(self.padding), list(self.dilation), self.groups)
            if torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad):
                return _ConvReLU6Function.apply(x, self.weight, self.bias, *args)
            return _fused_forward(x, self.weight, self.bias, *args)
        return F.hardtanh(self._conv_forward(x, self.weight, self.bias), 0.0, 6.0)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> ConvReLU6:
        fused = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                    conv.groups, conv.bias is not None, conv.padding_mode, device=conv.weight.device,
                    dtype=conv.weight.dtype)
        fused.load_state_dict(conv.state_dict())
        fused.requires_grad_(conv.weight.requires_grad)
        fused.train(conv.training)
        return fused


def is_relu6(module: nn.Module) -> bool:
    return type(module) is nn.ReLU6 or (type(module) is nn.Hardtanh and module.min_val == 0 and module.max_val == 6)


__all__ = ["ConvReLU6", "is_relu6"]
