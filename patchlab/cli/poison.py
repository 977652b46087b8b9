"""`patchlab poison influence|koh-liang|feature-collision`: training-set poisoning on the dog-vs-fish transfer task."""

from __future__ import annotations

from pathlib import Path

import typer

from patchlab.cli._common import DeviceOpt, ForceOpt, JsonOpt, ModelOpt, add_group, print_json, rich_progress

DataOpt = typer.Option(None, "--data", help="ImageNet-style labelled folder (default: the shared imagenet-sample)")
ClassesOpt = typer.Option("dog,fish", "--classes", help="Two superclasses: dog, fish, bird, cat, snake, primate, "
                          "insect")
TrainOpt = typer.Option(400, "--train-per-class", min=1, help="Training views per class (photos + augmentations)")
TestOpt = typer.Option(100, "--test-per-class", min=1, help="Test views per class")
SplitOpt = typer.Option(0, "--split-seed", help="Seed of the photo-level train/test split")
SourcesOpt = typer.Option(None, "--max-sources", min=2, help="Use at most N photos per class (quick runs)")
CacheOpt = typer.Option(None, "--cache-dir", help="Feature cache (default $PATCHLAB_CACHE/poison-features)")
L2Opt = typer.Option(1e-3, "--l2", help="Weight decay of the retrained head")
OutOpt = typer.Option(None, "--out", help="Folder: run.json, results JSONL (a rerun with the same settings "
                      "resumes), poison PNGs, figures")
FiguresOpt = typer.Option(3, "--figures", min=0, help="With --out: figures for the first N results")
SeedOpt = typer.Option(0, "--seed")
INFLUENCE, KOH_LIANG, COLLISION = ("patchlab poison influence", "patchlab poison koh-liang",
                                   "patchlab poison feature-collision")


def _defense_line(row: dict) -> str:
    d = row["defense"]
    return "        poisons in the top 1% by " + ", ".join(
        f"{name} {d[name]['top1pct_rate']:.0%}" for name in ("loss", "influence", "knn", "spectral"))


def _build(data, classes, train_pc, test_pc, split_seed, max_sources, cache_dir, model, device, json_out):
    from patchlab.data import shared_data_dir
    from patchlab.errors import PatchlabError
    from patchlab.models import load_model
    from patchlab.poisoning.task import TaskConfig, build_task

    names = tuple(c.strip() for c in classes.split(",") if c.strip())
    if len(names) != 2:
        raise PatchlabError(f"--classes takes two superclasses such as dog,fish; got {classes!r}")
    if data is None:
        root = shared_data_dir()
        if root is None:
            raise PatchlabError("no --data folder given and the shared imagenet-sample is absent")
        data = root / "imagenet-sample"
    net = load_model(model, device)
    cfg = TaskConfig(names, train_pc, test_pc, split_seed=split_seed, max_sources=max_sources)
    with rich_progress("features", enabled=not json_out) as cb:
        task = build_task(data, net, cfg, cache_dir, progress=cb)
    return net, task


def _prepare(out, writer, config, varied: str, force, data, classes, train_pc, test_pc, split_seed, max_sources,
             cache_dir, model, device, json_out):
    """Check the --out folder before any work (its settings: all that shapes a poison; `varied`, like the targets,
    only adds files), then build the task."""
    if out is not None:
        from dataclasses import asdict

        from patchlab.poisoning.runs import prepare_run_folder

        settings = {k: v for k, v in asdict(config).items() if k != varied}
        settings.update(classes=classes, train_per_class=train_pc, test_per_class=test_pc, split_seed=split_seed,
                        max_sources=max_sources, model=model)
        prepare_run_folder(out, writer, settings, force)
    return _build(data, classes, train_pc, test_pc, split_seed, max_sources, cache_dir, model, device, json_out)


def _ints(text: str, flag: str) -> list[int]:
    from patchlab.errors import PatchlabError

    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise PatchlabError(f"{flag} takes whole numbers separated by commas, got {text!r}") from None
    if not values or min(values) < 1:
        raise PatchlabError(f"{flag} takes numbers >= 1, got {text!r}")
    return values


