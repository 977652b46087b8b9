"""`patchlab privacy dpsgd|pate|mia|epsilon`: privacy of training data (DP-SGD, PATE, membership inference)."""

from __future__ import annotations

from pathlib import Path

import typer

from patchlab.cli._common import ForceOpt, JsonOpt, add_group, print_json, rich_progress

DataOpt = typer.Option("auto", "--data", help="auto (the shared MNIST test set if present, else scikit-learn's "
                       "digits), sklearn, or a folder of MNIST IDX files (with the 60k train files: the full MNIST)")
WRITER_DPSGD, WRITER_PATE, WRITER_MIA = "patchlab privacy dpsgd", "patchlab privacy pate", "patchlab privacy mia"
SeedOpt = typer.Option(0, "--seed", help="Random seed (data split, initial weights, sampling, noise)")
WorkersOpt = typer.Option(None, "--workers", min=1, help="Training processes (default: CPU count, at most 8)")


def _data(spec: str, seed: int, limit: int | None = None):
    from patchlab.data import shared_data_dir
    from patchlab.privacy.data import privacy_data

    if spec == "sklearn":
        return privacy_data(None, seed=seed, limit_private=limit)
    if spec == "auto":
        root = shared_data_dir()
        folder = root / "mnist" if root is not None and (root / "mnist").is_dir() else None
        return privacy_data(folder, seed=seed, limit_private=limit)
    return privacy_data(Path(spec), seed=seed, limit_private=limit)


def _floats(text: str, flag: str) -> list[float]:
    from patchlab.errors import PatchlabError

    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise PatchlabError(f"{flag} must be numbers separated by commas, e.g. 0.5,1,2; got {text!r}") from None
    if not values or any(not v > 0 for v in values):
        raise PatchlabError(f"{flag} must be positive numbers, got {text!r}")
    return values


def _rate(acc: float, n: int) -> dict:
    from patchlab.stats import wilson_interval

    return {"accuracy": acc, "ci95": list(wilson_interval(round(acc * n), n)), "n": n}


