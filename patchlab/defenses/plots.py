"""Figures for the defense results (matplotlib `Figure` objects; no pyplot state)."""

from __future__ import annotations

from matplotlib.figure import Figure


def _bars(ax, names: list[str], values: list[float], cis: list[list[float] | None]) -> None:
    xs = range(len(names))
    bars = ax.bar(xs, [100 * v for v in values], color=["#4c72b0", "#55a868", "#8c8c8c", "#c44e52", "#dd8452"][
        :len(names)])
    for x, v, ci in zip(xs, values, cis):
        if ci:
            ax.errorbar(x, 100 * v, yerr=[[100 * (v - ci[0])], [100 * (ci[1] - v)]], color="black", capsize=4)
        ax.text(x, 100 * v + 2, f"{100 * v:.1f}%", ha="center", fontsize=8)
    ax.set_xticks(list(xs), names, fontsize=8)
    ax.set_ylim(0, 105)
    ax.grid(axis="y", alpha=0.3)
    return bars


def certify_figure(result: dict) -> Figure:
    """Certified, defended-clean and undefended accuracy with Wilson 95% intervals."""
    fig = Figure(figsize=(5.6, 3.8), dpi=120)
    ax = fig.add_subplot()
    _bars(ax, ["certified", "clean (defended)", "undefended"],
          [result["certified_accuracy"], result["clean_accuracy"], result["undefended_accuracy"]],
          [result["certified_ci95"], result["clean_ci95"], result["undefended_ci95"]])
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"PatchCleanser, {result['model']}: {result['n']} {result['part']} images, "
                 f"{result['patch_side']} px patch, {result['masks']} masks", fontsize=8)
    fig.tight_layout()
    return fig


def patch_defense_figure(result: dict) -> Figure:
    """Attack success (top) and correct-class accuracy (bottom) per defense, one bar group per patch area."""
    rows = result["rows"]
    areas = sorted({r["area"] for r in rows})
    defenses = list(dict.fromkeys(r["defense"] for r in rows))
    fig = Figure(figsize=(7.2, 5.4), dpi=120)
    width = 0.8 / len(areas)
    for p, (key, label) in enumerate((("success_rate", f"top-1 = {result.get('target_name')} (%)"),
                                      ("accuracy", "top-1 = true class (%)"))):
        ax = fig.add_subplot(2, 1, p + 1)
        for a, area in enumerate(areas):
            got = {r["defense"]: r for r in rows if r["area"] == area}
            xs = [i + (a - (len(areas) - 1) / 2) * width for i in range(len(defenses))]
            vals = [100 * got[d][key] for d in defenses]
            ci = [got[d]["ci95" if key == "success_rate" else "accuracy_ci95"] for d in defenses]
            err = [[v - 100 * c[0] for v, c in zip(vals, ci)], [100 * c[1] - v for v, c in zip(vals, ci)]]
            ax.bar(xs, vals, width, yerr=err, capsize=2, label=f"{100 * area:g}% area")
        ax.set_xticks(range(len(defenses)), defenses, fontsize=8)
        ax.set_ylabel(label, fontsize=8)
        ax.set_ylim(0, 100)
        ax.grid(axis="y", alpha=0.3)
        if p == 0:
            ax.legend(fontsize=7)
            ax.set_title(f"{result['patch']} vs defenses, {result['model']}: {result['n']} held-out images, "
                         f"preset {result['preset']}, Wilson 95%", fontsize=8)
    fig.tight_layout()
    return fig


def smoothing_figure(result: dict) -> Figure:
    """Certified accuracy against l2 radius, one line (with Wilson 95% band) per sigma."""
    fig = Figure(figsize=(5.8, 4.0), dpi=120)
    ax = fig.add_subplot()
    for c in result["curves"]:
        xs = [r["radius"] for r in c["curve"]]
        line, = ax.plot(xs, [100 * r["certified_accuracy"] for r in c["curve"]], marker=".", label=f"sigma {c['sigma']}")
        ax.fill_between(xs, [100 * r["ci95"][0] for r in c["curve"]], [100 * r["ci95"][1] for r in c["curve"]],
                        color=line.get_color(), alpha=0.15)
    ax.set_xlabel("l2 radius")
    ax.set_ylabel("certified accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"Randomized smoothing, {result['model']}: {result['n']} images, N={result['samples']}, "
                 f"alpha={result['alpha']}", fontsize=8)
    fig.tight_layout()
    return fig


def transforms_figure(result: dict) -> Figure:
    """Accuracy per input defense: clean, under transferred, naive and BPDA(+EOT) PGD."""
    fig = Figure(figsize=(7.0, 3.8), dpi=120)
    ax = fig.add_subplot()
    rows = result["rows"]
    kinds = (("clean_accuracy", "clean"), ("transfer_accuracy", "PGD on the plain model"),
             ("naive_accuracy", "PGD through the defense"), ("bpda_accuracy", "BPDA (+EOT) PGD"))
    width = 0.8 / len(kinds)
    for k, (key, label) in enumerate(kinds):
        xs = [i + (k - (len(kinds) - 1) / 2) * width for i in range(len(rows))]
        ax.bar(xs, [100 * r[key] for r in rows], width, label=label)
    ax.set_xticks(range(len(rows)), [r["defense"] for r in rows], fontsize=8)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(f"{result['model']}, {result['n']} held-out images, Linf eps {result['eps']:.4f}, "
                 f"{result['steps']} steps, EOT {result['eot']}", fontsize=8)
    fig.tight_layout()
    return fig


__all__ = ["certify_figure", "patch_defense_figure", "smoothing_figure", "transforms_figure"]