def _count(text: str, flag: str) -> int | None:
    from patchlab.errors import PatchlabError

    if text.strip().lower() == "all":
        return None
    if not text.strip().isdigit():
        raise PatchlabError(f"{flag} takes a number or 'all', got {text!r}")
    return int(text)


def influence_cmd(
    problem: str = typer.Option("dogfish", "--problem", help="dogfish (Lite0 features) or digits (MNIST CNN's "
                                "last layer)"),
    test_index: int = typer.Option(0, "--test-index", min=0, help="Which test point to explain"),
    solver: str = typer.Option("auto", "--solver", help="auto, exact, cg or lissa"),
    compare: str = typer.Option("", "--compare", help="Other solvers to check against leave-one-out too, "
                                "e.g. cg,lissa"),
    loo: str = typer.Option("0", "--loo", help="Leave-one-out retrainings to validate with (a number, or all)"),
    top: int = typer.Option(5, "--top", min=1, help="Helpful and harmful training points to list"),
    l2: float = L2Opt,
    lissa_depth: int = typer.Option(1000, "--lissa-depth", min=1),
    lissa_repeats: int = typer.Option(4, "--lissa-repeats", min=1),
    digits_train: int = typer.Option(5000, "--digits-train", min=10, help="digits: training images of the head"),
    digits_body: int = typer.Option(2000, "--digits-body", min=0, help="digits: other images the CNN body learns "
                                    "from (0: the head's own images)"),
    digits_epochs: int = typer.Option(5, "--digits-epochs", min=1),
    figure: Path = typer.Option(None, "--figure", help="PNG: the test image with its helpful/harmful images "
                                "(e.g. dog.influence.png)"),
    loo_figure: Path = typer.Option(None, "--loo-figure", help="PNG: predicted vs actual leave-one-out change "
                                    "(e.g. dog.loo.png)"),
    force: bool = ForceOpt, seed: int = SeedOpt,
    data: Path = DataOpt, classes: str = ClassesOpt, train_per_class: int = TrainOpt, test_per_class: int = TestOpt,
    split_seed: int = SplitOpt, max_sources: int = SourcesOpt, cache_dir: Path = CacheOpt,
    model: str = ModelOpt, device: str = DeviceOpt, json_out: bool = JsonOpt,
) -> None:
    """Most helpful and harmful training points for one test prediction; influence vs leave-one-out."""
    from patchlab.data import shared_data_dir
    from patchlab.errors import PatchlabError
    from patchlab.poisoning import figures
    from patchlab.poisoning.influence import SOLVERS, LissaConfig
    from patchlab.poisoning.problems import PROBLEMS, digits_setup, dogfish_setup, explain
    from patchlab.poisoning.runs import save_fig

    from patchlab.artifacts import check_outputs

    problem = PROBLEMS.resolve(problem)
    outputs = {p: k for p, k in ((figure, "influence-figure"), (loo_figure, "influence-loo-figure")) if p}
    check_outputs(outputs, INFLUENCE, force)  # before any work
    others = tuple(SOLVERS.resolve(s.strip()) for s in compare.split(",") if s.strip())
    solver = SOLVERS.resolve(solver)
    n_loo = _count(loo, "--loo")
    if problem == "dogfish":
        _, task = _build(data, classes, train_per_class, test_per_class, split_seed, max_sources, cache_dir,
                         model, device, json_out)
        setup = dogfish_setup(task)
    else:
        root = data or (shared_data_dir() / "mnist" if shared_data_dir() else None)
        if root is None:
            raise PatchlabError("no --data folder with MNIST given and the shared mnist/ is absent")
        with rich_progress("digits CNN", enabled=not json_out) as cb:
            setup = digits_setup(root, n_train=digits_train, n_body=digits_body, epochs=digits_epochs, seed=seed,
                                 cache_dir=cache_dir, progress=cb)
    with rich_progress("influence", enabled=not json_out) as cb:
        ex = explain(setup, test_index, l2=l2, solver=solver, top=top, loo=n_loo, compare=others,
                     lissa=LissaConfig(depth=lissa_depth, repeats=lissa_repeats, seed=seed), seed=seed,
                     progress=cb)
    result = {**ex.to_dict(), "seed": seed}
    if figure is not None:
        save_fig(figures.influence_figure(ex, top), figure, "influence-figure", INFLUENCE)
        result["figure"] = str(figure)
    if loo_figure is not None and ex.checks:
        save_fig(figures.loo_figure(ex.checks), loo_figure, "influence-loo-figure", INFLUENCE)
        result["loo_figure"] = str(loo_figure)
    if json_out:
        print_json(result)
        return
    sv = result["solver"]
    typer.echo(f"{problem}: n = {result['n']} training points, {result['num_params']} head parameters, head "
               f"accuracy {result['head_accuracy']:.1%}; solver {sv['solver']} ({sv['reason']}), "
               f"{sv['seconds']:.2f}s")
    typer.echo(f"test {result['test_name']} ({result['test_label']}): predicted {result['prediction']} "
               f"({result['confidence']:.1%}), loss {result['test_loss']:.4f}")
    for kind in ("helpful", "harmful"):
        typer.echo(f"most {kind}:")
        for r in result[kind]:
            typer.echo(f"  #{r['index']:<5} {r['name']:<40} {r['label']:<8} I = {r['influence']:+.4g}")
    for c in result["loo"]:
        typer.echo(f"leave-one-out ({c['n']} retrainings): {c['solver']} Pearson {c['pearson']:.4f}, "
                   f"Spearman {c['spearman']:.4f}")


