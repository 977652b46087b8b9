"""Figures (matplotlib `Figure` objects, no pyplot state) for the poisoning results."""

from __future__ import annotations

import torch

from patchlab.attacks.demos import _figure, _show


def amplified(delta: torch.Tensor) -> tuple[torch.Tensor, float]:
    """A signed perturbation mapped around grey and stretched so its largest entry is visible."""
    amp = 0.5 / max(float(delta.abs().max()), 1e-12)
    return (0.5 + amp * delta).clamp(0, 1), amp


def _bars(ax, before: torch.Tensor, after: torch.Tensor, names: list[str], true: int) -> None:
    import numpy as np

    pos = np.arange(len(names))
    ax.bar(pos - 0.2, before.float().numpy(), 0.4, label="clean training set", color="#4c78a8")
    ax.bar(pos + 0.2, after.float().numpy(), 0.4, label="poisoned training set", color="#e45756")
    ax.set_xticks(pos, [n + (" (true)" if i == true else "") for i, n in enumerate(names)], fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("probability", fontsize=8)
    ax.legend(fontsize=7, loc="upper center")
    ax.set_title("target's prediction after retraining", fontsize=9)


def poison_figure(outcome, class_names: list[str]):
    """Koh & Liang: per poison original | poison | amplified difference, then the target and before/after bars."""
    r = outcome.result
    k = 0 if outcome.poisons is None else len(outcome.poisons)
    fig = _figure(2.3 * 3 + 4.5, 2.4 * max(1, k))
    grid = fig.add_gridspec(max(1, k), 5)
    for j in range(k):
        orig, pois = outcome.originals[j], outcome.poisons[j]
        view, amp = amplified(pois - orig)
        _show(fig.add_subplot(grid[j, 0]), orig, f"training image {r.poison_views[j]}")
        _show(fig.add_subplot(grid[j, 1]), pois, f"poison (L∞ {r.poison_linf[j] * 255:.0f}/255)")
        _show(fig.add_subplot(grid[j, 2]), view, f"difference ×{amp:.0f}")
    if outcome.target_image is not None:
        _show(fig.add_subplot(grid[0, 3]), outcome.target_image, f"target {r.target_view}")
        _bars(fig.add_subplot(grid[:, 4]), outcome.before_probs, outcome.after_probs, class_names,
              class_names.index(r.true_label))
    verdict = "flipped" if r.flipped else "not flipped"
    fig.suptitle(f"Koh & Liang poisoning, {r.num_poisons} image(s) within L∞ {r.eps * 255:.0f}/255: target {verdict} "
                 f"after {r.iterations} step(s); {r.others_moved} other test prediction(s) moved", fontsize=10)
    return fig


def collision_figure(target: torch.Tensor, base: torch.Tensor, poison: torch.Tensor, result, class_names: list[str],
                     before: torch.Tensor, after: torch.Tensor):
    """Poison Frogs: target | base | poison | amplified difference | before/after bars."""
    fig = _figure(12, 2.8)
    axes = fig.subplots(1, 5)
    view, amp = amplified(poison - base)
    _show(axes[0], target, f"target ({result.target_label})")
    _show(axes[1], base, f"base ({result.base_label})")
    _show(axes[2], poison, f"poison, labelled {result.base_label}")
    _show(axes[3], view, f"difference ×{amp:.0f}")
    _bars(axes[4], before, after, class_names, class_names.index(result.target_label))
    verdict = "misclassified as " + result.base_label if result.success else "still " + result.after_pred
    fig.suptitle(f"Feature collision (opacity {result.opacity:.0%}): target {verdict}; feature distance "
                 f"{result.start_distance:.1f} → {result.feature_distance:.1f}", fontsize=10)
    return fig


def influence_figure(explanation, k: int = 5):
    """The test image and its k most helpful and k most harmful training images, with their influence."""
    s = explanation.setup
    k = min(k, len(explanation.helpful))
    fig = _figure(1.9 * (k + 1), 4.4)
    grid = fig.add_gridspec(2, k + 1)
    t = explanation.test_index
    y = int(s.test_labels[t])
    pred = int(explanation.test_probs.argmax())
    _show(fig.add_subplot(grid[:, 0]), s.test_image(t),
          f"test: {s.class_names[y]}\npredicted {s.class_names[pred]} ({float(explanation.test_probs[pred]):.0%})")
    for row, (name, idx) in enumerate((("helpful", explanation.helpful[:k]), ("harmful", explanation.harmful[:k]))):
        for j, i in enumerate(idx):
            _show(fig.add_subplot(grid[row, j + 1]), s.train_image(i),
                  f"{name}: {s.class_names[int(s.train_labels[i])]}\nI = {float(explanation.influence.scores[i]):.3g}")
    fig.suptitle(f"Influence on the test loss ({s.name}, solver {explanation.influence.solver.solver})", fontsize=10)
    return fig


def loo_figure(checks):
    """Predicted (influence) against actual (leave-one-out retraining) change of the test loss, per solver."""
    fig = _figure(3.6 * max(1, len(checks)), 3.4)
    axes = fig.subplots(1, max(1, len(checks)), squeeze=False)[0]
    for ax, c in zip(axes, checks):
        ax.scatter(c.actual, c.predicted, s=8, alpha=0.7)
        lo = min(min(c.actual), min(c.predicted))
        hi = max(max(c.actual), max(c.predicted))
        ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8)
        ax.set_xlabel("actual change (leave-one-out)", fontsize=8)
        ax.set_ylabel("predicted by influence", fontsize=8)
        ax.set_title(f"{c.solver}: Pearson {c.pearson:.3f} (n = {c.n})", fontsize=9)
    return fig
