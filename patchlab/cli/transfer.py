"""`patchlab transfer ...`: transfer matrices, ensembles, the substitute black-box attack, transfer across learning
algorithms, model theft (equation solving, CNN extraction, ImageNet) and attacks through the stolen copy."""

from __future__ import annotations

from pathlib import Path

import typer

from patchlab.cli._common import ForceOpt, JsonOpt, add_group, print_json, rich_progress

WorkOpt = typer.Option(None, "--work", help="Folder for trained models and checkpoints (reused and resumed; "
                       "default: $PATCHLAB_CACHE or ~/.cache/patchlab, then transfer/)")
MnistOpt = typer.Option(None, "--mnist", help="MNIST folder (IDX files; with train-* files the 60k set is used); "
                        "default: the shared data's mnist/")
SourceOpt = typer.Option("mnist", "--source", help="mnist (shared 10k test set or --mnist) or digits8 (built in)")
OutOpt = typer.Option(None, "--out", "-o", help="Folder for <name>.transfer.png (figure) and <name>.transfer.json")
SeedOpt = typer.Option(0, "--seed")


def _work(work: Path | None) -> Path:
    if work is not None:
        return work
    from patchlab.capture.inference import cache_dir

    return cache_dir().parent / "transfer"


def _eps(text: str | None, default: float) -> float:
    from patchlab.errors import parse_fraction

    return default if text is None else parse_fraction(text, "eps")


def _csv(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def _target(text: str | None):
    if text is None or text.lower() in ("none", "untargeted"):
        return None
    if text.lower() == "random":
        return "random"
    try:
        return int(text)
    except ValueError:
        from patchlab.data import imagenet_classes

        return imagenet_classes().lookup(text)


def _jsonable(obj):
    """Drop models and tensors (kept in the library's results for further use) from what is printed."""
    import torch

    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items() if not isinstance(v, (torch.nn.Module, torch.Tensor, tuple))
                or k.endswith("ci95")}
    if isinstance(obj, list):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, tuple):
        return [_jsonable(v) for v in obj]
    return obj


def _outputs(out: Path | None, name: str, figure: bool = True) -> dict[Path, str]:
    """The files a command writes into `out`: {path: artifact kind}."""
    if out is None:
        return {}
    files = {out / f"{name}.transfer.json": "transfer-result"}
    if figure:
        files[out / f"{name}.transfer.png"] = "transfer-figure"
    return files


def _guard(out: Path | None, name: str, command: str, force: bool, figure: bool = True) -> None:
    """Issue 21: check every output before the (long) work starts; only this command's own files, with --force."""
    from patchlab.artifacts import check_outputs

    check_outputs(_outputs(out, name, figure), f"patchlab transfer {command}", force)


def _finish(result: dict, name: str, command: str, out: Path | None, json_out: bool, figure=None) -> dict:
    """Write the tagged PNG and JSON into `out`, print JSON if asked; return the printable result."""
    from patchlab.artifacts import save_figure, write_json

    clean = _jsonable(result)
    files = {kind: path for path, kind in _outputs(out, name, figure is not None).items()}
    written_by = f"patchlab transfer {command}"
    if "transfer-figure" in files:
        clean["figure"] = str(save_figure(figure, files["transfer-figure"], "transfer-figure", written_by, dpi=120,
                                          bbox_inches="tight"))
    if "transfer-result" in files:
        write_json(files["transfer-result"], clean, "transfer-result", written_by)
    if json_out:
        print_json(clean)
    return clean


def _pct(v: float) -> str:
    return f"{100 * v:5.1f}%"


def _print_grid(rows, cols, values, width: int = 10) -> None:
    typer.echo(" " * 16 + "".join(f"{c[:width]:>{width + 1}}" for c in cols))
    for r, vals in zip(rows, values):
        typer.echo(f"{r[:16]:<16}" + "".join(f"{_pct(v):>{width + 1}}" for v in vals))