def koh_liang_cmd(
    poisons: str = typer.Option("1", "--poisons", "-k", help="Poisoned training images per target; several "
                                "comma-separated give one row each, e.g. 1,2,5"),
    targets: str = typer.Option("20", "--targets", help="How many correctly classified test views to attack "
                                "(balanced over the classes), or all"),
    target: int = typer.Option(None, "--target", min=0, help="Attack this one test view (index) instead"),
    eps: str = typer.Option("2/255", "--eps", help="L-inf box around each poisoned training image"),
    step: str = typer.Option(None, "--step", help="Signed step per iteration (default eps/4)"),
    max_iters: int = typer.Option(40, "--max-iters", min=1),
    candidates: str = typer.Option("other-class", "--candidates", help="Poison training images of the "
                                   "other class than the target's (other-class) or of any class (any)"),
    l2: float = L2Opt,
    out: Path = OutOpt, figures_n: int = FiguresOpt, force: bool = ForceOpt, seed: int = SeedOpt,
    data: Path = DataOpt, classes: str = ClassesOpt, train_per_class: int = TrainOpt, test_per_class: int = TestOpt,
    split_seed: int = SplitOpt, max_sources: int = SourcesOpt, cache_dir: Path = CacheOpt,
    model: str = ModelOpt, device: str = DeviceOpt, json_out: bool = JsonOpt,
) -> None:
    """Koh & Liang (2017) §5.2: perturb k training images (L-inf box, through the whole network) so the
    retrained head flips a test prediction; flip rate over targets, moved predictions, defense ranks."""
    from patchlab.errors import PatchlabError, parse_fraction
    from patchlab.poisoning import figures
    from patchlab.poisoning.koh_liang import (KohLiangConfig, choose_targets, run_targets, summarize,
                                              train_clean)

    ks = _ints(poisons, "--poisons")
    eps_v = parse_fraction(eps, "--eps")
    step_v = parse_fraction(step, "--step") if step else eps_v / 4
    configs = [KohLiangConfig(k, eps_v, step_v, max_iters, l2, candidates, seed) for k in ks]
    for c in configs:
        c.check()
    count = _count(targets, "--targets")
    net, task = _prepare(out, KOH_LIANG, configs[0], "num_poisons", force, data, classes, train_per_class,
                         test_per_class, split_seed, max_sources, cache_dir, model, device, json_out)
    clean = train_clean(task, l2)
    if target is not None:
        if target >= len(task.test):
            raise PatchlabError(f"--target must lie in 0..{len(task.test) - 1}")
        chosen = [target]
    else:
        chosen = choose_targets(task, clean, count, seed)
    if not chosen:
        raise PatchlabError("no correctly classified test view to attack")
    rows = []
    for cfg in configs:
        saved = []

        def keep(outcome, cfg=cfg, saved=saved):
            if out is None or outcome.poisons is None:
                return
            from patchlab.poisoning.runs import safe_name, save_fig, save_png

            r = outcome.result
            folder = out / f"k{cfg.num_poisons}"
            for j, img in enumerate(outcome.poisons):
                save_png(img, folder / f"target{r.target:04d}_{j}_{safe_name(r.poison_views[j])}.poison.png",
                         "poison", KOH_LIANG)
            if len(saved) < figures_n:
                save_fig(figures.poison_figure(outcome, list(task.class_names)),
                         folder / f"target{r.target:04d}.figure.png", "poison-figure", KOH_LIANG)
                saved.append(r.target)

        log = out / f"koh-liang-k{cfg.num_poisons}.jsonl" if out else None
        with rich_progress(f"k = {cfg.num_poisons}", enabled=not json_out) as cb:
            results = run_targets(task, net, cfg, chosen, log=log, progress=cb, on_outcome=keep, clean=clean)
        summary = summarize(results)
        rows.append({"num_poisons": cfg.num_poisons, **summary,
                     "targets": [r.to_dict() for r in results] if target is not None or json_out else None})
    result = {"attack": "koh-liang", "model": task.model_name, "eps": eps_v, "step": step_v,
              "max_iters": max_iters, "candidates": candidates, "l2": l2, "seed": seed, "task": task.summary(),
              "clean_accuracy": float((clean.test_pred == task.test_labels).double().mean()),
              "n_targets": len(chosen), "rows": rows, "seconds": sum(r["seconds"] for r in rows),
              "out": str(out) if out else None}
    if json_out:
        print_json(result)
        return
    typer.echo(f"{task.model_name} {'/'.join(task.class_names)}: {task.summary()['n_train']} training views, clean "
               f"test accuracy {result['clean_accuracy']:.1%}; L-inf box {eps_v * 255:g}/255")
    for r in rows:
        lo, hi = r["ci95"]
        extra = (f", median confidence after {r['median_confidence_after']:.0%}, other test predictions moved "
                 f"(mean) {r['mean_others_moved']:.1f} of {task.summary()['n_test'] - 1}") if r["flipped"] else ""
        typer.echo(f"  k = {r['num_poisons']}: flipped {r['flipped']}/{r['n']} = {r['flip_rate']:.0%} "
                   f"[{lo:.0%}, {hi:.0%}]{extra}  ({r['seconds']:.0f}s)")
        if r.get("defense"):
            typer.echo(_defense_line(r))
    if out:
        typer.echo(f"wrote {out}")


