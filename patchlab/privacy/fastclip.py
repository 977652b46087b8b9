"""Faster per-sample clipping for convolutions, plugged into Opacus through its own extension points
(`register_norm_sampler`, `register_grad_sampler`); PrivacyEngine, the clipping rule and the accountant are Opacus's.

`register()` (called by `patchlab.privacy.dpsgd` and `patchlab.privacy.bk`) adds, for `nn.Conv2d` and `nn.Linear`:

- a **norm sampler** for ghost clipping (`grad_sample_mode="ghost"`). Opacus 1.6 has ghost norms only for Linear and
  Embedding layers; for a convolution it materialises every example's gradient (and zero-fills and copies it into a
  buffer) just to take its norm. Ours computes each example's gradient norm per layer by whichever of two exact
  formulas is cheaper (Bu et al. 2022, "mixed ghost norm"): with the unfolded input A_i (P x T: patch size x output
  positions) and the output gradient G_i (O x T), the weight gradient is G_i A_i^T, so

      ||G_i A_i^T||_F^2 = sum_{t,s} (A_i^T A_i)_{ts} (G_i^T G_i)_{ts}       (cost ~ T^2 (P + O); "ghost")
                        = ||G_i A_i^T||_F^2 computed directly               (cost ~ 2 O P T; "materialised")

  e.g. ghost for dpcnn's second convolution (T = 25), materialised for the first (T = 196). Under Opacus's ghost
  clipping no per-sample gradient is kept either way (the clipped sum comes from its second backward pass);
  `conv2d_norms` also hands back the ones it made, and materialises them on request (`keep`), for book-keeping
  clipping (`patchlab.privacy.bk`), which sums them with the clip factors instead of a weight-gradient pass.
- a **norm sampler** for `nn.Linear`: for (n, features) inputs ||g_i a_i^T|| = ||g_i|| ||a_i||, two row sums
  (Opacus's einsum form runs a batched matrix product); other input shapes go to Opacus's own.
- a **grad sampler** that makes Opacus's own convolution grad sampler correct for channels-last activations: its
  `unfold2d` assumes a contiguous NCHW layout and silently returns wrong per-sample gradients otherwise (found here:
  a channels-last model gave a max error of 0.11 on the second convolution's per-sample gradients). Channels-last
  is the fast memory layout on CPU (max-pooling 5-10x faster), so the speed benchmark uses it on both sides.

Both give the numbers of Opacus's own path to float rounding (tests/privacy/test_fastclip.py, test_dpsgd.py).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

_REGISTERED = False


def _unfold_ok(layer: nn.Conv2d) -> bool:
    return layer.groups == 1 and not isinstance(layer.padding, str) and layer.padding_mode == "zeros"


def conv2d_norm_sample(layer: nn.Conv2d, activations: list[torch.Tensor],
                       backprops: torch.Tensor) -> dict[nn.Parameter, torch.Tensor]:
    """Per-example gradient norms of a Conv2d's weight and bias (ghost or materialised, the cheaper)."""
    return conv2d_norms(layer, activations[0], backprops)[0]