def matrix_cmd(
    family: str = typer.Option("digits", "--family", help="digits (CNN/MLP/LR on MNIST and on the 8x8 digits), "
                               "digits8 (the 8x8 ones only, built in) or imagenet (the zoo)"),
    sources: str = typer.Option(None, "--sources", help="Comma-separated model names (default: all)"),
    targets: str = typer.Option(None, "--targets", help="Comma-separated model names (default: all)"),
    attack: str = typer.Option("pgd", "--attack", "-a", help="fgsm, pgd, mi, di, ti (or any patchlab attack)"),
    eps: str = typer.Option(None, "--eps", help="L∞ ε (default 0.2 digits, 4/255 imagenet)"),
    steps: int = typer.Option(None, "--steps", min=1, help="Iterations of the iterative attacks"),
    target: str = typer.Option(None, "--target", help="Class (index or name) or 'random' for targeted"),
    images: str = typer.Option(None, "--images", help="imagenet: labelled folder (default: the shared sample) or "
                               "'builtin'; digits: mnist or digits8 (which test images)"),
    n: int = typer.Option(None, "--n", min=1, help="Images (default 1000 digits, 100 imagenet)"),
    mnist: Path = MnistOpt, work: Path = WorkOpt, seed: int = SeedOpt, out: Path = OutOpt, json_out: bool = JsonOpt,
    force: bool = ForceOpt,
) -> None:
    """Transfer matrix: accuracy (or target-match rate) of each target on each source's adversarial images."""
    _guard(out, f"matrix_{family}", "matrix", force)
    from patchlab.errors import PatchlabError
    from patchlab.transfer import experiments as E
    from patchlab.transfer.figures import matrix_figure
    from patchlab.transfer.matrix import as_grid

    opts = {"steps": steps} if steps else {}
    with rich_progress("transfer matrix", enabled=not json_out) as cb:
        if family == "imagenet":
            res = E.imagenet_matrix(sources=_csv(sources), targets=_csv(targets), images=images, n=n or 100,
                                    attack=attack, eps=_eps(eps, 4 / 255), target=_target(target), seed=seed,
                                    attack_options=opts, progress=cb)
        elif family in ("digits", "digits8"):
            res = E.digits_matrix(sources=_csv(sources), targets=_csv(targets), include_mnist=family == "digits",
                                  evaluate_on=images or ("mnist" if family == "digits" else "digits8"),
                                  attack=attack, eps=_eps(eps, 0.2),
                                  target=_target(target), n=n or 1000, mnist=mnist, seed=seed, work=_work(work),
                                  attack_options=opts, progress=cb)
        else:
            raise PatchlabError(f"unknown family '{family}' (choose digits, digits8 or imagenet)")
    clean = _finish(res, f"matrix_{family}", "matrix", out, json_out, matrix_figure(res))
    if not json_out:
        rows, cols, values = as_grid(res)
        typer.echo(f"{res['attack']} ε={res['eps']:.4g} {res['mode']} on {res['n']} images "
                   f"({res['metric']} per target; rows craft, columns score)  [{res['seconds']:.0f}s]")
        _print_grid(rows, cols, values)
        typer.echo("clean accuracy  " + "".join(f"{_pct(res['clean'][c]['accuracy']):>11}" for c in cols))
        if "figure" in clean:
            typer.echo(clean["figure"])


