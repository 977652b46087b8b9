"""`patchlab defend train|certify|evaluate ...`: defenses, certificates and adaptive evaluations."""

from __future__ import annotations

from pathlib import Path

import typer

from patchlab.cli._common import ArchOpt, DeviceOpt, JsonOpt, ModelOpt, add_group, print_json, rich_progress

MnistOpt = typer.Option(None, "--mnist", help="MNIST IDX folder (default: the shared data's mnist/)")
ImagesOpt = typer.Option(..., "--images", help="Labelled image folder (<wnid>_<name>.jpg); the shared split is used")


def _mnist(folder: Path | None) -> Path:
    from patchlab.data import shared_data_dir
    from patchlab.errors import PatchlabError

    if folder is not None:
        return folder
    root = shared_data_dir()
    if root is None or not (root / "mnist").is_dir():
        raise PatchlabError("no MNIST folder found; give --mnist DIR (the official IDX files)")
    return root / "mnist"


ForceOpt = typer.Option(False, "--force", help="Replace this command's own earlier output (never another's)")


def _check(writer: str, force: bool, **outputs) -> None:
    """Issue 21: every output path checked before any work, by kind: plot=PNG path, model=.safetensors path."""
    from patchlab.artifacts import check_outputs

    kinds = {"plot": "defense-plot", "model": "defense-model"}
    check_outputs({path: kinds[k] for k, path in outputs.items() if path is not None}, writer, force)


def _save_plot(fig, plot: Path, writer: str) -> str:
    from patchlab.artifacts import save_figure

    save_figure(fig, plot, "defense-plot", writer)
    return str(plot)


def _model(model: str, arch: str | None, device: str):
    from patchlab.models import load_model

    return load_model(model, device, arch=arch)


def _echo_rates(result: dict, keys: tuple[str, ...]) -> None:
    parts = []
    for key in keys:
        if result.get(key) is not None:
            ci = result.get(key.replace("_accuracy", "_ci95")) or result.get("ci95")
            parts.append(f"{key.replace('_', ' ')} {100 * result[key]:.1f}%"
                         + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else ""))
    typer.echo("; ".join(parts))


def certify_patchcleanser(
    images: Path = ImagesOpt,
    model: str = ModelOpt,
    arch: str = ArchOpt,
    part: str = typer.Option("heldout", "--part", help="heldout or train side of the shared split"),
    limit: int = typer.Option(None, "--limit", min=1, help="Use the first N images of that side"),
    patch_area: float = typer.Option(0.02, "--patch-area", help="Largest patch to certify against, as a "
                                     "fraction of the image (square)"),
    masks: int = typer.Option(6, "--masks", min=1, help="Masks per side (k; k*k masks, k*k*(k*k+1)/2 passes)"),
    fill: float = typer.Option(0.5, "--fill", help="Grey value the masks are filled with"),
    batch: int = typer.Option(64, "--batch", min=1, help="Masked passes per batch"),
    baseline: int = typer.Option(0, "--baseline", min=0, help="Also time the plain all-pairs computation on N "
                                 "images, for the speed-up"),
    checkpoint: Path = typer.Option(None, "--checkpoint", help="Save each verdict here; a rerun continues"),
    plot: Path = typer.Option(None, "--plot", help="Write a bar chart PNG here"),
    force: bool = ForceOpt,
    device: str = DeviceOpt,
    json_out: bool = JsonOpt,
) -> None:
    """PatchCleanser (double masking) certified and clean accuracy on held-out images."""
    from patchlab.defenses.certify import certify_images
    from patchlab.defenses.plots import certify_figure
    from patchlab.errors import PatchlabError, check_unit_interval

    from patchlab.defenses.data import shared_split

    check_unit_interval("--patch-area", patch_area, allow_zero=False)
    if part not in ("heldout", "train"):
        raise PatchlabError(f"--part must be heldout or train, got {part!r}")
    shared_split(images, part, limit)  # a bad folder fails before the model loads
    _check("patchlab defend certify patchcleanser", force, plot=plot)
    net = _model(model, arch, device)
    with rich_progress("certify", enabled=not json_out) as cb:
        result = certify_images(net, images, part, limit, patch_area, masks, fill, batch, baseline,
                                checkpoint=checkpoint, progress=cb)
    if plot:
        result["plot"] = _save_plot(certify_figure(result), plot, "patchlab defend certify patchcleanser")
    if json_out:
        print_json(result)
        return
    typer.echo(f"{result['model']}: {result['n']} {part} images, {result['masks']} masks of "
               f"{result['mask_size']} px against a {result['patch_side']} px patch")
    _echo_rates(result, ("certified_accuracy", "clean_accuracy", "undefended_accuracy"))
    line = f"{result['seconds_per_image']:.2f} s/image, {result['passes_per_image']:.0f} passes/image"
    if "speedup" in result:
        line += f"; plain all-pairs {result['baseline']['seconds_per_image']:.2f} s/image ({result['speedup']:.1f}x)"
    typer.echo(line)


