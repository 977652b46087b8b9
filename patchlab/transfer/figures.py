"""Matplotlib figures of the transfer and theft results (Figure objects, no pyplot state)."""

from __future__ import annotations

from matplotlib.figure import Figure


def heatmap(rows: list[str], cols: list[str], values: list[list[float]], title: str, label: str,
            row_title: str = "source (crafted on)", col_title: str = "target (scored on)", cmap: str = "viridis",
            clean: dict | None = None) -> Figure:
    """A table of rates in [0, 1] as a coloured grid with the percentages written in."""
    fig = Figure(figsize=(1.2 + 1.05 * len(cols), 1.3 + 0.62 * len(rows)))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow([[100 * v for v in r] for r in values], vmin=0, vmax=100, cmap=cmap, aspect="auto")
    ax.set_xticks(range(len(cols)), [c if not clean else f"{c}\n(clean {100 * clean[c]:.0f}%)" for c in cols],
                  rotation=30 if max(map(len, cols)) > 8 else 0, ha="right" if max(map(len, cols)) > 8 else "center",
                  fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    for i, r in enumerate(values):
        for j, v in enumerate(r):
            ax.text(j, i, f"{100 * v:.1f}", ha="center", va="center", fontsize=8,
                    color="white" if v < 0.55 else "black")
    ax.set_xlabel(col_title)
    ax.set_ylabel(row_title)
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, label=f"{label} (%)", fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


def matrix_figure(result: dict) -> Figure:
    from patchlab.transfer.matrix import as_grid

    rows, cols, values = as_grid(result)
    metric = {"accuracy": "target accuracy", "target_match_rate": "target-match rate",
              "misclassification_rate": "misclassification"}[result["metric"]]
    eps = result["eps"]
    eps_text = f"{eps * 255:.3g}/255" if eps < 0.2 else f"{eps:g}"
    title = f"{result['attack']} ε={eps_text} ({result['mode']}), n={result['n']}"
    clean = {k: v["accuracy"] for k, v in result.get("clean", {}).items()} if result["metric"] == "accuracy" else None
    return heatmap(rows, cols, values, title, metric, cmap="viridis" if result["metric"] == "accuracy" else "magma",
                   clean=clean)


def ensemble_figure(table: dict) -> Figure:
    key = table["metric"]
    rows = [r["row"] for r in table["rows"]]
    cols = table["models"]
    values = [[r["cells"][c][key] for c in cols] for r in table["rows"]]
    label = "accuracy" if key == "accuracy" else "target-match rate"
    return heatmap([f"{r} (RMSD {t['rmsd']:.1f})" for r, t in zip(rows, table["rows"])], cols, values,
                   f"ensemble {table['attack']} ε={table['eps'] * 255:.3g}/255 ({table['mode']}), n={table['n']}",
                   label, row_title="crafted on ('-m' = ensemble of all but m)",
                   cmap="viridis" if key == "accuracy" else "magma")


def substitute_figure(result: dict, anchor: tuple[int, float] | None = (6400, 0.8424)) -> Figure:
    """Oracle misclassification vs. queries, with the same-norm noise floor and the paper's MetaMind point."""
    fig = Figure(figsize=(6.2, 3.8))
    ax = fig.add_subplot(1, 1, 1)
    curve = result["curve"]
    q = [r["queries"] for r in curve]
    for key, label, style in (("misclassification_rate", f"oracle misclassified ({result['attack']} on the substitute)",
                               "o-"),
                              ("agreement", "substitute agrees with oracle (clean)", "s--")):
        ax.plot(q, [100 * r[key] for r in curve], style, label=label)
    for label in result.get("compare") or {}:
        ax.plot(q, [100 * r["compare"][label]["misclassification_rate"] for r in curve], "^-",
                label=f"oracle misclassified ({label} on the substitute)")
    lo = [100 * r["misclassification_rate_ci95"][0] for r in curve]
    hi = [100 * r["misclassification_rate_ci95"][1] for r in curve]
    ax.fill_between(q, lo, hi, alpha=0.2)
    ax.axhline(100 * result["noise"]["misclassification_rate"], color="grey", ls=":",
               label=f"same-norm random noise ({100 * result['noise']['misclassification_rate']:.1f}%)")
    if anchor:
        ax.plot([anchor[0]], [100 * anchor[1]], "r*", ms=12, label="Papernot et al. 2017, MetaMind (84.24%)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(q, [str(v) for v in q])
    ax.set_xlabel("oracle queries (labels) spent on the substitute")
    ax.set_ylabel("%")
    ax.set_ylim(0, 100)
    ax.set_title(f"substitute attack, {result['attack']} ε={result['eps']:g}, n={result['n']}", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def extraction_figure(results: list[dict]) -> Figure:
    """Fidelity (left) and accuracy (right) against queries, one line per strategy/output."""
    fig = Figure(figsize=(10, 3.8))
    axes = [fig.add_subplot(1, 2, i + 1) for i in range(2)]
    for res in results:
        q = [r["queries"] for r in res["curve"]]
        label = f"{res['strategy']} ({res['output']})"
        for ax, key in zip(axes, ("fidelity", "accuracy")):
            ax.plot(q, [100 * r[key] for r in res["curve"]], "o-", ms=3, label=label)
    for ax, key in zip(axes, ("fidelity (agreement with the victim)", "accuracy (true labels)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("queries")
        ax.set_ylabel(f"{key}, %")
        ax.grid(alpha=0.3)
    if results:
        victim = 100 * results[0]["victim_accuracy"]
        axes[1].axhline(victim, color="grey", ls=":", label=f"victim ({victim:.1f}%)")
    axes[1].legend(fontsize=7, loc="lower right")
    if results:
        fig.suptitle(f"extracting {results[0]['victim']}, n={results[0]['n']} held-out images", fontsize=10)
    fig.tight_layout()
    return fig


def bars_figure(rows: list[dict], key: str, title: str, label_key: str = "source") -> Figure:
    """Horizontal bars of one rate per row, with Wilson intervals."""
    fig = Figure(figsize=(6.4, 0.6 + 0.5 * len(rows)))
    ax = fig.add_subplot(1, 1, 1)
    vals = [100 * r[key] for r in rows]
    err = [[100 * (r[key] - r[f"{key}_ci95"][0]) for r in rows], [100 * (r[f"{key}_ci95"][1] - r[key]) for r in rows]]
    ax.barh(range(len(rows)), vals, xerr=err, color="tab:red", alpha=0.75, capsize=3)
    ax.set_yticks(range(len(rows)), [r[label_key] for r in rows], fontsize=8)
    ax.invert_yaxis()
    for i, v in enumerate(vals):
        ax.text(min(v + 2, 92), i, f"{v:.1f}%", va="center", fontsize=8)
    ax.set_xlim(0, 100)
    ax.set_xlabel(f"{key.replace('_', ' ')} (%)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def theft_figure(result: dict) -> Figure:
    eps = result["eps"]
    eps_text = f"{eps * 255:.3g}/255" if eps < 0.2 else f"{eps:g}"
    return bars_figure(result["rows"], "success_rate",
                       f"theft++: {result['attack']} ε={eps_text} against {result['victim']}, n={result['n']}")