def ensemble_cmd(
    family: str = typer.Option("digits", "--family", help="digits (6 models), digits8 (3, built in) or imagenet"),
    attack: str = typer.Option("mi", "--attack", "-a"),
    eps: str = typer.Option(None, "--eps", help="L∞ ε (default 0.2 digits, 16/255 imagenet)"),
    steps: int = typer.Option(None, "--steps", min=1),
    target: str = typer.Option(None, "--target", help="'random' (Liu et al.) or a class for targeted"),
    images: str = typer.Option(None, "--images", help="imagenet: labelled folder or 'builtin'"),
    n: int = typer.Option(None, "--n", min=1),
    fusion: str = typer.Option("probs", "--fusion", help="probs (Liu et al.: average softmax) or logits (Dong et "
                               "al. 2018: average logits)"),
    mnist: Path = MnistOpt, work: Path = WorkOpt, seed: int = SeedOpt, out: Path = OutOpt, json_out: bool = JsonOpt,
    force: bool = ForceOpt,
) -> None:
    """Liu et al. 2017 Table 4: craft on all models but one, score on every model (with RMSD)."""
    _guard(out, f"ensemble_{family}", "ensemble", force)
    from patchlab.transfer import experiments as E
    from patchlab.transfer.ensemble import held_out_summary
    from patchlab.transfer.figures import ensemble_figure

    opts = {"steps": steps} if steps else {}
    with rich_progress("ensemble", enabled=not json_out) as cb:
        res = E.ensemble(family="digits" if family == "digits8" else family, include_mnist=family != "digits8",
                         attack=attack, eps=_eps(eps, 16 / 255 if family == "imagenet" else 0.2),
                         target=_target(target), n=n, images=images, mnist=mnist, seed=seed, work=_work(work),
                         fusion=fusion, attack_options=opts, progress=cb)
    res["held_out"] = held_out_summary(res)
    clean = _finish(res, f"ensemble_{family}", "ensemble", out, json_out, ensemble_figure(res))
    if not json_out:
        key = res["metric"]
        typer.echo(f"{res['attack']} ε={res['eps']:.4g} {res['mode']}, {res['fusion']} fusion, n={res['n']} "
                   f"({key})  [{res['seconds']:.0f}s]")
        _print_grid([f"{r['row']} {r['rmsd']:.1f}" for r in res["rows"]], res["models"],
                    [[r["cells"][c][key] for c in res["models"]] for r in res["rows"]])
        for h in res["held_out"]:
            extra = (f"  best single source {h['best_single_source']}: {_pct(h['best_single'])}"
                     if "best_single" in h else "")
            typer.echo(f"held out {h['model']}: ensemble {_pct(h['ensemble'])}{extra}")
        if "figure" in clean:
            typer.echo(clean["figure"])


def substitute_cmd(
    source: str = SourceOpt,
    seeds: int = typer.Option(None, "--seeds", min=1, help="Seed set size (default 100 mnist, 50 digits8)"),
    rounds: int = typer.Option(None, "--rounds", min=0, help="Augmentation rounds ρ (default 6 mnist, 3 digits8)"),
    lam: float = typer.Option(0.1, "--lam", help="Jacobian step λ"),
    tau: int = typer.Option(None, "--tau", min=1, help="Periodic step size: flip λ's sign every τ rounds"),
    reservoir_after: int = typer.Option(None, "--reservoir-after", min=0,
                                        help="σ: from this round on add only --reservoir-size points per round"),
    reservoir_size: int = typer.Option(400, "--reservoir-size", min=1, help="κ"),
    arch: str = typer.Option("cnn", "--arch", help="Substitute: cnn, mlp or logreg"),
    epochs: int = typer.Option(10, "--epochs", min=1, help="Training epochs per round"),
    budget: int = typer.Option(None, "--budget", min=1,
                               help="Oracle query budget (stops at the last round that fits)"),
    attack: str = typer.Option("fgsm", "--attack", "-a", help="Crafted on the substitute: fgsm, pgd, mi, ..."),
    eps: str = typer.Option("0.3", "--eps"),
    steps: int = typer.Option(None, "--steps", min=1),
    mnist: Path = MnistOpt, work: Path = WorkOpt, seed: int = SeedOpt, out: Path = OutOpt, json_out: bool = JsonOpt,
    force: bool = ForceOpt,
) -> None:
    """Papernot et al. 2017: a labels-only substitute grown by Jacobian augmentation, then transfer."""
    _guard(out, f"substitute_{source}", "substitute", force)
    from patchlab.transfer import experiments as E
    from patchlab.transfer.figures import substitute_figure
    from patchlab.transfer.substitute import SubstituteConfig

    cfg = SubstituteConfig(seed_size=seeds or (100 if source == "mnist" else 50),
                           rounds=rounds if rounds is not None else (6 if source == "mnist" else 3), lam=lam,
                           tau=tau, reservoir_after=reservoir_after, reservoir_size=reservoir_size, arch=arch,
                           epochs=epochs, seed=seed)
    wd = _work(work)
    from patchlab.transfer.common import fingerprint

    settings = fingerprint(cfg.to_dict(), attack, _eps(eps, 0.3), steps, budget, str(mnist))
    ckpt = wd / "checkpoints" / f"substitute-{source}-{settings}.pt"
    with rich_progress("substitute", enabled=not json_out) as cb:
        res = E.substitute(source=source, config=cfg, eps=_eps(eps, 0.3), attack=attack, budget=budget, mnist=mnist,
                           work=wd, checkpoint=ckpt, attack_options={"steps": steps} if steps else None,
                           progress=cb)
    clean = _finish(res, f"substitute_{source}", "substitute", out, json_out, substitute_figure(res))
    if not json_out:
        typer.echo(f"victim {res['victim']} (clean accuracy {_pct(res['victim_clean_accuracy'])}), {res['attack']} "
                   f"ε={res['eps']:g} on {res['n']} test images  [{res['seconds']:.0f}s]")
        typer.echo("round  queries  substitute acc  misclassified (95% CI)")
        for r in res["curve"]:
            lo, hi = r["misclassification_rate_ci95"]
            typer.echo(f"{r['round']:>5}  {r['queries']:>7}  {_pct(r['substitute_accuracy']):>14}  "
                       f"{_pct(r['misclassification_rate'])} ({100 * lo:.1f}-{100 * hi:.1f})")
        typer.echo(f"same-norm random noise: {_pct(res['noise']['misclassification_rate'])}; margin "
                   f"{100 * res['margin_over_noise']:.1f} points; oracle queries {res['queries']} (training) + "
                   f"{res['attack_queries']} (attack)")
        if "figure" in clean:
            typer.echo(clean["figure"])