def evaluate_patch_cmd(
    patch: Path = typer.Argument(..., help="Patch PNG with its JSON sidecar (e.g. printables/...)"),
    images: Path = ImagesOpt,
    model: str = ModelOpt,
    arch: str = ArchOpt,
    areas: str = typer.Option("0.02,0.05,0.1", "--areas", help="Patch areas (fractions of the image)"),
    defenses: str = typer.Option("none,patchcleanser,lgs,jpeg,median,bitdepth,resize_pad", "--defenses",
                                 help="Comma-separated"),
    limit: int = typer.Option(80, "--limit", min=1, help="First N held-out images"),
    preset: str = typer.Option("print", "--preset", help="EOT preset for the patch"),
    masks: int = typer.Option(6, "--masks", min=1, help="PatchCleanser masks per side"),
    seed: int = typer.Option(1234, "--seed"),
    checkpoint: Path = typer.Option(None, "--checkpoint", help="Save progress here; a rerun continues"),
    plot: Path = typer.Option(None, "--plot", help="Write the bar chart PNG here"),
    force: bool = ForceOpt,
    device: str = DeviceOpt,
    json_out: bool = JsonOpt,
) -> None:
    """A patch against each defense: attack success, accuracy and PatchCleanser's certified fraction."""
    from patchlab.cli.patch import _areas
    from patchlab.defenses.patch_eval import evaluate_defenses
    from patchlab.defenses.plots import patch_defense_figure

    from patchlab.defenses.registry import check_defenses

    names = check_defenses([d.strip() for d in defenses.split(",") if d.strip()], "patch")
    _check("patchlab defend evaluate patch", force, plot=plot)
    net = _model(model, arch, device)
    with rich_progress("defenses", enabled=not json_out) as cb:
        result = evaluate_defenses(patch, images, net, _areas(areas), names, limit, preset, seed, masks,
                                   checkpoint=checkpoint, progress=cb)
    if plot:
        result["plot"] = _save_plot(patch_defense_figure(result), plot, "patchlab defend evaluate patch")
    if json_out:
        print_json(result)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{patch.name} vs defenses ({result['n']} held-out images, {preset})")
    for col in ("area", "defense", "success", "accuracy", "clean acc", "certified"):
        table.add_column(col)
    for r in result["rows"]:
        cert = f"{100 * r['certified_fraction']:.1f}%" if "certified_fraction" in r else ""
        table.add_row(f"{100 * r['area']:g}%", r["defense"], f"{100 * r['success_rate']:.1f}%",
                      f"{100 * r['accuracy']:.1f}%", f"{100 * r['clean_accuracy']:.1f}%", cert)
    Console().print(table)