def dpsgd_cmd(
    data: str = DataOpt,
    model: str = typer.Option(None, "--model", "-m", help="dpcnn (default for 28 px), cnn, mlp, logreg, or "
                              "scatter (a DP linear model on fixed ScatterNet features)"),
    activation: str = typer.Option("tanh", "--activation", help="tanh (tempered sigmoid, Papernot 2021) or relu"),
    epsilon: str = typer.Option("2", "--epsilon", "-e", help="Target ε; several comma-separated, e.g. "
                                "0.5,1,2,4,8, train one model each"),
    noise_multiplier: float = typer.Option(None, "--noise-multiplier", help="Fix σ instead of a target ε"),
    delta: float = typer.Option(1e-5, "--delta"),
    max_grad_norm: float = typer.Option(1.0, "--max-grad-norm", "-c", help="Per-sample clipping norm C"),
    epochs: int = typer.Option(15, "--epochs", min=1),
    batch_size: int = typer.Option(256, "--batch-size", "-b", min=1, help="Expected logical batch "
                                   "(Poisson sampling rate = 1 / ceil(n / batch))"),
    physical_batch_size: int = typer.Option(512, "--physical-batch-size", min=1,
                                            help="Examples per forward/backward pass (BatchMemoryManager)"),
    lr: float = typer.Option(2.0, "--lr"),
    optimizer: str = typer.Option("sgd", "--optimizer", help="sgd or adam"),
    momentum: float = typer.Option(0.0, "--momentum"),
    accountant: str = typer.Option("rdp", "--accountant", help="rdp or prv (the other is reported too)"),
    grad_sample_mode: str = typer.Option("bk", "--grad-sample-mode", help="bk (book-keeping clipping, one "
                                         "backward pass; the fastest), ew (ExpandedWeights), hooks, functorch or "
                                         "ghost (Opacus's ghost clipping): the same update"),
    baseline: bool = typer.Option(True, "--baseline/--no-baseline", help="Also train the same model without "
                                  "privacy (Adam, same epochs)"),
    limit: int = typer.Option(None, "--limit", min=1, help="Use the first N private training examples"),
    seed: int = SeedOpt,
    out: Path = typer.Option(None, "--out", "-o", help="Folder for dpsgd.json, dpsgd.png and per ε "
                             "<tag>.safetensors, <tag>.history.png, <tag>.dpsgd.pt (checkpoints: runs resume)"),
    force: bool = ForceOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Train with DP-SGD at one or more target ε and report accuracy and the ε the accountant spent."""
    import time

    from patchlab.artifacts import check_outputs, save_figure, write_json
    from patchlab.models.digits import accuracy, fit, make_digits_model, save_digits_model
    from patchlab.privacy.dpsgd import DPSGDConfig, train_dpsgd
    from patchlab.privacy.plots import dpsgd_history_figure, epsilon_accuracy_figure

    targets = [None] if noise_multiplier is not None else _floats(epsilon, "--epsilon")
    base_cfg = DPSGDConfig(target_epsilon=None, noise_multiplier=noise_multiplier, delta=delta,
                           max_grad_norm=max_grad_norm, epochs=epochs, batch_size=batch_size,
                           physical_batch_size=physical_batch_size, lr=lr, optimizer=optimizer,
                           momentum=momentum, accountant=accountant, grad_sample_mode=grad_sample_mode, seed=seed)
    if noise_multiplier is None:
        base_cfg.target_epsilon = targets[0]
    base_cfg.validate()  # bad settings fail before any data loads
    tags = [f"eps{t:g}" if t is not None else f"sigma{noise_multiplier:g}" for t in targets]
    if out:  # results are replaced only with --force; checkpoints of the same settings are resumed
        finals = {out / "dpsgd.json": "dpsgd-results", out / "dpsgd.png": "dpsgd-plot"}
        for tag in tags:
            finals.update({out / f"{tag}.digits.safetensors": "digits-model", out / f"{tag}.history.png": "dpsgd-history-plot"})
        check_outputs(finals, WRITER_DPSGD, force)
        check_outputs({**{out / f"{tag}.dpsgd.pt": "dpsgd-checkpoint" for tag in tags},
                       out / "baseline.fit.pt": "digits-fit-checkpoint"}, force=True)
    d = _data(data, seed, limit)
    from patchlab.privacy.data import model_kwargs

    mk = model_kwargs(model, activation, d.size)
    n_test = len(d.test)
    report = {"data": d.source, "sizes": d.sizes(), "model": mk, "seed": seed, "delta": delta, "n": n_test,
              "runs": []}
    t0 = time.perf_counter()
    if baseline:
        net = make_digits_model(**mk, seed=seed)
        with rich_progress("non-private baseline", enabled=not json_out) as cb:
            res = fit(net, d.private.images, d.private.labels, epochs=epochs, lr=1e-3, batch_size=min(
                batch_size, 128), seed=seed, progress=cb,
                checkpoint=out / "baseline.fit.pt" if out else None)
        report["baseline"] = {**_rate(accuracy(net, d.test.images, d.test.labels), n_test),
                              "seconds": res.seconds}
    for target, tag in zip(targets, tags):
        cfg = DPSGDConfig.from_dict({**base_cfg.to_dict(), "target_epsilon": target})
        net = make_digits_model(**mk, seed=seed)
        with rich_progress(f"DP-SGD {tag}", enabled=not json_out) as cb:
            res = train_dpsgd(net, d.private.images, d.private.labels, cfg, progress=cb,
                              checkpoint=out / f"{tag}.dpsgd.pt" if out else None)
        row = {**res.summary(), **_rate(accuracy(res.model, d.test.images, d.test.labels), n_test),
               "history": res.history}
        if out:
            row["model_file"] = str(save_digits_model(res.model, out / f"{tag}.digits.safetensors", "digits-model", WRITER_DPSGD))
            save_figure(dpsgd_history_figure(res.history, target), out / f"{tag}.history.png", "dpsgd-history-plot",
                        WRITER_DPSGD, dpi=110)
        report["runs"].append(row)
        if not json_out:
            typer.echo(f"DP-SGD target ε={target if target is not None else '-'}: spent ε={res.epsilon:.3f} "
                       f"(rdp {res.epsilons['rdp']:.3f}, prv {res.epsilons['prv'] or float('nan'):.3f}) "
                       f"δ={delta:g}  σ={res.noise_multiplier:.3f} q={res.sample_rate:.4f} "
                       f"steps={res.steps}  accuracy {row['accuracy']:.2%} "
                       f"[{row['ci95'][0]:.1%}, {row['ci95'][1]:.1%}]  {res.seconds:.0f}s")
    report["seconds"] = time.perf_counter() - t0
    if len(report["runs"]) == 1:  # one run: its headline numbers at the top level too
        report.update({k: report["runs"][0][k] for k in ("epsilon", "accuracy", "ci95")})
    if out:
        rows = [{"variant": f"DP-SGD {mk['kind']} {mk.get('activation', '')}".strip(), "epsilon": r["epsilon"],
                 "accuracy": r["accuracy"], "ci95": r["ci95"]} for r in report["runs"]]
        save_figure(epsilon_accuracy_figure(rows, report.get("baseline", {}).get("accuracy")), out / "dpsgd.png",
                    "dpsgd-plot", WRITER_DPSGD, dpi=110)
        write_json(out / "dpsgd.json", report, "dpsgd-results", WRITER_DPSGD, indent=1)
    if json_out:
        print_json(report)
    elif baseline:
        b = report["baseline"]
        typer.echo(f"non-private baseline: accuracy {b['accuracy']:.2%} [{b['ci95'][0]:.1%}, {b['ci95'][1]:.1%}]"
                   f"  ({d.source}: {d.sizes()})")


def pate_cmd(
    data: str = DataOpt,
    teachers: int = typer.Option(50, "--teachers", "-t", min=2, help="Teachers on disjoint private parts"),
    aggregator: str = typer.Option("confident", "--aggregator", "-a", help="lnmax, gnmax or confident "
                                   "(Confident-GNMax)"),
    gamma: float = typer.Option(0.05, "--gamma", help="LNMax: Laplace noise of scale 1/γ"),
    sigma: float = typer.Option(10.0, "--sigma", help="GNMax σ (σ2 of Confident-GNMax)"),
    threshold: float = typer.Option(None, "--threshold", help="Confident-GNMax T (default 0.6 x teachers)"),
    sigma1: float = typer.Option(None, "--sigma1", help="Confident-GNMax threshold noise (default 0.5 x teachers)"),
    queries: int = typer.Option(1000, "--queries", "-q", min=1, help="Public inputs shown to the aggregator"),
    delta: float = typer.Option(1e-5, "--delta"),
    model: str = typer.Option(None, "--model", "-m", help="Teacher and student model (default dpcnn; cnn for 8 px)"),
    teacher: str = typer.Option("network", "--teacher", help="network (--model trained from scratch) or "
                                "scatter-linear (logistic regression on fixed ScatterNet features)"),
    student: str = typer.Option(None, "--student", help="network or scatter-linear (default: as --teacher)"),
    linear_epochs: int = typer.Option(150, "--linear-epochs", min=1, help="scatter-linear: full-batch Adam steps"),
    linear_lr: float = typer.Option(0.05, "--linear-lr", help="scatter-linear: Adam learning rate"),
    linear_weight_decay: float = typer.Option(0.02, "--linear-weight-decay", help="scatter-linear: L2 penalty"),
    curriculum: bool = typer.Option(False, "--curriculum", help="Student's self-training by class-balanced "
                                    "shares of the unlabelled public images (curriculum labelling)"),
    linear_optimizer: str = typer.Option("adam", "--linear-optimizer", help="scatter-linear: adam or lbfgs "
                                         "(then --linear-epochs counts L-BFGS steps; use --linear-lr 1)"),
    student_weight_decay: float = typer.Option(None, "--student-weight-decay", help="scatter-linear student's L2 "
                                               "(default: --linear-weight-decay)"),
    teacher_epochs: int = typer.Option(40, "--teacher-epochs", min=1),
    teacher_lr: float = typer.Option(2e-3, "--teacher-lr", help="Adam learning rate of the teachers"),
    student_epochs: int = typer.Option(40, "--student-epochs", min=1),
    student_lr: float = typer.Option(2e-3, "--student-lr", help="Adam learning rate of the student"),
    pseudo_label: float = typer.Option(0.0, "--pseudo-label", help="Semi-supervised student: also train on "
                                       "its own predictions of unanswered public inputs at least this confident"),
    self_training: int = typer.Option(1, "--self-training", min=1, help="Rounds of pseudo-labelling "
                                      "(with --pseudo-label)"),
    features: str = typer.Option("scatter", "--features", help="scatter-linear teachers' input: scatter (the "
                                 "ScatterNet features) or public-pca (their principal components, fitted on the "
                                 "public images only, no labels)"),
    feature_dim: int = typer.Option(48, "--feature-dim", min=1, help="public-pca: components kept"),
    target_epsilon: float = typer.Option(None, "--target-epsilon", help="Ask only the most of the --queries "
                                         "that fit in this data-dependent ε"),
    teacher_self_training: int = typer.Option(0, "--teacher-self-training", min=0, help="scatter-linear "
                                              "teachers: rounds of self-training on the public images"),
    teacher_pseudo_label: float = typer.Option(0.9, "--teacher-pseudo-label", help="... keeping their own labels "
                                               "at least this confident"),
    validation: int = typer.Option(0, "--validation", min=0, help="Hold out the last N public images (never "
                                   "queried or trained on); report the student's accuracy on them, for choosing "
                                   "settings without the test part"),
    seed: int = SeedOpt, workers: int = WorkersOpt,
    out: Path = typer.Option(None, "--out", "-o", help="Folder for pate.json, pate.png, student.safetensors and "
                             "teachers/ (reruns with other aggregator settings reuse the teachers)"),
    force: bool = ForceOpt,
    json_out: bool = JsonOpt,
) -> None:
    """PATE: teachers on disjoint data, noisy aggregation, a student on public data, and its ε."""
    from patchlab.artifacts import check_outputs, save_figure, write_json
    from patchlab.models.digits import save_digits_model
    from patchlab.privacy.pate import PATEConfig, run_pate
    from patchlab.privacy.plots import pate_figure

    if out:
        check_outputs({out / "pate.json": "pate-results", out / "pate.png": "pate-plot",
                       out / "student.digits.safetensors": "digits-model"}, WRITER_PATE, force)
    d = _data(data, seed)
    from patchlab.privacy.data import default_model

    kind = model or default_model(d.size)
    cfg = PATEConfig(teachers=teachers, aggregator=aggregator, gamma=gamma, sigma=sigma, threshold=threshold,
                     sigma1=sigma1, queries=queries, delta=delta, model=kind, teacher_epochs=teacher_epochs,
                     teacher_lr=teacher_lr, student_epochs=student_epochs, student_lr=student_lr,
                     pseudo_label=pseudo_label, seed=seed, workers=workers, teacher=teacher, student=student,
                     linear_epochs=linear_epochs, linear_lr=linear_lr, linear_weight_decay=linear_weight_decay,
                     self_training=self_training, features=features, feature_dim=feature_dim, validation=validation,
                     target_epsilon=target_epsilon, student_weight_decay=student_weight_decay,
                     linear_optimizer=linear_optimizer, curriculum=curriculum,
                     teacher_self_training=teacher_self_training,
                     teacher_pseudo_label=teacher_pseudo_label)
    with rich_progress(f"PATE {teachers} teachers", enabled=not json_out) as cb:
        res = run_pate(d, cfg, out_dir=out, progress=cb)
    report = {"data": d.source, **res.summary()}
    if out:
        report["student_file"] = str(save_digits_model(res.student, out / "student.digits.safetensors", "digits-model",
                                                              WRITER_PATE))
        report["figure"] = str(save_figure(pate_figure(res.analysis, res.counts), out / "pate.png", "pate-plot",
                                           WRITER_PATE, dpi=110))
        write_json(out / "pate.json", report, "pate-results", WRITER_PATE, indent=1)
    if json_out:
        print_json(report)
        return
    r = report
    typer.echo(f"PATE on {d.source} {d.sizes()}: {teachers} {res.config.teacher} teachers of "
               f"{r['sizes']['per_teacher']} examples "
               f"(mean test accuracy {r['teacher_accuracy_mean']:.1%}, plurality of all {r['ensemble_accuracy']:.1%})")
    typer.echo(f"  {aggregator}: {r['answered']}/{r['queries']} queries answered, label accuracy "
               f"{r['label_accuracy']:.1%}; student {r['accuracy']:.2%} [{r['ci95'][0]:.1%}, {r['ci95'][1]:.1%}]"
               + (f" (+{r['pseudo_labelled']} pseudo-labels)" if r["pseudo_labelled"] else ""))
    if r["validation_accuracy"] is not None:
        typer.echo(f"  validation ({validation} held-out public images): student {r['validation_accuracy']:.2%}")
    typer.echo(f"  ε = {r['epsilon']:.3f} data-dependent (classic conversion {r['epsilon_classic']:.3f}), "
               f"{r['epsilon_data_independent']:.3f} data-independent, δ = {delta:g}, order {r['order']:.3g}. "
               "The data-dependent ε is computed from the private votes (released privately only with smooth "
               "sensitivity, not implemented).")


def mia_cmd(
    data: str = DataOpt,
    shadows: int = typer.Option(8, "--shadows", "-n", min=2, help="Shadow models (plus one target; each model "
                                "is the target once, the others are its shadows)"),
    pool: int = typer.Option(1000, "--pool", min=4, help="Private examples the models draw random halves from"),
    trainer: str = typer.Option("fit", "--trainer", help="fit (non-private; overfit) or dpsgd"),
    epsilon: float = typer.Option(8.0, "--epsilon", "-e", help="Target ε of each DP-SGD model (--trainer dpsgd)"),
    delta: float = typer.Option(1e-5, "--delta"),
    model: str = typer.Option(None, "--model", "-m", help="Model kind (default dpcnn; cnn for 8 px)"),
    activation: str = typer.Option("relu", "--activation"),
    epochs: int = typer.Option(60, "--epochs", min=1),
    lr: float = typer.Option(None, "--lr", help="Default 2e-3 (Adam) for fit, 2.0 (SGD) for dpsgd"),
    batch_size: int = typer.Option(None, "--batch-size", min=1, help="Default 64 for fit, 256 for dpsgd"),
    augment: bool = typer.Option(False, "--augment", help="Also query four one-pixel shifts"),
    seed: int = SeedOpt, workers: int = WorkersOpt,
    out: Path = typer.Option(None, "--out", "-o", help="Folder for mia.json, roc.png and the models (reruns "
                             "reuse them)"),
    force: bool = ForceOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Membership inference (loss threshold, LiRA online/offline) against non-private or DP-SGD models."""
    from patchlab.artifacts import check_outputs, save_figure, write_json
    from patchlab.privacy.mia import MIAConfig, run_mia
    from patchlab.privacy.plots import roc_figure

    if out:
        check_outputs({out / "mia.json": "mia-results", out / "roc.png": "mia-roc-plot"}, WRITER_MIA, force)
    from patchlab.privacy.data import default_model

    d = _data(data, seed)
    dp = trainer == "dpsgd"
    cfg = MIAConfig(shadows=shadows, pool=min(pool, len(d.private)), trainer=trainer,
                    model=model or default_model(d.size), activation=activation, epochs=epochs,
                    lr=lr if lr is not None else (2.0 if dp else 2e-3),
                    batch_size=batch_size or (256 if dp else 64), target_epsilon=epsilon, delta=delta,
                    augment=augment, seed=seed, workers=workers)
    with rich_progress(f"{shadows + 1} models", enabled=not json_out) as cb:
        res = run_mia(d.private, cfg, test=d.test, out_dir=out, progress=cb)
    report = {"data": d.source, **res.summary()}
    bugs = {k: v for k, v in res.bound_violations.items() if v}
    if out:
        title = f"{shadows} shadows, {'DP-SGD ε=%.2f' % res.epsilon if dp else 'non-private'}"
        report["figure"] = str(save_figure(roc_figure(res.attacks, res.epsilon, delta, title, bugs),
                                           out / "roc.png", "mia-roc-plot", WRITER_MIA, dpi=110))
        write_json(out / "mia.json", report, "mia-results", WRITER_MIA, indent=1)
    if json_out:
        print_json(report)
    else:
        typer.echo(f"{res.n} guesses ({shadows + 1} targets x {cfg.pool} examples); models: train accuracy "
                   f"{res.train_accuracy:.1%}, test {res.test_accuracy:.1%}"
                   + (f", ε = {res.epsilon:.3f} (AUC bound {report['auc_bound']:.3f})" if dp else ""))
        for name, a in res.attacks.items():
            typer.echo(f"  {name:20s} AUC {a['auc']:.3f}  TPR@0.1%FPR {a['tpr_at_0.1%']:6.2%}  "
                       f"TPR@1%FPR {a['tpr_at_1%']:6.2%}")
        y = res.yeom
        typer.echo(f"  Yeom (threshold = mean training loss): TPR {y['tpr']:.1%} FPR {y['fpr']:.1%} "
                   f"advantage {y['advantage']:.3f}")
    for name, pts in bugs.items():
        typer.echo(f"BUG: {name} has {len(pts)} ROC point(s) above the DP bound (e.g. FPR {pts[0]['fpr']:.4f}, "
                   f"TPR {pts[0]['tpr']:.4f} > bound {pts[0]['bound']:.4f}): the training or its accounting is "
                   "not (ε, δ)-DP", err=True)
    if bugs:
        raise typer.Exit(1)


def epsilon_cmd(
    noise_multiplier: float = typer.Option(..., "--noise-multiplier", "--sigma", help="σ (noise std / C)"),
    sample_rate: float = typer.Option(..., "--sample-rate", "-q", help="Poisson sampling rate (batch / n)"),
    steps: int = typer.Option(None, "--steps", min=1, help="Noisy steps"),
    epochs: float = typer.Option(None, "--epochs", help="Or epochs: steps = epochs / sample rate"),
    delta: float = typer.Option(1e-5, "--delta"),
    json_out: bool = JsonOpt,
) -> None:
    """ε of DP-SGD settings by our RDP accountant, Opacus's RDP and Opacus's PRV accountants."""
    import math

    from patchlab.errors import PatchlabError
    from patchlab.privacy.dpsgd import epsilon_of
    from patchlab.privacy.rdp import dpsgd_epsilon

    if (steps is None) == (epochs is None):
        raise PatchlabError("give exactly one of --steps and --epochs")
    if not 0 < sample_rate <= 1:
        raise PatchlabError(f"--sample-rate must lie in (0, 1], got {sample_rate}")
    n_steps = steps if steps is not None else int(math.ceil(epochs / sample_rate))
    history = [(noise_multiplier, sample_rate, n_steps)]
    out = {"noise_multiplier": noise_multiplier, "sample_rate": sample_rate, "steps": n_steps, "delta": delta,
           "epsilon": dpsgd_epsilon(noise_multiplier, sample_rate, n_steps, delta),
           "epsilon_opacus_rdp": epsilon_of(history, delta, "rdp")}
    try:
        out["epsilon_opacus_prv"] = epsilon_of(history, delta, "prv")
    except Exception as exc:  # noqa: BLE001 - PRV fails at large ε (Opacus #591); say so, keep the others
        out["epsilon_opacus_prv"] = None
        out["prv_error"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if json_out:
        print_json(out)
        return
    prv = out["epsilon_opacus_prv"]
    typer.echo(f"σ={noise_multiplier:g} q={sample_rate:g} steps={n_steps} δ={delta:g}: ε = {out['epsilon']:.4f} "
               f"(ours, RDP) · {out['epsilon_opacus_rdp']:.4f} (Opacus RDP) · "
               + (f"{prv:.4f} (Opacus PRV)" if prv is not None else f"PRV failed: {out['prv_error']}"))


def bench_cmd(
    table: str = typer.Argument(..., help="speed, dpsgd, pate or mia (the tables of docs/privacy.md)"),
    data: str = DataOpt,
    out: Path = typer.Option(Path("runs/privacy-bench"), "--out", "-o", help="Folder for per-cell results; "
                             "a rerun skips the cells already done"),
    epsilon: str = typer.Option(None, "--epsilon", "-e", help="Only these ε (dpsgd, mia), e.g. 1,2"),
    variants: str = typer.Option(None, "--variants", help="Only these dpsgd variants, comma-separated"),
    runs: str = typer.Option(None, "--runs", help="Only these pate runs, comma-separated"),
    workers: int = WorkersOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Run (or resume) one of the full-size privacy tables and print it as markdown."""
    from patchlab.privacy import experiments as ex
    from patchlab.registry import check_known

    run_table = ex.TABLES.get(table)
    kwargs: dict = {"out": out}
    if epsilon and table in ("dpsgd", "mia"):
        kwargs["epsilons"] = tuple(_floats(epsilon, "--epsilon"))
    if variants and table == "dpsgd":
        kwargs["variants"] = tuple(v.strip() for v in variants.split(",") if v.strip())
        check_known(kwargs["variants"], ex.VARIANTS, "variant")
    if runs and table == "pate":
        kwargs["runs"] = tuple(r.strip() for r in runs.split(",") if r.strip())
        check_known(kwargs["runs"], ex.PATE_RUNS, "PATE run")
    if workers is not None and table in ("pate", "mia"):
        kwargs["workers"] = workers
    d = _data(data, 0)
    with rich_progress(f"privacy bench {table}", enabled=not json_out) as cb:
        rows = run_table(d, progress=cb, **kwargs)
    if json_out:
        print_json({"table": table, "data": d.source, "sizes": d.sizes(), "rows": rows})
    else:
        typer.echo(f"{table} on {d.source} {d.sizes()}\n")
        typer.echo(ex.markdown(table, rows))


def register(app: typer.Typer) -> None:
    add_group(app, "privacy", "Privacy of training data: DP-SGD (Opacus), PATE, membership inference.",
              dpsgd=dpsgd_cmd, pate=pate_cmd, mia=mia_cmd, epsilon=epsilon_cmd, bench=bench_cmd)