def algorithms_cmd(
    source: str = SourceOpt, eps: str = typer.Option("0.3", "--eps"),
    attack: str = typer.Option("fgsm", "--attack", "-a"),
    mnist: Path = MnistOpt, work: Path = WorkOpt, seed: int = SeedOpt, out: Path = OutOpt, json_out: bool = JsonOpt,
    force: bool = ForceOpt,
) -> None:
    """Papernot et al. 2016: the DNN / LR / SVM / DT / kNN cross-technique matrix (+ majority-vote ensemble)."""
    _guard(out, f"algorithms_{source}", "algorithms", force)
    from patchlab.transfer import experiments as E
    from patchlab.transfer.figures import matrix_figure
    from patchlab.transfer.matrix import as_grid

    with rich_progress("algorithms", enabled=not json_out) as cb:
        res = E.algorithms(source=source, eps=_eps(eps, 0.3), attack=attack, mnist=mnist, seed=seed,
                           work=_work(work), progress=cb)
    clean = _finish(res, f"algorithms_{source}", "algorithms", out, json_out, matrix_figure(res))
    if not json_out:
        typer.echo(f"misclassification of each target (columns) on {res['attack']} ε={res['eps']:g} examples "
                   f"crafted on each source (rows), n={res['n']}  [{res['seconds']:.0f}s]")
        _print_grid(*as_grid(res), width=8)
        for t, s in res["substitutes"].items():
            typer.echo(f"{t}: crafted through a substitute ({s['queries']} label queries, agreement "
                       f"{_pct(s['agreement'])})")
        if "figure" in clean:
            typer.echo(clean["figure"])