def feature_collision_cmd(
    pairs: int = typer.Option(10, "--pairs", min=1, help="Target/base pairs (half each direction)"),
    opacity: str = typer.Option("0", "--opacity", help="Watermark opacity of the target in the base; several "
                                "comma-separated give one row each, e.g. 0,0.3"),
    beta0: float = typer.Option(0.25, "--beta0", help="Pixel-proximity weight beta0 (Shafahi et al.)"),
    iters: int = typer.Option(100, "--iters", min=1),
    lr: float = typer.Option(0.01, "--lr"),
    batch: int = typer.Option(8, "--batch", min=1, help="Poisons crafted together"),
    l2: float = L2Opt,
    out: Path = OutOpt, figures_n: int = FiguresOpt, force: bool = ForceOpt, seed: int = SeedOpt,
    data: Path = DataOpt, classes: str = ClassesOpt, train_per_class: int = TrainOpt, test_per_class: int = TestOpt,
    split_seed: int = SplitOpt, max_sources: int = SourcesOpt, cache_dir: Path = CacheOpt,
    model: str = ModelOpt, device: str = DeviceOpt, json_out: bool = JsonOpt,
) -> None:
    """Shafahi et al. (2018) Poison Frogs: one clean-label poison per target/base pair; success rate."""
    from patchlab.errors import PatchlabError
    from patchlab.poisoning import figures
    from patchlab.poisoning.feature_collision import (FeatureCollisionConfig, choose_pairs, run_pairs,
                                                      summarize)
    from patchlab.poisoning.koh_liang import train_clean

    try:
        opacities = [float(v) for v in opacity.split(",") if v.strip()]
    except ValueError:
        raise PatchlabError(f"--opacity takes numbers in [0, 1) separated by commas, got {opacity!r}") from None
    configs = [FeatureCollisionConfig(beta0, o, iters, lr, l2, batch, seed) for o in opacities]
    if not configs:
        raise PatchlabError("--opacity is empty")
    for c in configs:
        c.check()
    net, task = _prepare(out, COLLISION, configs[0], "opacity", force, data, classes, train_per_class,
                         test_per_class, split_seed, max_sources, cache_dir, model, device, json_out)
    clean = train_clean(task, l2)
    chosen = choose_pairs(task, clean, pairs, seed)
    rows = []
    for cfg in configs:
        saved = []

        def keep(po, cfg=cfg, saved=saved):
            if out is None:
                return
            from patchlab.poisoning.runs import save_fig, save_png

            r = po.result
            stem = f"target{r.target:04d}_base{r.base:04d}"
            folder = out / f"opacity{cfg.opacity:g}"
            save_png(po.poison, folder / f"{stem}.poison.png", "poison", COLLISION)
            if len(saved) < figures_n:
                save_fig(figures.collision_figure(po.target, po.base, po.poison, r, list(task.class_names),
                                                  po.before, po.after),
                         folder / f"{stem}.figure.png", "poison-figure", COLLISION)
                saved.append(r.target)

        log = out / f"feature-collision-opacity{cfg.opacity:g}.jsonl" if out else None
        with rich_progress(f"opacity {cfg.opacity:g}", enabled=not json_out) as cb:
            results = run_pairs(task, net, cfg, chosen, log=log, progress=cb, on_outcome=keep, clean=clean)
        rows.append({"opacity": cfg.opacity, **summarize(results),
                     "pairs": [r.to_dict() for r in results] if json_out else None})
    result = {"attack": "feature-collision", "model": task.model_name, "beta0": beta0, "iters": iters, "lr": lr,
              "l2": l2, "seed": seed, "task": task.summary(),
              "clean_accuracy": float((clean.test_pred == task.test_labels).double().mean()),
              "rows": rows, "seconds": sum(r["seconds"] for r in rows), "out": str(out) if out else None}
    if json_out:
        print_json(result)
        return
    typer.echo(f"{task.model_name} {'/'.join(task.class_names)}: {task.summary()['n_train']} training views, clean "
               f"test accuracy {result['clean_accuracy']:.1%}; one poison per pair")
    for r in rows:
        lo, hi = r["ci95"]
        typer.echo(f"  opacity {r['opacity']:.0%}: success {r['successes']}/{r['n']} = {r['success_rate']:.0%} "
                   f"[{lo:.0%}, {hi:.0%}], median poison L-inf {r['median_poison_linf'] * 255:.0f}/255, "
                   f"feature distance {r['median_start_distance']:.1f} -> {r['median_feature_distance']:.1f}  "
                   f"({r['seconds']:.0f}s)")
        if r.get("defense"):
            typer.echo(_defense_line(r))
    if out:
        typer.echo(f"wrote {out}")


def register(app: typer.Typer) -> None:
    add_group(app, "poison", "Training-set poisoning: influence functions, Koh & Liang's attack, feature collision.",
              influence=influence_cmd, **{"koh-liang": koh_liang_cmd, "feature-collision": feature_collision_cmd})
