"""The seed talk's demos as library functions. Each returns a `DemoResult` (a matplotlib figure plus the numbers
behind it); `result.save(path)` writes a PNG. Small sizes are parameters so tests and the app stay quick."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from patchlab.attacks.base import parse_eps, resolve_class
from patchlab.attacks.bim import BIM
from patchlab.attacks.fgsm import FGSM
from patchlab.registry import Registry


@dataclass
class DemoResult:
    figure: "matplotlib.figure.Figure"  # noqa: F821
    data: dict = field(default_factory=dict)

    def save(self, path: str | Path, dpi: int = 100) -> Path:
        """A tagged PNG (kind figure), written atomically."""
        from patchlab.artifacts import save_figure

        return save_figure(self.figure, path, "figure", "patchlab attack-demo", dpi=dpi, bbox_inches="tight")


def _figure(w: float, h: float):
    from matplotlib.figure import Figure  # no pyplot: no global state, safe in Streamlit threads

    return Figure(figsize=(w, h), layout="constrained")


def _show(ax, image: torch.Tensor, title: str) -> None:
    img = image.detach().cpu()
    if img.shape[0] == 1:
        ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(img.permute(1, 2, 0).clamp(0, 1).numpy())
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def perturbation_view(delta: torch.Tensor, amplify: float | None = None) -> tuple[torch.Tensor, float]:
    """The signed perturbation mapped to [0, 1] around grey, stretched (by default) so its largest value is visible;
    returns (image, stretch)."""
    amp = amplify or (0.5 / max(float(delta.abs().max()), 1e-12))
    return (0.5 + amp * delta).clamp(0, 1), amp


def _default_model(model):
    if model is not None:
        return model
    from patchlab.models import load_model

    return load_model("efficientnet_lite0")


def _sample_input(model, sample: str) -> tuple[torch.Tensor, int]:
    from patchlab.data import load_sample
    from patchlab.models import preprocess

    s = load_sample(sample)
    return preprocess(s.image, model)[None].to(next(model.parameters()).device), s.label


# -- 1. panda + .007 × sign(∇) = gibbon -------------------------------------------------------------------------
def panda_gibbon(model=None, sample: str = "chelsea", eps: float | str = 0.007, amplify: float | None = None,
                 width: float = 9.0) -> DemoResult:
    """Goodfellow et al.'s figure on a built-in photo: x, sign(∇x J) (shown amplified) and x + ε·sign(∇x J),
    each with its top class and confidence (untargeted FGSM against the model's own prediction)."""
    model = _default_model(model)
    x, _ = _sample_input(model, sample)
    attack = FGSM(model, eps=eps)
    res = attack(x)
    probs = model.predict(torch.cat([x, res.adv]))
    p0, c0 = probs[0].max(0)
    p1, c1 = probs[1].max(0)
    view, amp = perturbation_view((res.adv - x)[0], amplify)
    labels = model.labels
    fig = _figure(width, width * 0.4)
    axes = fig.subplots(1, 3)
    _show(axes[0], x[0], f"x\n{labels[int(c0)]} {float(p0):.1%}")
    _show(axes[1], view, f"sign(∇x J) × {attack.eps:.3g}\n(shown ×{amp:.0f})")
    _show(axes[2], res.adv[0], f"x + {attack.eps:.3g}·sign(∇x J)\n{labels[int(c1)]} {float(p1):.1%}")
    fig.suptitle(f"FGSM on {getattr(model, 'name', 'model')}: ε = {attack.eps:.4g}", fontsize=10)
    data = {"sample": sample, "eps": attack.eps, "clean_class": labels[int(c0)], "clean_conf": float(p0),
            "adv_class": labels[int(c1)], "adv_conf": float(p1), "flipped": int(c0) != int(c1),
            "linf": float(res.linf[0]), "l2": float(res.l2[0])}
    return DemoResult(fig, data)


# -- 2. attacking a linear model ---------------------------------------------------------------------------------
class LinearDigits(nn.Module):
    """Multinomial logistic regression on (N, 1, H, W) digits in [0, 1]; returns logits."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, shape: tuple[int, int]):
        super().__init__()
        self.linear = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.linear.weight.copy_(weight)
            self.linear.bias.copy_(bias)
        self.shape = shape
        self.labels = [str(i) for i in range(weight.shape[0])]
        self.requires_grad_(False).eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


def train_linear_digits(digits=None, test_fraction: float = 0.3, C: float = 1.0, seed: int = 0):
    """Fit logistic regression (scikit-learn) on digits; returns (model, x_test, y_test, test accuracy).

    `digits` defaults to scikit-learn's bundled 8x8 digits (offline); pass `load_digits(mnist_dir)` for MNIST."""
    from sklearn.linear_model import LogisticRegression

    from patchlab.data import load_digits

    d = digits if digits is not None else load_digits()
    n = len(d.labels)
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=g)
    n_test = int(n * test_fraction)
    test, train = order[:n_test], order[n_test:]
    x = d.images.flatten(1).numpy()
    y = d.labels.numpy()
    clf = LogisticRegression(C=C, max_iter=2000)
    clf.fit(x[train.numpy()], y[train.numpy()])
    model = LinearDigits(torch.tensor(clf.coef_, dtype=torch.float32), torch.tensor(clf.intercept_, dtype=torch.float32),
                         tuple(d.images.shape[-2:]))
    x_test, y_test = d.images[test], d.labels[test]
    with torch.no_grad():
        acc = float((model(x_test).argmax(1) == y_test).float().mean())
    return model, x_test, y_test, acc


