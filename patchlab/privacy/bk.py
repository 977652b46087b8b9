"""Book-keeping (BK) clipping for DP-SGD (Bu, Wang, Zha & Karypis 2023, "Differentially private optimization on large
model at small cost"): the clipped sum of per-example gradients from ONE backward pass.

Opacus's ghost clipping runs two full backward passes: one for the per-example gradient norms (which also computes,
and throws away, every weight gradient), one on the loss re-weighted by the clip factors. BK keeps the books instead:

1. forward hooks keep each trainable layer's inputs a and its output;
2. `torch.autograd.grad(sum of losses, [layer outputs])` gives each layer's output gradient g, and autograd runs only
   what those need: input gradients, no weight gradient (the first layer's backward does not run at all);
3. per-example gradient norms per layer from (a, g): Conv2d by patchlab.privacy.fastclip (which here materialises
   each example's weight gradient G_i A_i^T while all kept in the pass fit in `KEEP` numbers: cheaper than a ghost
   norm plus a weight-gradient pass later), Linear by fastclip's norm sampler (||g_i|| ||a_i||), other layers by
   Opacus's norm sampler or from Opacus's per-example gradients;
4. clip factors c_i = min(1, C / (||grad_i|| + 1e-6)) over all layers (Opacus's rule, to the same float);
5. each parameter's clipped sum sum_i c_i grad_i: c^T (per-example gradients) where step 3 made them, else an
   ordinary weight gradient from (a, c * g) (Linear (c g)^T a; Conv2d the convolution's weight-gradient kernel).
   That is at most one non-private weight-gradient pass, and no second input-gradient pass.

The noise, the scaling by the expected batch size, Poisson sampling and the accountant are Opacus's, unchanged:
`make_private` asks `PrivacyEngine` for its ghost-clipping setup (whose optimizer takes summed clipped gradients in
`p.grad` and adds the noise), takes Opacus's hooks off the model and puts BK's on. Equal to Opacus's per-example
clipping to float rounding (tests/privacy/test_bk.py).

Limits (refused with a clear error, never silently wrong): every trainable layer runs once per forward (no weight
sharing), no in-place operation on a layer's output, and every trainable layer has an Opacus norm or grad sampler.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from patchlab.errors import PatchlabError
from patchlab.privacy import fastclip

CLIP_EPS = 1e-6  # Opacus's: clip factor = C / (norm + 1e-6), at most 1
# convolutions' per-example weight gradients are made (and then summed with the clip factors) while all those kept
# in one backward pass add up to at most this many numbers (256 MiB in float32): cheaper than ghost norms plus a
# weight-gradient pass; past it, ghost norms and the weight-gradient kernel
KEEP = 1 << 26


def _trainable_layers(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if any(p.requires_grad for p in m.parameters(recurse=False))]


class BookKeeping(nn.Module):
    """Wraps a model for BK clipping: call it as the model; `backward(loss_per_sample)` (or the loss from `BKLoss`)
    leaves sum_i c_i grad_i in each trainable parameter's `.grad`. `to_standard_module()` removes the hooks."""

    def __init__(self, module: nn.Module, max_grad_norm: float, keep: int = KEEP):
        super().__init__()
        from opacus.grad_sample import GradSampleModule
        from opacus.grad_sample.grad_sample_module_fast_gradient_clipping import GradSampleHooksFastGradientClipping

        fastclip.register()
        self._module = module
        self.max_grad_norm = float(max_grad_norm)
        self.keep = int(keep)
        self._norm_samplers = GradSampleHooksFastGradientClipping.NORM_SAMPLERS
        self._grad_samplers = GradSampleModule.GRAD_SAMPLERS
        self._layers = _trainable_layers(module)
        unsupported = sorted({type(m).__name__ for m in self._layers
                              if type(m) not in self._norm_samplers and type(m) not in self._grad_samplers})
        if unsupported:
            raise PatchlabError(f"BK clipping has no per-example rule for {', '.join(unsupported)}; use "
                                "grad_sample_mode='ghost' or 'hooks'")
        self._records: list[tuple[nn.Module, list, torch.Tensor, int]] = []  # layer, inputs, output, its version
        self._handles = [m.register_forward_hook(self._record) for m in self._layers]

    def forward(self, *args, **kwargs):
        self._records = []
        return self._module(*args, **kwargs)

    def _record(self, layer: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if torch.is_grad_enabled() and isinstance(output, torch.Tensor) and output.requires_grad:
            acts = [x.detach() if isinstance(x, torch.Tensor) else x for x in inputs]
            self._records.append((layer, acts, output, output._version))

    def to_standard_module(self) -> nn.Module:
        for h in self._handles:
            h.remove()
        self._handles, self._records = [], []
        return self._module

    def backward(self, loss_per_sample: torch.Tensor) -> None:
        """Write the clipped sum of per-example gradients (of the unreduced per-example losses) into `.grad`."""
        records, self._records = self._records, []
        params = [p for m in self._layers for p in m.parameters(recurse=False) if p.requires_grad]
        n = loss_per_sample.shape[0]
        if n == 0:  # an empty Poisson batch: a zero sum (the optimizer still adds the noise)
            for p in params:
                p.grad = torch.zeros_like(p)
            return
        if not records:
            raise PatchlabError("BK clipping: no trainable layer ran with gradients since the last forward")
        layers = [r[0] for r in records]
        if len(set(map(id, layers))) != len(layers):
            raise PatchlabError("BK clipping needs every trainable layer to run once per forward (this model shares "
                                "a layer); use grad_sample_mode='ghost' or 'hooks'")
        for layer, _, out, version in records:
            if out._version != version:
                raise PatchlabError(f"BK clipping: the output of {type(layer).__name__} was changed in place (e.g. an "
                                    "inplace activation); use inplace=False or grad_sample_mode='ghost'")
        grads = torch.autograd.grad(loss_per_sample.sum(), [r[2] for r in records], allow_unused=True)
        sq = torch.zeros(n, device=loss_per_sample.device, dtype=torch.float32)
        kept: list[dict] = []
        budget = self.keep  # numbers of per-example weight gradients this backward may still keep
        for (layer, a, _, _), g in zip(records, grads):
            per_example: dict = {}
            if g is not None:
                norms, spent = self._norms(layer, a, g, per_example, budget)
                budget -= spent
                for norm in norms.values():
                    sq += norm.to(sq.dtype) ** 2
            kept.append(per_example)
        clip = (self.max_grad_norm / (sq.sqrt() + CLIP_EPS)).clamp(max=1.0)
        for p in params:
            p.grad = None
        for (layer, a, _, _), g, per_example in zip(records, grads, kept):
            if g is not None:
                self._clipped_sum(layer, a, g, clip, per_example)
        for p in params:  # a layer off the loss's path contributes nothing
            if p.grad is None:
                p.grad = torch.zeros_like(p)

    def _norms(self, layer: nn.Module, acts: list, g: torch.Tensor, per_example: dict, budget: int
               ) -> tuple[dict, int]:
        """(per-example gradient norms of `layer`'s parameters, how many of the `budget` numbers of per-example
        weight gradients it kept). Per-example gradients that had to be made on the way go into `per_example` as
        {param: ((n, k) matrix, function from its clipped sum (k,) to the param's shape)}."""
        if isinstance(layer, nn.Conv2d) and fastclip._unfold_ok(layer):
            norms, grads = fastclip.conv2d_norms(layer, acts[0], g, keep=budget)
            spent = sum(gs.numel() for p, gs in grads.items() if p is layer.weight)
            for p, gs in grads.items():  # the weight's come as (n, O, kh, kw, C): summed, then put in (O, C, kh, kw)
                per_example[p] = (gs.reshape(len(gs), -1), lambda s, shape=gs.shape[1:]: (
                    s.view(shape).permute(0, 3, 1, 2) if len(shape) == 4 else s))
            return norms, spent
        fn = self._norm_samplers.get(type(layer))
        if fn is not None:
            return fn(layer, acts, g), 0
        norms = {}
        for p, gs in self._grad_samplers[type(layer)](layer, acts, g).items():
            per_example[p] = (gs.reshape(len(gs), -1), lambda s, shape=p.shape: s.view(shape))
            norms[p] = per_example[p][0].norm(2, dim=1)
        return norms, 0

    def _clipped_sum(self, layer: nn.Module, acts: list, g: torch.Tensor, clip: torch.Tensor,
                     per_example: dict) -> None:
        """sum_i clip_i grad_i into each of `layer`'s parameters' `.grad`: from kept per-example gradients (a
        matrix-vector product), else as an ordinary weight gradient from the scaled output gradients."""
        for p, (flat, to_param) in per_example.items():
            _set(p, lambda flat=flat, to_param=to_param: to_param(clip.to(flat.dtype) @ flat))
        todo = {id(p) for p in layer.parameters(recurse=False) if p.requires_grad and p not in per_example}
        if not todo:
            return
        cg, a = g * clip.to(g.dtype).view(-1, *([1] * (g.dim() - 1))), acts[0]
        if isinstance(layer, nn.Linear):
            a2, g2 = a.reshape(-1, a.shape[-1]).to(cg.dtype), cg.reshape(-1, cg.shape[-1])
            if id(layer.weight) in todo:
                _set(layer.weight, lambda: g2.t() @ a2)
            if layer.bias is not None and id(layer.bias) in todo:
                _set(layer.bias, lambda: g2.sum(0))
        elif isinstance(layer, nn.Conv2d) and fastclip._unfold_ok(layer):
            w, b = layer.weight, layer.bias
            need_w, need_b = id(w) in todo, b is not None and id(b) in todo
            _, gw, gb = torch.ops.aten.convolution_backward(
                cg, a.to(cg.dtype), w, [w.shape[0]] if need_b else None, list(layer.stride), list(layer.padding),
                list(layer.dilation), False, [0, 0], layer.groups, [False, need_w, need_b])
            if need_w:
                _set(w, lambda: gw)
            if need_b:
                _set(b, lambda: gb)
        else:  # a norm sampler's layer without a direct rule: its per-example gradients of (a, c g) summed
            for p, gs in self._grad_samplers[type(layer)](layer, acts, cg).items():
                if id(p) in todo:
                    _set(p, lambda gs=gs: gs.sum(0))


def _set(p: nn.Parameter | None, grad: Callable[[], torch.Tensor]) -> None:
    if p is not None and p.requires_grad:
        g = grad().reshape(p.shape)
        p.grad = g if p.grad is None else p.grad + g


class BKLoss:
    """The criterion for BK clipping (like Opacus's `DPLossFastGradientClipping`): `BKLoss(model, criterion)(out, y)`
    returns a loss whose `backward()` runs BK's single backward pass."""

    def __init__(self, module: BookKeeping, criterion: nn.Module, loss_reduction: str = "mean"):
        self.module, self.criterion, self.loss_reduction = module, criterion, loss_reduction
        self.criterion.reduction = "none"

    def __call__(self, output: torch.Tensor, target: torch.Tensor) -> "BKTensor":
        return BKTensor(self.module, self.criterion(output, target), self.loss_reduction)


class BKTensor:
    def __init__(self, module: BookKeeping, loss_per_sample: torch.Tensor, loss_reduction: str):
        self.module, self.loss_per_sample, self.loss_reduction = module, loss_per_sample, loss_reduction

    def detach(self) -> torch.Tensor:
        reduce = torch.mean if self.loss_reduction == "mean" else torch.sum
        return reduce(self.loss_per_sample.detach())

    def item(self) -> float:
        return float(self.detach())

    def backward(self) -> None:
        self.module.backward(self.loss_per_sample)


def make_private(engine, *, module: nn.Module, optimizer: torch.optim.Optimizer, data_loader,
                 max_grad_norm: float, criterion: nn.Module | None = None, target_epsilon: float | None = None,
                 target_delta: float | None = None, epochs: int | None = None, **kwargs):
    """`PrivacyEngine.make_private` (or `make_private_with_epsilon` when `target_epsilon` is given) for BK clipping:
    Opacus's ghost-clipping optimizer (noise on the summed clipped gradient), data loader and accountant, BK's
    hooks on the model. Returns (model, optimizer, criterion, data_loader) like Opacus's ghost mode."""
    common = dict(module=module, optimizer=optimizer, data_loader=data_loader, max_grad_norm=max_grad_norm,
                  criterion=criterion if criterion is not None else nn.CrossEntropyLoss(),
                  grad_sample_mode="ghost", **kwargs)
    if target_epsilon is not None:
        gsm, dp_opt, _, loader = engine.make_private_with_epsilon(target_epsilon=target_epsilon,
                                                                  target_delta=target_delta, epochs=epochs, **common)
    else:
        gsm, dp_opt, _, loader = engine.make_private(**common)
    net = gsm.to_standard_module()  # Opacus's ghost hooks off; its optimizer and accountant stay
    bk = BookKeeping(net, max_grad_norm)
    loss_reduction = kwargs.get("loss_reduction", "mean")
    return bk, dp_opt, BKLoss(bk, common["criterion"], loss_reduction), loader

