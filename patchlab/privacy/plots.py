"""Figures for the privacy results (matplotlib `Figure` objects, no pyplot state: safe in threads and the app)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from patchlab.privacy.mia import ATTACKS
from patchlab.privacy.rdp import dp_roc_bound



def _figure(w: float = 6.0, h: float = 4.5):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), layout="constrained")


def roc_figure(attacks: dict, epsilon: float | None = None, delta: float = 1e-5, title: str = "",
               violations: dict | None = None):
    """ROC curves on log-log axes (the low-FPR regime is what matters, Carlini et al. 2022), the chance line,
    and for a DP model the bound TPR <= e^eps FPR + delta (a point above it is a bug, marked in red)."""
    fig = _figure()
    ax = fig.add_subplot()
    floor = 1e-4
    for name, a in attacks.items():
        fpr, tpr = np.asarray(a["fpr"]), np.asarray(a["tpr"])
        ax.plot(np.maximum(fpr, floor), np.maximum(tpr, floor), lw=1.6,
                label=f"{ATTACKS.title(name) if name in ATTACKS else name}  AUC {a['auc']:.3f}, TPR@0.1% {a['tpr_at_0.1%']:.2%}")
    grid = np.logspace(np.log10(floor), 0, 200)
    ax.plot(grid, grid, color="grey", ls=":", lw=1, label="chance")
    if epsilon is not None:
        ax.plot(grid, dp_roc_bound(grid, epsilon, delta), color="black", ls="--", lw=1.4,
                label=f"DP bound, ε = {epsilon:.2f}, δ = {delta:g}")
    for pts in (violations or {}).values():
        for p in pts:
            ax.plot([max(p["fpr"], floor)], [max(p["tpr"], floor)], "o", color="red", ms=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(floor, 1)
    ax.set_ylim(floor, 1.05)
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.set_title(title or "Membership inference ROC")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(True, which="both", alpha=0.2)
    return fig


def epsilon_accuracy_figure(rows: list[dict], baseline: float | None = None, title: str = ""):
    """Accuracy against epsilon, one line per `variant` (rows: variant, epsilon, accuracy, ci95 optional)."""
    fig = _figure()
    ax = fig.add_subplot()
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    for v in variants:
        pts = sorted((r["epsilon"], r["accuracy"], r.get("ci95")) for r in rows if r["variant"] == v)
        eps = [p[0] for p in pts]
        acc = [p[1] for p in pts]
        line, = ax.plot(eps, acc, marker="o", label=v)
        if all(p[2] for p in pts):
            ax.fill_between(eps, [p[2][0] for p in pts], [p[2][1] for p in pts], color=line.get_color(), alpha=0.15)
    if baseline is not None:
        ax.axhline(baseline, color="black", ls="--", lw=1, label=f"non-private {baseline:.1%}")
    ax.set_xscale("log")
    ax.set_xlabel("ε (δ = 1e-5)")
    ax.set_ylabel("test accuracy")
    ax.set_title(title or "DP-SGD: accuracy against privacy")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.2)
    return fig


def dpsgd_history_figure(history: list[dict], target: float | None = None):
    """ε spent and training loss per epoch."""
    fig = _figure(6, 3.2)
    ax = fig.add_subplot()
    ep = [h["epoch"] for h in history]
    ax.plot(ep, [h["epsilon"] for h in history], marker="o", color="tab:red", label="ε spent")
    if target is not None:
        ax.axhline(target, color="tab:red", ls=":", lw=1, label=f"target ε {target:g}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("ε", color="tab:red")
    ax2 = ax.twinx()
    ax2.plot(ep, [h["loss"] for h in history], marker=".", color="tab:blue", label="loss")
    ax2.set_ylabel("training loss", color="tab:blue")
    ax.set_title("DP-SGD: privacy spent and loss")
    return fig


def pate_figure(analysis, counts: np.ndarray, title: str = ""):
    """Left: cumulative ε over the queries, data-dependent against data-independent. Right: each query's
    data-dependent cost against its vote margin (wide margins are nearly free)."""
    fig = _figure(10, 4)
    ax, ax2 = fig.subplots(1, 2)
    for dep, style in ((True, "-"), (False, "--")):
        curve = analysis.curve(dependent=dep)
        ax.plot([c[0] for c in curve], [c[1] for c in curve], ls=style,
                label="data-dependent" if dep else "data-independent")
    ax.set_xlabel("queries to the teachers")
    ax.set_ylabel(f"ε (δ = {analysis.delta:g})")
    ax.set_title(title or "PATE: privacy spent")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.2)
    srt = np.sort(np.asarray(counts), axis=1)
    margin = srt[:, -1] - srt[:, -2]
    cost = np.maximum(analysis.per_query(), 1e-12)  # log axis: a free query shows at the floor
    ax2.scatter(margin[analysis.answered], cost[analysis.answered], s=8, label="answered")
    if (~analysis.answered).any():
        ax2.scatter(margin[~analysis.answered], cost[~analysis.answered], s=8, marker="x", label="not answered")
    ax2.set_yscale("log")
    ax2.set_xlabel("vote margin (top count - runner-up)")
    ax2.set_ylabel(f"RDP cost at order {analysis.order():.3g}")
    ax2.set_title("cost of each query")
    ax2.legend(fontsize=8)
    return fig