def conv2d_norms(layer: nn.Conv2d, a: torch.Tensor, backprops: torch.Tensor, keep: int = 0
                 ) -> tuple[dict[nn.Parameter, torch.Tensor], dict[nn.Parameter, torch.Tensor]]:
    """(per-example gradient norms of the weight and bias, per-example gradients made on the way: the bias's (n, O)
    and, when the materialised formula ran, the weight's as (n, O, kh, kw, C)). With `keep` > 0 the weight's are
    materialised whenever they have at most `keep` numbers: book-keeping clipping then sums them instead of running
    the weight-gradient kernel again, which the ghost formula would still need."""
    a = a.to(backprops.dtype)
    n = a.shape[0]
    ret: dict[nn.Parameter, torch.Tensor] = {}
    if n == 0:
        for p in (layer.weight, layer.bias):
            if p is not None and p.requires_grad:
                ret[p] = torch.zeros(0, device=a.device, dtype=a.dtype)
        return ret, {}
    if not _unfold_ok(layer):  # grouped / "same" padding / other padding modes: Opacus's sampler, then norms
        return {p: g.reshape(n, -1).norm(2, dim=1) for p, g in _conv_grad_sample(layer, [a], backprops).items()}, {}
    A = _patches(a, layer)                                                  # n T P, P in (kh, kw, C) order
    G = backprops.reshape(n, layer.out_channels, -1)                        # n O T
    O, (T, P) = G.shape[1], A.shape[1:]
    grads: dict[nn.Parameter, torch.Tensor] = {}
    if layer.weight.requires_grad:
        if T * T * (P + O) < 2 * O * P * T and n * O * P > keep:
            aat = torch.bmm(A, A.transpose(1, 2))
            ggt = torch.bmm(G.transpose(1, 2), G)
            ret[layer.weight] = (aat * ggt).sum(dim=(1, 2)).clamp(min=0).sqrt()
        else:  # the norm does not care that the gradient's entries come in (O, kh, kw, C) order
            gw = torch.bmm(G, A)
            ret[layer.weight] = gw.reshape(n, -1).norm(2, dim=1)
            grads[layer.weight] = gw.view(n, O, *layer.kernel_size, -1)
    if layer.bias is not None and layer.bias.requires_grad:
        grads[layer.bias] = G.sum(dim=2)
        ret[layer.bias] = grads[layer.bias].norm(2, dim=1)
    return ret, grads


def linear_norm_sample(layer: nn.Linear, activations: list[torch.Tensor],
                       backprops: torch.Tensor) -> dict[nn.Parameter, torch.Tensor]:
    """Per-example gradient norms of a Linear layer. For (n, features) inputs the gradient g_i a_i^T has norm
    ||g_i|| ||a_i||, two row sums (Opacus's einsum form of the same costs a batched matmul); other shapes: Opacus's."""
    if backprops.dim() != 2:
        from opacus.grad_sample.linear import compute_linear_norm_sample

        return compute_linear_norm_sample(layer, activations, backprops)
    g2 = backprops.square().sum(dim=1)
    ret: dict[nn.Parameter, torch.Tensor] = {}
    if layer.weight.requires_grad:
        ret[layer.weight] = (g2 * activations[0].to(backprops.dtype).square().sum(dim=1)).sqrt()
    if layer.bias is not None and layer.bias.requires_grad:
        ret[layer.bias] = g2.sqrt()
    return ret


def _patches(a: torch.Tensor, layer: nn.Conv2d) -> torch.Tensor:
    """The input patches of every output position, (n, T, kh * kw * C), gathered from a channels-last padded copy:
    each patch row is kh runs of kw * C contiguous numbers, a faster gather than NCHW's runs of one output row."""
    n, C = a.shape[:2]
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = layer.kernel_size, layer.stride, layer.padding, layer.dilation
    xp = F.pad(a.permute(0, 2, 3, 1), (0, 0, pw, pw, ph, ph)).contiguous()  # n Hp Wp C
    ho = (xp.shape[1] - dh * (kh - 1) - 1) // sh + 1
    wo = (xp.shape[2] - dw * (kw - 1) - 1) // sw + 1
    s_n, s_h, s_w, s_c = xp.stride()
    return xp.as_strided((n, ho, wo, kh, kw, C), (s_n, s_h * sh, s_w * sw, s_h * dh, s_w * dw, s_c)).reshape(
        n, ho * wo, kh * kw * C)


def _conv_grad_sample(layer, activations, backprops):
    from opacus.grad_sample.conv import compute_conv_grad_sample

    # Opacus's unfold2d needs contiguous NCHW activations; .contiguous() is free when they already are
    return compute_conv_grad_sample(layer, [x.contiguous() for x in activations], backprops)


def register() -> None:
    """Register the samplers above with Opacus (idempotent; `patchlab.privacy.dpsgd` calls it)."""
    global _REGISTERED
    if _REGISTERED:
        return
    from opacus.grad_sample.utils import register_grad_sampler, register_norm_sampler

    register_norm_sampler(nn.Conv2d)(conv2d_norm_sample)
    register_norm_sampler(nn.Linear)(linear_norm_sample)
    register_grad_sampler([nn.Conv1d, nn.Conv2d, nn.Conv3d])(_conv_grad_sample)
    _REGISTERED = True