def linear_model(eps: float | str = 0.2, epsilons=None, digits=None, index: int = 0, width: float = 9.0) -> DemoResult:
    """Logistic regression on digits: its weight images, one FGSM example at `eps`, and test accuracy vs ε.

    For a linear model ∇x J is a fixed combination of weight images, so sign(∇x J) moves every pixel by ε in the
    direction that matters: ‖w‖₁·ε adds up over all pixels and flips the class at small ε."""
    model, x_test, y_test, clean_acc = train_linear_digits(digits)
    eps_list = list(epsilons) if epsilons is not None else [i / 40 for i in range(0, 13)]
    attack = FGSM(model, eps=eps)
    curve = [float((r.adv_pred == r.labels).float().mean()) for r in attack.sweep(x_test, y_test, eps_list)]
    res = attack(x_test[index:index + 1], y_test[index:index + 1])
    probs = model(torch.cat([x_test[index:index + 1], res.adv])).softmax(1)
    fig = _figure(width, width * 0.55)
    grid = fig.add_gridspec(2, 10)
    w = model.linear.weight.detach().cpu().view(-1, *model.shape)
    lim = float(w.abs().max())
    for k in range(min(10, len(w))):
        ax = fig.add_subplot(grid[0, k])
        ax.imshow(w[k].numpy(), cmap="seismic", vmin=-lim, vmax=lim)
        ax.set_title(f"w[{k}]", fontsize=8)
        ax.axis("off")
    c0, c1 = int(probs[0].argmax()), int(probs[1].argmax())
    _show(fig.add_subplot(grid[1, 0:2]), x_test[index], f"x: {c0} ({float(probs[0, c0]):.0%})")
    _show(fig.add_subplot(grid[1, 2:4]), perturbation_view((res.adv - x_test[index:index + 1])[0])[0],
          f"sign(∇x J)·{attack.eps:.3g}")
    _show(fig.add_subplot(grid[1, 4:6]), res.adv[0], f"x+δ: {c1} ({float(probs[1, c1]):.0%})")
    ax = fig.add_subplot(grid[1, 6:10])
    ax.plot(eps_list, curve, marker="o", ms=3)
    ax.set_xlabel("ε (Linf)", fontsize=8)
    ax.set_ylabel("test accuracy", fontsize=8)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=7)
    fig.suptitle(f"Logistic regression on digits (clean accuracy {clean_acc:.1%}) and FGSM", fontsize=10)
    data = {"clean_accuracy": clean_acc, "eps": attack.eps, "curve_eps": eps_list, "curve_accuracy": curve,
            "example_label": int(y_test[index]), "example_clean_pred": c0, "example_adv_pred": c1,
            "flipped": c0 != c1, "n_test": len(y_test)}
    return DemoResult(fig, data)