def steal_lr_cmd(
    source: str = SourceOpt, queries: int = typer.Option(None, "--queries", min=1, help="Default d + 1"),
    mnist: Path = MnistOpt, seed: int = SeedOpt, out: Path = OutOpt, json_out: bool = JsonOpt,
    force: bool = ForceOpt,
) -> None:
    """Tramèr et al. 2016: copy a softmax regression exactly from d+1 confidence queries."""
    _guard(out, f"steal_lr_{source}", "steal-lr", force, figure=False)
    from patchlab.transfer import experiments as E

    res = E.steal_logreg(source=source, queries=queries, mnist=mnist, seed=seed)
    _finish(res, f"steal_lr_{source}", "steal-lr", out, json_out)
    if not json_out:
        typer.echo(f"{res['victim']}, d={res['dim']}, {res['num_classes']} classes: {res['queries']} queries "
                   f"for {res['identifiable_unknowns']} identifiable unknowns")
        typer.echo(f"largest parameter error {res['max_abs_error']:.2e} (relative {res['relative_error']:.2e}); "
                   f"agreement on {res['n']} held-out images {_pct(res['fidelity'])}  [{res['seconds']:.1f}s]")


def steal_cmd(
    source: str = SourceOpt,
    strategies: str = typer.Option("random,jacobian,uncertainty,knockoff", "--strategies"),
    outputs: str = typer.Option("label,probs", "--outputs", help="What the victim reveals: label, probs, topk"),
    budgets: str = typer.Option(None, "--budgets", help="Comma-separated query counts (default 100,...,3200)"),
    mnist: Path = MnistOpt, work: Path = WorkOpt, seed: int = SeedOpt, out: Path = OutOpt, json_out: bool = JsonOpt,
    force: bool = ForceOpt,
) -> None:
    """Extract the victim CNN: fidelity and accuracy against queries for each query strategy."""
    _guard(out, f"steal_{source}", "steal", force)
    from patchlab.errors import PatchlabError
    from patchlab.transfer import experiments as E
    from patchlab.transfer.figures import extraction_figure

    try:
        budget_list = [int(b) for b in _csv(budgets)] if budgets else None
    except ValueError:
        raise PatchlabError(f"--budgets must be integers, got {budgets!r}") from None
    with rich_progress("steal", enabled=not json_out) as cb:
        res = E.steal(source=source, strategies=_csv(strategies), outputs=_csv(outputs), budgets=budget_list,
                      mnist=mnist, seed=seed, work=_work(work), progress=cb)
    clean = _finish(res, f"steal_{source}", "steal", out, json_out, extraction_figure(res["runs"]))
    if not json_out:
        typer.echo(f"victim {res['victim']}; fidelity / accuracy on {res['n']} held-out images  "
                   f"[{res['seconds']:.0f}s]")
        qs = [r["queries"] for r in res["runs"][0]["curve"]]
        typer.echo(f"{'strategy (output)':<24}" + "".join(f"{q:>13}" for q in qs))
        for run in res["runs"]:
            typer.echo(f"{run['strategy'] + ' (' + run['output'] + ')':<24}" + "".join(
                f"{100 * r['fidelity']:6.1f}/{100 * r['accuracy']:5.1f}" for r in run["curve"]))
        if "figure" in clean:
            typer.echo(clean["figure"])


def theft_cmd(
    source: str = SourceOpt,
    strategy: str = typer.Option("uncertainty", "--strategy"),
    output: str = typer.Option("probs", "--output"),
    budget: int = typer.Option(3200, "--budget", min=1),
    attack: str = typer.Option("pgd", "--attack", "-a"),
    eps: str = typer.Option("0.3", "--eps"),
    steps: int = typer.Option(None, "--steps", min=1),
    n: int = typer.Option(None, "--n", min=1),
    mnist: Path = MnistOpt, work: Path = WorkOpt, seed: int = SeedOpt, out: Path = OutOpt, json_out: bool = JsonOpt,
    force: bool = ForceOpt,
) -> None:
    """Theft++: steal the victim, attack it through the copy; beside white-box and an independent model."""
    _guard(out, f"theft_{source}", "theft", force)
    from patchlab.transfer import experiments as E
    from patchlab.transfer.figures import theft_figure

    with rich_progress("theft++", enabled=not json_out) as cb:
        res = E.theft_plus_plus(source=source, strategy=strategy, output=output, budget=budget, attack=attack,
                                eps=_eps(eps, 0.3), n=n, mnist=mnist, seed=seed, work=_work(work),
                                attack_options={"steps": steps} if steps else None, progress=cb)
    clean = _finish(res, f"theft_{source}", "theft", out, json_out, theft_figure(res))
    if not json_out:
        ex = res["extraction"]
        typer.echo(f"copy: {ex['strategy']} ({ex['output']}), {ex['queries']} queries, fidelity "
                   f"{_pct(ex['fidelity'])}; independent model agreement {_pct(res['independent_agreement'])}")
        _print_theft(res)
        if "figure" in clean:
            typer.echo(clean["figure"])


