"""`patchlab attack`: run a digital attack on a labelled folder and report clean/robust accuracy."""

from __future__ import annotations

from pathlib import Path

import typer

from patchlab.cli._common import ArchOpt, DeviceOpt, ForceOpt, JsonOpt, ModelOpt, print_json, rich_progress


def attack_cmd(
    folder: Path = typer.Argument(..., help="Labelled folder: <wnid>_<name>.jpg or class/ subfolders"),
    model: str = ModelOpt, arch: str = ArchOpt,
    attack: str = typer.Option("pgd", "--attack", "-a", help="fgsm, fgm, bim, ll, pgd, pgdl2, mifgsm, difgsm, "
                               "tifgsm, cw, deepfool, uap"),
    eps: str = typer.Option(None, "--eps", help="ε as 4/255 or 0.0157; several comma-separated give an "
                            "accuracy-vs-ε curve (default: the attack's own)"),
    steps: int = typer.Option(None, "--steps", min=1, help="Iterations (iterative attacks, C&W, DeepFool)"),
    alpha: str = typer.Option(None, "--alpha", help="Step size (iterative attacks), e.g. 1/255"),
    target: str = typer.Option(None, "--target", help="Target class: index, wnid or name (e.g. toaster)"),
    least_likely: bool = typer.Option(False, "--least-likely", help="Target the least-likely class"),
    restarts: int = typer.Option(None, "--restarts", min=1, help="Random restarts (PGD)"),
    seed: int = typer.Option(0, "--seed", help="Random seed"),
    limit: int = typer.Option(None, "--limit", min=1, help="Use the first N images"),
    batch: int = typer.Option(16, "--batch", min=1, help="Images per batch"),
    out: Path = typer.Option(None, "--out", help="Save adversarial PNGs + run.json + results.jsonl in this folder "
                             "(a rerun with the same settings resumes)"),
    force: bool = typer.Option(False, "--force", help="Start --out over when it holds an attack run with other "
                               "settings (its PNGs and results are replaced)"),
    device: str = DeviceOpt, json_out: bool = JsonOpt,
) -> None:
    """Attack a labelled image folder: clean and robust accuracy, success rate, norms, wall time."""
    import torch

    from patchlab.attacks import make_attack
    from patchlab.attacks.robustness import evaluate_folder
    from patchlab.errors import PatchlabError
    from patchlab.models import load_model

    if target is not None and least_likely:
        raise PatchlabError("choose either --target or --least-likely, not both")
    eps_list = [e.strip() for e in eps.split(",") if e.strip()] if eps else []
    kwargs = {k: v for k, v in {"steps": steps, "alpha": alpha, "target": target, "restarts": restarts,
                                "least_likely": least_likely or None, "seed": seed}.items() if v is not None}
    if eps_list:
        kwargs["eps"] = eps_list[0]
    torch.manual_seed(seed)
    net = load_model(model, device, arch=arch)
    atk = make_attack(attack, net, **kwargs)  # validates ε, target and options before any work
    for e in eps_list[1:]:
        atk.with_eps(e)
    if len(eps_list) > 1:
        if out is not None:
            raise PatchlabError("--out saves one ε at a time; give a single --eps with --out")
        atk.batch_size = batch
        _eps_sweep(net, atk, folder, limit, eps_list, json_out)
        return
    with rich_progress(f"{atk.name} on {net.name}", enabled=not json_out) as cb:
        result = evaluate_folder(net, atk, folder, limit=limit, batch_size=batch, out_dir=out, progress=cb,
                                 force=force)
    if json_out:
        print_json(result)
        return
    eps_text = "" if result.get("eps") is None else f" ε={result['eps']:.4g}"
    typer.echo(f"{result['model']} {result['attack']}{eps_text} ({result['mode']}) on {result['n']} images "
               f"in {result['seconds']:.1f}s")
    typer.echo(f"  clean accuracy  {result['clean_accuracy']:6.1%}")
    typer.echo(f"  robust accuracy {result['robust_accuracy']:6.1%}")
    typer.echo(f"  success rate    {result['success_rate']:6.1%}" +
               (f"  (as saved 8-bit PNG: {result['png_success_rate']:.1%})" if "png_success_rate" in result else ""))
    typer.echo(f"  Linf mean {result['mean_linf']:.4f} max {result['max_linf']:.4f}   "
               f"L2 mean {result['mean_l2']:.3f} max {result['max_l2']:.3f}   "
               f"{result['queries']} gradient evaluations per image")


def _eps_sweep(net, atk, folder: Path, limit: int | None, eps_list: list[str], json_out: bool) -> None:
    """Robust accuracy and success rate at several ε on the whole folder (FGSM/FGM: one gradient for all)."""
    import torch

    from patchlab.attacks.robustness import accuracy_curve
    from patchlab.data import labelled_folder
    from patchlab.models.classify import load_batch

    items = labelled_folder(folder, limit=limit)
    images = load_batch([it.path for it in items], net.input_size)
    labels = torch.tensor([it.label for it in items])
    with rich_progress(f"{atk.name} ε sweep", enabled=not json_out) as cb:
        curve = accuracy_curve(net, atk, images, labels, eps_list, progress=cb)
    if json_out:
        print_json(curve)
        return
    typer.echo(f"{curve['model']} {curve['attack']} ({curve['mode']}) on {curve['n']} images: "
               f"clean accuracy {curve['clean_accuracy']:.1%}  [{curve['seconds']:.1f}s]")
    for e, r, s in zip(curve["eps"], curve["robust_accuracy"], curve["success_rate"]):
        shown = f"{e * 255:.3g}/255" if atk.norm == "linf" else f"{e:.3g}"
        typer.echo(f"  ε={shown:>9}  robust accuracy {r:6.1%}  success {s:6.1%}")


def attack_demo_cmd(
    name: str = typer.Argument("all", help="panda, linear, logits, airplanes or all"),
    out: Path = typer.Option(Path("."), "--out", help="Folder for attacks_<name>.png"),
    force: bool = ForceOpt,
    model: str = ModelOpt, device: str = DeviceOpt, json_out: bool = JsonOpt,
) -> None:
    """The classic demos (panda→gibbon, linear model, logits along ∇, objects→airliner) as PNG figures."""
    from patchlab.artifacts import check_outputs
    from patchlab.attacks.demos import DEMOS, run_demo, uses_model
    from patchlab.models import load_model

    names = list(DEMOS) if name == "all" else [DEMOS.resolve(name)]
    check_outputs({out / f"attacks_{n}.png": "figure" for n in names}, "patchlab attack-demo", force)
    net = load_model(model, device) if any(uses_model(n) for n in names) else None
    report = {}
    for n in names:
        result = run_demo(n, net)
        path = result.save(out / f"attacks_{n}.png", dpi=110)
        report[n] = {"png": str(path), **result.data}
        if not json_out:
            typer.echo(f"{path}")
    if json_out:
        print_json(report)


def register(app: typer.Typer) -> None:
    app.command("attack")(attack_cmd)
    app.command("attack-demo")(attack_demo_cmd)