# -- 3. wrong almost everywhere: logits are linear in ε --------------------------------------------------------
def logits_along_gradient(model=None, sample: str = "chelsea", span: float = 0.05, points: int = 41,
                          clip: bool = False, highlight: int = 5, width: float = 8.0) -> DemoResult:
    """Logits of every class at x + ε·sign(∇x J) for ε in [-span, span] (Goodfellow et al., Fig. 4).

    How straight the curves are is measured, not assumed (on EfficientNet-Lite0 they are not: R² ≈ 0.6 over ±0.05):
    `data['r2_top']` is the mean R² of a linear fit for the classes that are top-1 anywhere along the sweep,
    `data['r2_all']` for all classes. With `clip` the images stay in [0, 1]."""
    model = _default_model(model)
    x, _ = _sample_input(model, sample)
    attack = FGSM(model, eps=0.0)
    with torch.no_grad():
        y = model(x).argmax(1)
    grad, _ = attack.input_grad(x, y, None)
    direction = grad.sign()
    eps = torch.linspace(-span, span, points, device=x.device)
    xs = x + eps.view(-1, 1, 1, 1) * direction
    if clip:
        xs = xs.clamp(0, 1)
    with torch.no_grad():
        logits = torch.cat([model(xs[i:i + 16]) for i in range(0, points, 16)]).cpu().numpy()
    e = eps.cpu().numpy()
    fit = np.polyfit(e, logits, 1)
    pred = np.outer(e, fit[0]) + fit[1]
    ss_res = ((logits - pred) ** 2).sum(0)
    ss_tot = ((logits - logits.mean(0)) ** 2).sum(0) + 1e-12
    r2 = 1 - ss_res / ss_tot
    winners = sorted(set(logits.argmax(1).tolist()))
    labels = getattr(model, "labels", [str(i) for i in range(logits.shape[1])])
    fig = _figure(width, width * 0.55)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(e, logits, color="0.8", lw=0.4)
    top = list(dict.fromkeys(winners + list(np.argsort(-logits[points // 2])[:highlight])))[:max(highlight, len(winners))]
    for k in top:
        ax.plot(e, logits[:, k], lw=1.6, label=f"{labels[k]} (R²={r2[k]:.3f})")
    ax.axvline(0, color="k", lw=0.6)
    ax.set_xlabel("ε  (x + ε·sign(∇x J))")
    ax.set_ylabel("logit")
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title(f"{getattr(model, 'name', 'model')}: all {logits.shape[1]} logits along the FGSM direction", fontsize=10)
    data = {"sample": sample, "span": span, "eps": e.tolist(), "r2_top": float(np.mean(r2[winners])),
            "r2_all": float(np.mean(r2)), "winners": [labels[k] for k in winners],
            "clean_class": labels[int(y)], "adv_class_at_span": labels[int(logits[-1].argmax())]}
    return DemoResult(fig, data)


# -- 4. turning objects into airplanes ------------------------------------------------------------------------
def objects_to_airplanes(model=None, images: torch.Tensor | None = None, names: list[str] | None = None,
                         target: str | int = "airliner", eps: float | str = 8 / 255, steps: int = 10,
                         width: float = 10.0) -> DemoResult:
    """A targeted iterative attack (BIM) to `target` on the built-in photos (or given images), shown as a grid:
    originals with their top class above, adversarials with the target's probability below."""
    from patchlab.data import load_samples
    from patchlab.models import preprocess

    model = _default_model(model)
    if images is None:
        samples = load_samples()
        images = torch.stack([preprocess(s.image, model) for s in samples])
        names = [s.name for s in samples]
    names = names or [f"image {i}" for i in range(len(images))]
    images = images.to(next(model.parameters()).device)
    t = resolve_class(model, target)
    eps = parse_eps(eps)
    attack = BIM(model, eps=eps, steps=steps, alpha=min(eps, max(2 * eps / steps, 1 / 255)), target=t)
    res = attack(images)
    probs = model.predict(torch.cat([images, res.adv]))
    n = len(images)
    labels = model.labels
    fig = _figure(width, width / n * 2.3 if n else 3)
    axes = fig.subplots(2, n, squeeze=False)
    rows = []
    for i in range(n):
        p0, c0 = probs[i].max(0)
        p1, c1 = probs[n + i].max(0)
        _show(axes[0, i], images[i], f"{names[i]}\n{labels[int(c0)]} {float(p0):.0%}")
        _show(axes[1, i], res.adv[i], f"{labels[int(c1)]} {float(p1):.0%}")
        rows.append({"name": names[i], "clean_class": labels[int(c0)], "adv_class": labels[int(c1)],
                     "target_prob": float(probs[n + i, t])})
    fig.suptitle(f"Targeted BIM to '{labels[t]}', ε = {attack.eps * 255:.0f}/255, {attack.steps} steps: "
                 f"{int(res.success.sum())}/{n} turned", fontsize=10)
    return DemoResult(fig, {"target": labels[t], "eps": attack.eps, "steps": attack.steps,
                            "success_rate": res.success_rate, "images": rows})


DEMOS: Registry = Registry("demo")
DEMOS.register("panda", panda_gibbon, title="Panda → gibbon (FGSM, ε = 0.007)")
DEMOS.register("linear", linear_model, title="Attacking a linear model")
DEMOS.register("logits", logits_along_gradient, title="Wrong almost everywhere", aliases=("everywhere",))
DEMOS.register("airplanes", objects_to_airplanes, title="Objects → airliner", aliases=("airliner",))


def run_demo(name: str, model=None, **kwargs) -> DemoResult:
    """Run a demo by name; `model` goes to the demos that attack an ImageNet model (the linear one trains its own)."""
    if uses_model(name):
        kwargs["model"] = model
    return DEMOS.get(name)(**kwargs)


def uses_model(name: str) -> bool:
    """Whether the demo attacks an ImageNet model (so a caller loads one first)."""
    import inspect

    return "model" in inspect.signature(DEMOS.get(name)).parameters

