"""Markdown tables of the transfer and theft results (docs/results/transfer_*.md are written with these)."""

from __future__ import annotations


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def _ci(row: dict, key: str) -> str:
    lo, hi = row[f"{key}_ci95"]
    return f"{_pct(row[key])} ({_pct(lo)}–{_pct(hi)})"


def eps_text(eps: float) -> str:
    k = eps * 255
    return f"{k:.3g}/255" if eps < 0.2 and abs(k - round(k)) < 1e-6 else f"{eps:g}"


def matrix_md(res: dict) -> str:
    from patchlab.transfer.matrix import as_grid

    rows, cols, values = as_grid(res)
    head = f"| source \\ target | " + " | ".join(cols) + " |\n|---|" + "---|" * len(cols) + "\n"
    body = "".join(f"| {r} | " + " | ".join(_pct(v) for v in vals) + " |\n" for r, vals in zip(rows, values))
    clean = ""
    if "clean" in res:
        clean = "| clean accuracy | " + " | ".join(_pct(res["clean"][c]["accuracy"]) for c in cols) + " |\n"
    return (f"{res['attack']} ε={eps_text(res['eps'])}, {res['mode']}, n={res['n']}; cells: {res['metric']} (%) "
            f"of the column model on the row model's adversarial images\n\n" + head + body + clean)


def ensemble_md(table: dict) -> str:
    key = table["metric"]
    cols = table["models"]
    head = "| crafted on | RMSD | " + " | ".join(cols) + " |\n|---|---|" + "---|" * len(cols) + "\n"
    body = "".join(f"| {r['row']} | {r['rmsd']:.1f} | " + " | ".join(_pct(r["cells"][c][key]) for c in cols) + " |\n"
                   for r in table["rows"])
    held = ""
    if table.get("held_out"):
        held = ("\n| held-out model | ensemble of the others | best single other model |\n|---|---|---|\n" +
                "".join(f"| {h['model']} | {_pct(h['ensemble'])} | "
                        f"{_pct(h.get('best_single'))} ({h.get('best_single_source', '–')}) |\n"
                        for h in table["held_out"]))
    return (f"{table['attack']} ε={eps_text(table['eps'])}, {table['mode']}, n={table['n']}, "
            f"{table.get('fusion', 'probs')} fusion; cells: {key} (%); "
            "'-m' = the ensemble of every model but m\n\n" + head + body + held)


def substitute_md(res: dict) -> str:
    labels = list(res.get("compare") or {})
    main = f"{res['attack']}: oracle misclassification % (95% CI)"
    out = (f"victim {res['victim']} (clean accuracy {_pct(res['victim_clean_accuracy'])}%), ε={res['eps']:g}, "
           f"n={res['n']}; λ={res['settings']['lam']:g}, {res['settings']['seed_size']} seeds; same-norm random sign "
           f"noise: {_ci(res['noise'], 'misclassification_rate')}%\n\n"
           f"| round ρ | oracle queries | substitute accuracy | agreement with oracle | {main} | "
           + "".join(f"{lab}: misclassification % (95% CI) | " for lab in labels)
           + "\n|---|---|---|---|---|" + "---|" * len(labels) + "\n")
    for r in res["curve"]:
        out += (f"| {r['round']} | {r['queries']} | {_pct(r['substitute_accuracy'])} | {_pct(r['agreement'])} | "
                f"{_ci(r, 'misclassification_rate')} | "
                + "".join(f"{_ci(r['compare'][lab], 'misclassification_rate')} | " for lab in labels) + "\n")
    return out


def extraction_md(results: list[dict]) -> str:
    qs = [r["queries"] for r in results[0]["curve"]]
    out = ("fidelity / accuracy (%) on held-out images after each budget\n\n| strategy (output) | " +
           " | ".join(str(q) for q in qs) + " |\n|---|" + "---|" * len(qs) + "\n")
    for res in results:
        out += f"| {res['strategy']} ({res['output']}) | " + " | ".join(
            f"{_pct(r['fidelity'])} / {_pct(r['accuracy'])}" for r in res["curve"]) + " |\n"
    return out


def theft_md(res: dict) -> str:
    out = (f"{res['attack']} ε={eps_text(res['eps'])} against {res['victim']} (clean accuracy "
           f"{_pct(res['victim_clean_accuracy'])}%), n={res['n']}\n\n"
           "| adversarial examples crafted on | success % (95% CI) | misclassification % | RMSD |\n|---|---|---|---|\n")
    for r in res["rows"]:
        out += f"| {r['source']} | {_ci(r, 'success_rate')} | {_pct(r['misclassification_rate'])} | {r['rmsd']:.1f} |\n"
    return out


def imagenet_theft_md(res: dict) -> str:
    out = (f"{res['victim']} ({res['victim_parameters'] / 1e6:.2f}M parameters) stolen into {res['student']} "
           f"({res['student_parameters'] / 1e6:.2f}M, {res['trainable_parameters'] / 1e6:.2f}M trained) from "
           f"{res['queries']} top-{res['settings']['k']} answers on {res['query_images']} images × "
           f"{res['settings']['views']} views; {res['n']} held-out images (victim accuracy "
           f"{_pct(res['victim_accuracy'])}%)\n\n"
           "| model | fidelity (top-1 agreement) % (95% CI) | top-1 in victim's top-5 % | accuracy % |\n"
           "|---|---|---|---|\n")
    for r in res["rows"]:
        out += f"| {r['model']} | {_ci(r, 'fidelity')} | {_pct(r['fidelity_top5'])} | {_pct(r['accuracy'])} |\n"
    return out + "\n" + theft_md(res["theft++"])


def lr_md(res: dict) -> str:
    return (f"| victim | d | classes | queries | identifiable unknowns | largest parameter error | relative | "
            f"agreement on {res['n']} held-out |\n|---|---|---|---|---|---|---|---|\n"
            f"| {res['victim']} | {res['dim']} | {res['num_classes']} | {res['queries']} | "
            f"{res['identifiable_unknowns']} | {res['max_abs_error']:.1e} | {res['relative_error']:.1e} | "
            f"{_pct(res['fidelity'])}% |\n")