def steal_imagenet_cmd(
    images: Path = typer.Option(None, "--images", help="Labelled folder (default: the shared ImageNet sample)"),
    heldout: int = typer.Option(200, "--heldout", min=1), views: int = typer.Option(10, "--views", min=1),
    k: int = typer.Option(5, "--k", min=1, help="The victim reveals its top-k"),
    epochs: int = typer.Option(40, "--epochs", min=1), limit: int = typer.Option(None, "--limit", min=2),
    attack: str = typer.Option("mifgsm", "--attack", "-a"), eps: str = typer.Option("8/255", "--eps"),
    steps: int = typer.Option(10, "--steps", min=1),
    work: Path = WorkOpt, seed: int = SeedOpt, out: Path = OutOpt, json_out: bool = JsonOpt,
    force: bool = ForceOpt,
) -> None:
    """Steal efficientnet_lite0 into a smaller student from top-k answers; attack it through the student."""
    _guard(out, "steal_imagenet", "steal-imagenet", force)
    from patchlab.transfer import experiments as E
    from patchlab.transfer.figures import theft_figure
    from patchlab.transfer.imagenet import ImagenetTheftConfig

    cfg = ImagenetTheftConfig(heldout=heldout, views=views, k=k, epochs=epochs, limit=limit, seed=seed)
    with rich_progress("steal lite0", enabled=not json_out) as cb:
        res = E.steal_imagenet(images=images, config=cfg, attack=attack, eps=_eps(eps, 8 / 255), steps=steps,
                               work=_work(work), progress=cb)
    clean = _finish(res, "steal_imagenet", "steal-imagenet", out, json_out, theft_figure(res["theft++"]))
    if not json_out:
        typer.echo(f"{res['student']} ({res['student_parameters'] / 1e6:.2f}M parameters, victim "
                   f"{res['victim_parameters'] / 1e6:.2f}M) from {res['queries']} top-{cfg.k} answers on "
                   f"{res['query_images']} images; {res['n']} held out  [{res['seconds']:.0f}s]")
        for r in res["rows"]:
            typer.echo(f"  {r['model']:<48} fidelity {_pct(r['fidelity'])}  in victim's top-5 "
                       f"{_pct(r['fidelity_top5'])}  accuracy {_pct(r['accuracy'])}")
        _print_theft(res["theft++"])
        if "figure" in clean:
            typer.echo(clean["figure"])


def register(app: typer.Typer) -> None:
    add_group(app, "transfer", "Transfer, black-box attacks and model theft.",
              matrix=matrix_cmd, ensemble=ensemble_cmd, substitute=substitute_cmd, algorithms=algorithms_cmd,
              **{"steal-lr": steal_lr_cmd}, steal=steal_cmd, theft=theft_cmd,
              **{"steal-imagenet": steal_imagenet_cmd})


def _print_theft(res: dict) -> None:
    typer.echo(f"{res['attack']} ε={res['eps']:.4g} against {res['victim']} (clean accuracy "
               f"{_pct(res['victim_clean_accuracy'])}), n={res['n']}:")
    for r in res["rows"]:
        lo, hi = r["success_rate_ci95"]
        typer.echo(f"  {r['source']:<28} success {_pct(r['success_rate'])} ({100 * lo:.1f}-{100 * hi:.1f})  "
                   f"misclassified {_pct(r['misclassification_rate'])}")

