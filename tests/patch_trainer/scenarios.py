"""Tiny patch runs that exercise every branch of the trainer, for checking that a rewrite of it changes nothing.

`run_scenarios(train_patch, folder, lite0, out)` runs each scenario with the given `train_patch` function and returns
{name: {"rgba": tensor, "history": [...], "meta": {...}, "step": n}} with wall-clock fields removed, so two
implementations' results compare with `==` / `torch.equal` (configs go in as dicts: the reference module has its own
PatchConfig class). The `old_ckpt_*` scenarios resume from checkpoints that
`make_checkpoints` wrote (with whichever implementation is the reference).

Reference: the trainer before its PatchTrainer refactor is `git show REFERENCE_COMMIT:patchlab/patch/train.py`.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import torch

REFERENCE_COMMIT = "efd4c63"  # main before the PatchTrainer refactor
REPO = Path(__file__).resolve().parents[2]
TIMING_KEYS = ("seconds", "train_seconds")


def load_reference_trainer(workdir: Path):
    """The pre-refactor `patchlab/patch/train.py` as a module of its own (it imports today's patchlab otherwise)."""
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{REFERENCE_COMMIT}:patchlab/patch/train.py"],
                            check=True, capture_output=True, text=True).stdout
    path = workdir / "reference_patch_train.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("reference_patch_train", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def scene_folders(imagenet_dir: Path, root: Path) -> tuple[Path, Path]:
    """8 shared ImageNet photos twice: labelled (`<wnid>_<name>.jpg`) and unlabelled (`scene<i>.jpg`)."""
    files = sorted(imagenet_dir.iterdir())[::87][:8]
    labelled, unlabelled = root / "labelled", root / "unlabelled"
    for folder in (labelled, unlabelled):
        folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(files):
        for link in (labelled / f.name, unlabelled / f"scene{i}{f.suffix}"):
            if not link.exists():
                link.symlink_to(f)
    return labelled, unlabelled


def _base(folder: Path, out: Path, **kw) -> dict:
    cfg = dict(images=str(folder), patch_size=32, batch=3, steps=5, holdout=0.25, checkpoint_every=2, log_every=1,
               out=str(out), device="cpu")
    cfg.update(kw)
    return cfg


def _clean(result) -> dict:
    def strip(entry):
        return {k: v for k, v in entry.items() if k not in TIMING_KEYS} if isinstance(entry, dict) else entry

    meta = strip(dict(result.meta))
    meta["history"] = [strip(h) for h in meta["history"]]
    meta.pop("patchlab_version", None)
    return {"rgba": result.rgba.clone(), "history": [strip(h) for h in result.history], "meta": meta,
            "step": result.step, "stopped": result.stopped}


def _models(lite0, names):
    from patchlab.models import Classifier

    pool = {"efficientnet_lite0": lite0,
            "lite0_at_192": Classifier(lite0.net, lite0.normalize, "lite0_at_192", 192, lite0.labels)}
    return [pool[n] for n in names]


def configs(labelled: Path, unlabelled: Path, out: Path) -> dict[str, dict]:
    init = out / "init_source.png"
    return {
        "targeted_print_monitor": _base(labelled, out / "a.png", eot="print", eval_every=2, eval_images=2, steps=5),
        "untargeted_labelled": _base(labelled, out / "b.png", target=None, eot="digital", steps=3),
        "untargeted_unlabelled": _base(unlabelled, out / "c.png", target="none", eot="webcam", steps=3),
        "init_success_decay_circle": _base(labelled, out / "d.png", init=str(init), loss="success",
                                           loss_temperature=3.0, lr=0.05, lr_final=0.2, decay_start=1, steps=4,
                                           shape="circle", nps_weight=0.5, tv_weight=10.0, tv_floor=0.0),
        "ensemble_two_sizes_bf16": _base(labelled, out / "e.png", models=["efficientnet_lite0", "lite0_at_192"],
                                         steps=2, batch=2, bf16=True, holdout=0.0),
    }


def write_init_patch(out: Path) -> None:
    from patchlab.patch import save_patch

    g = torch.Generator().manual_seed(11)
    save_patch(out / "init_source.png", torch.rand(3, 40, 40, generator=g), torch.ones(1, 40, 40), {})


def run_scenarios(train_patch, labelled: Path, unlabelled: Path, lite0, out: Path) -> dict[str, dict]:
    from patchlab.patch import PatchConfig

    out.mkdir(parents=True, exist_ok=True)
    write_init_patch(out)
    results = {}
    for name, cfg in configs(labelled, unlabelled, out).items():
        config = PatchConfig(**cfg)
        results[name] = _clean(train_patch(config.to_dict(), models=_models(lite0, config.models), force=True))
    return results


def make_checkpoints(train_patch, labelled: Path, lite0, out: Path) -> dict[str, Path]:
    """Checkpoints at step 2 of 5: one by a stop event (targeted, with held-out monitoring), one by reaching `steps`
    of a shorter run (untargeted)."""
    from patchlab.patch import PatchConfig

    out.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()

    def progress(step, total, metrics):
        if step == 2 and "loss" in metrics:
            stop.set()

    a = PatchConfig(**_base(labelled, out / "ra.png", eot="print", eval_every=2, eval_images=2))
    part = train_patch(a.to_dict(), progress=progress, stop=stop, models=[lite0], force=True)
    assert part.stopped and part.step == 2
    b = PatchConfig(**_base(labelled, out / "rb.png", target=None, eot="digital", steps=2))
    train_patch(b.to_dict(), models=[lite0], force=True)
    return {"old_ckpt_stopped": a.checkpoint_path(), "old_ckpt_finished": b.checkpoint_path()}


def resume_from(train_patch, checkpoints: dict[str, Path], labelled: Path, lite0, out: Path) -> dict[str, dict]:
    """Copy each checkpoint beside a fresh output and resume it to step 5 (the second with a decay from step 2)."""
    from patchlab.patch import PatchConfig

    out.mkdir(parents=True, exist_ok=True)
    settings = {"old_ckpt_stopped": dict(eot="print", eval_every=2, eval_images=2),
                "old_ckpt_finished": dict(target=None, eot="digital", lr_final=0.1, decay_start=2)}
    results = {}
    for name, ckpt in checkpoints.items():
        cfg = PatchConfig(**_base(labelled, out / f"{name}.png", **settings[name]))
        shutil.copyfile(ckpt, cfg.checkpoint_path())
        results[name] = _clean(train_patch(cfg.to_dict(), resume=True, models=[lite0], force=True))
    return results


def compare(reference: dict[str, dict], candidate: dict[str, dict]) -> list[str]:
    """Every difference, one line each (an empty list when the runs are identical)."""
    problems = []
    for name, ref in reference.items():
        got = candidate.get(name)
        if got is None:
            problems.append(f"{name}: missing")
            continue
        if not torch.equal(ref["rgba"], got["rgba"]):
            problems.append(f"{name}: patch differs, max |diff| {float((ref['rgba'] - got['rgba']).abs().max()):.3g}")
        for key in ("history", "meta", "step", "stopped"):
            if ref[key] != got[key]:
                problems.append(f"{name}: {key} differs")
    return problems