def train_masking(
    images: Path = ImagesOpt,
    arch: str = typer.Option("efficientnet_lite0", "--arch", help="EfficientNet-Lite to fine-tune"),
    layers: str = typer.Option("all", "--layers", help="all, or late (last stages, head, classifier)"),
    loss: str = typer.Option("distill", "--loss", help="distill (match the original model's clean prediction), "
                             "hard (its top-1 label) or ce (true labels, the paper's recipe)"),
    masks: str = typer.Option("cutout", "--masks", help="cutout (2 x 128 px holes), pairs (two of PatchCleanser's "
                              "masks) or mixed (none, one or two of them)"),
    temperature: float = typer.Option(1.0, "--temperature", help="Distillation temperature"),
    worst_of: int = typer.Option(1, "--worst-of", min=1, help="Draw N maskings per image, train on the hardest"),
    mixup: float = typer.Option(0.0, "--mixup", help="Train on mixes of two crops labelled by the teacher; the "
                                "partner's weight is uniform in [0, MIXUP] (at most 0.5)"),
    teacher: str = typer.Option("", "--teacher", help="Zoo model(s) that label the crops for distill and hard, "
                                "comma-separated for an ensemble (logits averaged); default: the original --arch"),
    batchnorm: str = typer.Option("frozen", "--batchnorm", help="frozen (ImageNet's statistics) or train (batch "
                                  "statistics; the running ones re-estimated on the training crops)"),
    crop_scale: float = typer.Option(0.35, "--crop-scale", help="Smallest random crop, as a share of the image"),
    val: int = typer.Option(0, "--val", min=0, help="Keep N training images out for model selection and score "
                            "a certification proxy on them"),
    val_pairs: int = typer.Option(60, "--val-pairs", min=0, help="Mask pairs the proxy checks (hardest first)"),
    holes: int = typer.Option(2, "--holes", min=0),
    hole_size: int = typer.Option(128, "--hole-size", min=1),
    epochs: int = typer.Option(10, "--epochs", min=1),
    batch: int = typer.Option(32, "--batch", min=1),
    lr: float = typer.Option(1e-3, "--lr"),
    optimizer: str = typer.Option("sgd", "--optimizer", help="sgd (momentum 0.9, the paper's) or adam"),
    schedule: str = typer.Option("cosine", "--schedule", help="cosine or constant"),
    seed: int = typer.Option(0, "--seed"),
    limit: int = typer.Option(None, "--limit", min=1, help="First N training images"),
    subset: int = typer.Option(None, "--subset", min=1, help="Fine-tune on a seeded random N of the images left "
                               "after --val (the same validation images; for data-scaling curves)"),
    out: Path = typer.Option(Path("runs/efficientnet_lite0-masked.safetensors"), "--out", "-o"),
    checkpoint: Path = typer.Option(None, "--checkpoint", help="Per-epoch checkpoint (default: beside --out); "
                                    "a rerun resumes"),
    force: bool = ForceOpt,
    device: str = DeviceOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Mask-robust fine-tuning for PatchCleanser on the training side of the shared split."""
    from patchlab.defenses.finetune import FinetuneConfig, finetune

    cfg = FinetuneConfig(images=str(images), arch=arch, layers=layers, loss=loss, masks=masks, holes=holes,
                         hole_size=hole_size, epochs=epochs, batch_size=batch, lr=lr, optimizer=optimizer,
                         lr_schedule=schedule, temperature=temperature, worst_of=worst_of, mixup=mixup,
                         teacher=teacher, batchnorm=batchnorm, crop_scale=crop_scale, val=val, val_pairs=val_pairs,
                         seed=seed, limit=limit, subset=subset)
    _check("patchlab defend train masking", force, model=out)
    ckpt = checkpoint or out.with_suffix(".ckpt.pt")
    with rich_progress("fine-tune", enabled=not json_out) as cb:
        result = finetune(cfg, out, ckpt, device, progress=cb)
    if json_out:
        print_json(result)
        return
    typer.echo(f"wrote {result['out']} after {result['epochs']} epochs ({result['seconds']:.0f}s); load it with "
               f"--model {result['out']} --arch {arch}")
    for label in ("original", "fine-tuned"):
        if label in result.get("validation", {}):
            v = result["validation"][label]
            typer.echo(f"validation ({v['n']} training-side images kept out), {label}: proxy certified "
                       f"{100 * v['proxy_certified']:.1f}%, clean {100 * v['clean_accuracy']:.1f}%")


def train_adversarial_cmd(
    mnist: Path = MnistOpt,
    method: str = typer.Option("pgd", "--method", help="pgd (Madry), fgsm_rs (Wong) or standard"),
    eps: str = typer.Option("0.3", "--eps", help="Linf radius, e.g. 0.3 or 76/255"),
    steps: int = typer.Option(None, "--steps", min=1, help="PGD steps during training [default: 8]"),
    alpha: float = typer.Option(None, "--alpha", help="Step size (default: PGD 2.5 eps/steps, FGSM-RS 1.25 eps)"),
    epochs: int = typer.Option(None, "--epochs", min=1, help="[default: 60]"),
    batch: int = typer.Option(None, "--batch", min=1, help="[default: 100]"),
    lr: float = typer.Option(None, "--lr", help="Adam learning rate [default: 1e-3]"),
    train_n: int = typer.Option(None, "--train", min=100, help="Training share of the MNIST set [default: 8000]"),
    ramp: int = typer.Option(None, "--ramp", min=0, help="Grow eps linearly over the first N epochs [default: 10]"),
    model_kind: str = typer.Option(None, "--model", help="strided (Wong & Kolter) or cnn (2 conv 5x5 + pool) "
                                   "[default: strided]"),
    width: int = typer.Option(None, "--width", min=1, help="Channels of the first conv, the second has twice "
                              "[default: 32]"),
    hidden: int = typer.Option(None, "--hidden", min=1, help="Hidden units of the first linear layer [default: 256]"),
    shift: int = typer.Option(None, "--shift", min=0, help="Random shift of training digits, pixels [default: 2]"),
    lr_schedule: str = typer.Option(None, "--lr-schedule", help="cosine or constant [default: cosine]"),
    seed: int = typer.Option(0, "--seed"),
    out: Path = typer.Option(Path("runs/mnist-pgd.safetensors"), "--out", "-o"),
    checkpoint: Path = typer.Option(None, "--checkpoint", help="Default: beside --out; a rerun resumes"),
    force: bool = ForceOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Adversarial training of the MNIST CNN (early stopping against catastrophic overfitting)."""
    from patchlab.defenses.adversarial import AdvTrainConfig, train_adversarial
    from patchlab.errors import parse_fraction

    given = {"steps": steps, "epochs": epochs, "batch_size": batch, "lr": lr, "train": train_n, "ramp_epochs": ramp,
             "model": model_kind, "width": width, "hidden": hidden, "shift": shift, "lr_schedule": lr_schedule}
    # options left out take AdvTrainConfig's defaults (the measured recipe), so they live in one place
    cfg = AdvTrainConfig(method=method, eps=parse_fraction(eps, "--eps"), alpha=alpha, seed=seed,
                         **{k: v for k, v in given.items() if v is not None})
    _check("patchlab defend train adversarial", force, model=out)
    with rich_progress("train", enabled=not json_out) as cb:
        result = train_adversarial(cfg, _mnist(mnist), out, checkpoint or out.with_suffix(".ckpt.pt"), cb)
    if json_out:
        print_json(result)
        return
    typer.echo(f"wrote {result['out']}: {result['epochs_run']} epochs, best {result['best_epoch']}"
               f"{' (early-stopped)' if result['early_stopped'] else ''}, {result['cpu_seconds'] / 60:.1f} CPU-min, "
               f"{result['seconds'] / 60:.1f} min wall")


def train_smoothing_cmd(
    mnist: Path = MnistOpt,
    sigma: float = typer.Option(0.5, "--sigma", help="Gaussian noise level during training"),
    epochs: int = typer.Option(10, "--epochs", min=1),
    train_n: int = typer.Option(8000, "--train", min=100),
    seed: int = typer.Option(0, "--seed"),
    out: Path = typer.Option(Path("runs/mnist-noise.safetensors"), "--out", "-o"),
    checkpoint: Path = typer.Option(None, "--checkpoint", help="Default: beside --out; a rerun resumes"),
    force: bool = ForceOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Noise-augmented training of the MNIST CNN for randomized smoothing (Cohen 2019)."""
    from patchlab.defenses.smoothing import train_noisy_digits

    _check("patchlab defend train smoothing", force, model=out)
    with rich_progress("train", enabled=not json_out) as cb:
        result = train_noisy_digits(_mnist(mnist), sigma, out, epochs, train_n, seed=seed,
                                    checkpoint=checkpoint or out.with_suffix(".ckpt.pt"), progress=cb)
    if json_out:
        print_json(result)
        return
    typer.echo(f"wrote {result['out']} (sigma {sigma}, {result['epochs']} epochs, {result['seconds']:.0f}s)")


def certify_smoothing(
    model: str = typer.Option(..., "--model", "-m", help="A digits model (.safetensors from defend train) or a "
                              "zoo name / checkpoint for ImageNet"),
    arch: str = ArchOpt,
    mnist: Path = MnistOpt,
    images: Path = typer.Option(None, "--images", help="ImageNet folder (zoo models): held-out images"),
    sigma: list[float] = typer.Option([0.25], "--sigma", help="Noise level; repeat for a curve per sigma"),
    n0: int = typer.Option(100, "--n0", min=1),
    n: int = typer.Option(1000, "--n", min=1, help="Samples for the estimate"),
    alpha: float = typer.Option(0.001, "--alpha"),
    limit: int = typer.Option(200, "--limit", min=1),
    train_n: int = typer.Option(8000, "--train", help="MNIST: size of the training side (skipped)"),
    seed: int = typer.Option(0, "--seed"),
    batch: int = typer.Option(500, "--batch", min=1),
    plot: Path = typer.Option(None, "--plot", help="Write the certified-accuracy curves PNG here"),
    force: bool = ForceOpt,
    device: str = DeviceOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Certified accuracy against l2 radius of the smoothed classifier (Cohen 2019)."""
    from patchlab.defenses.plots import smoothing_figure
    from patchlab.defenses.smoothing import certified_curve
    from patchlab.errors import check_unit_interval

    check_unit_interval("--alpha", alpha, allow_zero=False)
    _check("patchlab defend certify smoothing", force, plot=plot)
    if model.endswith(".safetensors") and images is None and arch is None:
        from patchlab.data import load_mnist, split_digits
        from patchlab.models.digits import load_digits_model

        net = load_digits_model(model)
        test = split_digits(load_mnist(_mnist(mnist)), {"train": train_n, "test": -1}, seed=0)["test"]
        x, y, source = test.images[:limit], test.labels[:limit], "mnist test side"
    else:
        from patchlab.defenses.data import load_images, shared_split
        from patchlab.errors import PatchlabError

        if images is None:
            raise PatchlabError("a zoo model needs --images (an ImageNet folder)")
        net = _model(model, arch, device)
        data = shared_split(images, "heldout", limit)
        x, y, source = load_images(data.paths, net.input_size), data.labels, "imagenet held-out"
    curves = []
    with rich_progress("certify", enabled=not json_out) as cb:
        for s in sigma:
            curves.append(certified_curve(net, x, y, s, n0, n, alpha, seed=seed, batch_size=batch, progress=cb))
    result = {"model": getattr(net, "name", model), "data": source, "n": len(x), "n0": n0, "samples": n,
              "alpha": alpha, "seed": seed, "curves": curves}
    if plot:
        result["plot"] = _save_plot(smoothing_figure(result), plot, "patchlab defend certify smoothing")
    if json_out:
        print_json(result)
        return
    for c in curves:
        pts = ", ".join(f"r={r['radius']:g}: {100 * r['certified_accuracy']:.1f}%" for r in c["curve"][::2])
        typer.echo(f"sigma {c['sigma']}: {pts} (abstain {100 * c['abstain_rate']:.1f}%, {c['seconds']:.0f}s)")


def evaluate_transforms_cmd(
    images: Path = ImagesOpt,
    model: str = ModelOpt,
    arch: str = ArchOpt,
    defenses: str = typer.Option("none,jpeg,bitdepth,median,resize_pad,lgs", "--defenses"),
    eps: str = typer.Option("4/255", "--eps"),
    steps: int = typer.Option(10, "--steps", min=1),
    eot: int = typer.Option(8, "--eot", min=1, help="EOT draws per step for randomized defenses (>= 2)"),
    limit: int = typer.Option(32, "--limit", min=1),
    seed: int = typer.Option(0, "--seed"),
    plot: Path = typer.Option(None, "--plot", help="Write the side-by-side bar chart PNG here"),
    force: bool = ForceOpt,
    device: str = DeviceOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Input transformations under naive, transfer and BPDA(+EOT) PGD, side by side."""
    from patchlab.defenses.adaptive import evaluate_transforms
    from patchlab.defenses.plots import transforms_figure
    from patchlab.errors import parse_fraction

    from patchlab.defenses.registry import check_defenses

    names = check_defenses([d.strip() for d in defenses.split(",") if d.strip()], "transforms")
    _check("patchlab defend evaluate transforms", force, plot=plot)
    net = _model(model, arch, device)
    with rich_progress("transforms", enabled=not json_out) as cb:
        result = evaluate_transforms(net, images, names, parse_fraction(eps, "--eps"), steps, eot, limit, seed,
                                     progress=cb)
    if plot:
        result["plot"] = _save_plot(transforms_figure(result), plot, "patchlab defend evaluate transforms")
    if json_out:
        print_json(result)
        return
    for r in result["rows"]:
        typer.echo(f"{r['defense']:>10}: clean {100 * r['clean_accuracy']:5.1f}%  naive PGD "
                   f"{100 * r['naive_accuracy']:5.1f}%  transfer PGD {100 * r['transfer_accuracy']:5.1f}%  "
                   f"BPDA{'+EOT' if r['randomized'] else ''} {100 * r['bpda_accuracy']:5.1f}%")


def evaluate_adversarial_cmd(
    model: Path = typer.Argument(..., help="A digits model .safetensors (from defend train)"),
    mnist: Path = MnistOpt,
    eps: str = typer.Option("0.3", "--eps"),
    restarts: int = typer.Option(5, "--restarts", min=1, help="Restarts of PGD-40"),
    long_restarts: int = typer.Option(2, "--long-restarts", min=1, help="Restarts of PGD-100"),
    training: str = typer.Option(None, "--training-attack", help="Also run the model's training attack: pgd "
                                 "or fgsm_rs (with --training-steps)"),
    training_steps: int = typer.Option(None, "--training-steps", min=1, help="[default: the recipe's 8]"),
    limit: int = typer.Option(500, "--limit", min=1, help="Test-side images"),
    train_n: int = typer.Option(8000, "--train", help="Size of the training side (skipped)"),
    sweep: str = typer.Option(None, "--sweep", help="Also robust accuracy at these eps, e.g. 0.1,0.2,0.3,0.4 "
                              "(it must fall as eps grows)"),
    seed: int = typer.Option(0, "--seed"),
    json_out: bool = JsonOpt,
) -> None:
    """Accuracy of an MNIST model under FGSM, PGD-40/100 with restarts, CW-loss PGD, MI-FGSM and all together."""
    from patchlab.data import load_mnist, split_digits
    from patchlab.defenses.adversarial import evaluate_robustness
    from patchlab.errors import parse_fraction
    from patchlab.models.digits import load_digits_model

    net = load_digits_model(model).requires_grad_(False)
    test = split_digits(load_mnist(_mnist(mnist)), {"train": train_n, "test": -1}, seed=0)["test"]
    from patchlab.defenses.adversarial import AdvTrainConfig

    e = parse_fraction(eps, "--eps")
    train_cfg = (AdvTrainConfig(method=training, eps=e, **({"steps": training_steps} if training_steps else {}))
                 if training else None)
    with rich_progress("attacks", enabled=not json_out) as cb:
        result = evaluate_robustness(net, test.images[:limit], test.labels[:limit], e, restarts, train_cfg,
                                     seed=seed, long_restarts=long_restarts, progress=cb)
    if sweep:
        from patchlab.defenses.adversarial import eps_curve

        values = [parse_fraction(v, "--sweep") for v in sweep.split(",") if v.strip()]
        with rich_progress("eps sweep", enabled=not json_out) as cb:
            result["eps_curve"] = eps_curve(net, test.images[:limit], test.labels[:limit], values, restarts,
                                            seed=seed, progress=cb)
    result["model"] = str(model)
    if json_out:
        print_json(result)
        return
    for r in result["rows"]:
        typer.echo(f"{r['attack']:>30}: {100 * r['accuracy']:5.1f}%")
    for r in result.get("eps_curve", []):
        typer.echo(f"{'eps ' + format(r['eps'], 'g'):>30}: PGD-40 {100 * r['pgd40_accuracy']:5.1f}%, with CW-loss "
                   f"PGD {100 * r['robust_accuracy']:5.1f}%")


def train_patch_cmd(
    against: str = typer.Option(..., "--against", help="patchcleanser (EOT over its masks), lgs, jpeg or median "
                                "(BPDA)"),
    images: Path = ImagesOpt,
    init: Path = typer.Option(None, "--init", help="Start from this patch (e.g. the shipped one)"),
    area: float = typer.Option(0.1, "--area"),
    steps: int = typer.Option(200, "--steps", min=1),
    batch: int = typer.Option(8, "--batch", min=1),
    lr: float = typer.Option(0.003, "--lr"),
    masks: int = typer.Option(6, "--masks", min=1, help="PatchCleanser masks per side"),
    seed: int = typer.Option(0, "--seed"),
    out: Path = typer.Option(Path("runs/adaptive.png"), "--out", "-o"),
    resume: bool = typer.Option(False, "--resume", help="Continue from the checkpoint beside --out"),
    force: bool = ForceOpt,
    device: str = DeviceOpt,
    json_out: bool = JsonOpt,
) -> None:
    """An adaptive toaster patch trained against a defended efficientnet_lite0 (print EOT)."""
    from patchlab.defenses.adaptive_patch import train_adaptive_patch
    from patchlab.defenses.registry import check_defenses

    against, = check_defenses([against], "adaptive")
    with rich_progress("adaptive patch", enabled=not json_out) as cb:
        result = train_adaptive_patch(against, images, out, init, area, steps, batch, lr, masks, seed, device,
                                      resume, progress=cb, force=force)
    summary = {"out": str(result.path), "against": against, "steps": result.step,
               "seconds": result.meta["train_seconds"], "model": result.meta["models"][0]}
    if json_out:
        print_json(summary)
    else:
        typer.echo(f"wrote {result.path} after {result.step} steps ({summary['seconds']:.0f}s); evaluate it with "
                   f"patchlab defend evaluate patch {result.path} --images {images}")


def register(app: typer.Typer) -> None:
    group = add_group(app, "defend", "Defenses: certify (PatchCleanser, randomized smoothing), train robust models, "
                      "evaluate defenses against patches and adaptive attacks.")
    add_group(group, "certify", "Certified defenses.", patchcleanser=certify_patchcleanser, smoothing=certify_smoothing)
    add_group(group, "evaluate", "Defenses against patches and adaptive attacks.", patch=evaluate_patch_cmd,
              transforms=evaluate_transforms_cmd, adversarial=evaluate_adversarial_cmd)
    add_group(group, "train", "Train robust models.", masking=train_masking, adversarial=train_adversarial_cmd,
              smoothing=train_smoothing_cmd, patch=train_patch_cmd)
