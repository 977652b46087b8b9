"""Train many small digit models (PATE's teachers, LiRA's shadow models) in parallel processes.

Every job names its data by indices into one shared (x, y), which each worker receives once. A job runs with one
torch thread whatever the process count, and its randomness comes only from its own seed, so the same jobs give
bit-identical models with workers=1 (in this process) or workers=8. With `out_dir`, each finished model is saved
(`<name>.digits.safetensors` and a `<name>.job.json` sidecar holding the job's key) as soon as it is done, and a rerun
reuses the ones that match: an interrupted ensemble resumes where it stopped. Files of other kinds at those paths
are refused before any training starts (patchlab.artifacts.check_outputs).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from patchlab.artifacts import check_outputs, read_json, write_json
from patchlab.errors import PatchlabError

from patchlab.progress import ProgressFn


@dataclass
class TrainJob:
    """One model: `model` = make_digits_model kwargs (kind, size, seed, ...); `trainer` = "fit" (settings are
    FitConfig fields), "fit-features" (the same, but the data are the model's fixed features and only its
    `trainable` part is trained, e.g. a linear model on ScatterNet features) or "dpsgd" (DPSGDConfig fields)."""

    name: str
    indices: list[int]
    model: dict
    trainer: str = "fit"
    settings: dict = field(default_factory=dict)
    # self-training ("fit" and "fit-features"): `self_training` rounds of pseudo-labels on x[unlabelled] that the
    # model predicts with probability >= pseudo_label (e.g. PATE's public inputs; their y is never read)
    unlabelled: list[int] = field(default_factory=list)
    self_training: int = 0
    pseudo_label: float = 0.9

    def key(self, data_key: str) -> str:
        digest = lambda v: hashlib.sha256(json.dumps(v).encode()).hexdigest()  # noqa: E731
        job = {**asdict(self), "indices": digest(self.indices), "data": data_key}
        if self.self_training:
            job["unlabelled"] = digest(self.unlabelled)
        else:  # the keys of jobs without self-training stay as they were before it existed
            for k in ("unlabelled", "self_training", "pseudo_label"):
                job.pop(k)
        return hashlib.sha256(json.dumps(job, sort_keys=True).encode()).hexdigest()[:16]


def data_key(x: torch.Tensor, y: torch.Tensor) -> str:
    h = hashlib.sha256()
    h.update(x.detach().cpu().contiguous().numpy().tobytes())
    h.update(y.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


_DATA: dict = {}


def _init_worker(x: torch.Tensor, y: torch.Tensor) -> None:
    torch.set_num_threads(1)
    _DATA["x"], _DATA["y"] = x, y


def _run_job(job: TrainJob, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> tuple[dict, dict]:
    """Train one job; returns (state_dict, info)."""
    from patchlab.models.digits import fit, make_digits_model

    x = _DATA["x"] if x is None else x
    y = _DATA["y"] if y is None else y
    idx = torch.as_tensor(job.indices, dtype=torch.long)
    net = make_digits_model(**job.model)
    if job.trainer in ("fit", "fit-features") and job.self_training:
        from patchlab.models.digits import fit_self_training, predict_logits

        part = (lambda m: m.trainable) if job.trainer == "fit-features" else (lambda m: m)

        def train(xs: torch.Tensor, ys: torch.Tensor):
            model = make_digits_model(**job.model)
            settings = dict(job.settings)
            if settings.get("batch_size") == len(idx):  # full-batch training stays full-batch on the larger set
                settings["batch_size"] = len(xs)
            fit(part(model), xs, ys, **settings)
            return model

        t0 = time.perf_counter()
        net, used = fit_self_training(train, x[idx], y[idx], x[torch.as_tensor(job.unlabelled, dtype=torch.long)],
                                      job.self_training, job.pseudo_label, lambda m, u: predict_logits(part(m), u))
        info = {"seconds": time.perf_counter() - t0, "pseudo_labelled": used}
    elif job.trainer == "fit":
        res = fit(net, x[idx], y[idx], **job.settings)
        info = {"seconds": res.seconds, "train_accuracy": res.history[-1]["train_accuracy"] if res.history else None}
    elif job.trainer == "fit-features":
        res = fit(net.trainable, x[idx], y[idx], **job.settings)
        info = {"seconds": res.seconds, "train_accuracy": res.history[-1]["train_accuracy"] if res.history else None}
    elif job.trainer == "dpsgd":
        from patchlab.privacy.dpsgd import DPSGDConfig, train_dpsgd

        res = train_dpsgd(net, x[idx], y[idx], DPSGDConfig.from_dict(job.settings))
        net = res.model
        info = {"seconds": res.seconds, "epsilon": res.epsilon, "epsilons": res.epsilons,
                "noise_multiplier": res.noise_multiplier, "sample_rate": res.sample_rate, "steps": res.steps}
    else:
        raise PatchlabError(f"unknown trainer '{job.trainer}' (choose from fit, fit-features, dpsgd)")
    return {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}, {**info, "n": len(idx)}


def _run_local(job: TrainJob, x: torch.Tensor, y: torch.Tensor) -> tuple[dict, dict]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same arithmetic as in a worker process
    try:
        return _run_job(job, x, y)
    finally:
        torch.set_num_threads(threads)


def _paths(out_dir: Path, name: str) -> tuple[Path, Path]:
    return out_dir / f"{name}.digits.safetensors", out_dir / f"{name}.job.json"


def output_paths(jobs: list[TrainJob], out_dir: str | Path) -> dict[Path, str]:
    """{path: artifact kind} of everything train_many saves for `jobs` (for patchlab.artifacts.check_outputs)."""
    out = {}
    for job in jobs:
        model_path, meta_path = _paths(Path(out_dir), job.name)
        out[model_path], out[meta_path] = "digits-model", "trained-model-job"
    return out


def _load_done(job: TrainJob, key: str, out_dir: Path | None):
    if out_dir is None:
        return None
    model_path, meta_path = _paths(out_dir, job.name)
    if not meta_path.is_file():  # the names before models and sidecars had their own suffixes
        model_path, meta_path = out_dir / f"{job.name}.safetensors", out_dir / f"{job.name}.json"
    if not (model_path.is_file() and meta_path.is_file()):
        return None
    meta = read_json(meta_path)
    if not isinstance(meta, dict) or meta.get("key") != key:
        return None
    from patchlab.models.digits import load_digits_model

    return load_digits_model(model_path), meta["info"]


def _save_done(job: TrainJob, key: str, out_dir: Path, model, info: dict) -> None:
    from patchlab.models.digits import save_digits_model

    model_path, meta_path = _paths(out_dir, job.name)
    save_digits_model(model, model_path, "digits-model")
    write_json(meta_path, {"key": key, "job": {**asdict(job), "indices": len(job.indices)}, "info": info},
               kind="trained-model-job", indent=1)


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def train_many(jobs: list[TrainJob], x: torch.Tensor, y: torch.Tensor, *, workers: int | None = None,
               out_dir: str | Path | None = None, progress: ProgressFn | None = None,
               stop: threading.Event | None = None) -> tuple[list, list[dict]]:
    """Train every job; returns (models in job order, infos). workers=1 trains in this process; more use a
    spawn-started process pool (safe with torch's threads). Saved models with matching keys are reused."""
    from patchlab.models.digits import make_digits_model

    if len({j.name for j in jobs}) != len(jobs):
        raise PatchlabError("train_many: job names must be unique")
    workers = default_workers() if workers is None else int(workers)
    if workers < 1:
        raise PatchlabError(f"workers must be >= 1, got {workers}")
    out = Path(out_dir) if out_dir else None
    if out is not None:  # our own earlier models are reused or replaced; anything else there is refused
        check_outputs(output_paths(jobs, out), force=True)
    dkey = data_key(x, y)
    keys = [j.key(dkey) for j in jobs]
    models: list = [None] * len(jobs)
    infos: list[dict] = [{}] * len(jobs)
    todo = []
    for i, (job, key) in enumerate(zip(jobs, keys)):
        done = _load_done(job, key, out)
        if done is None:
            todo.append(i)
        else:
            models[i], infos[i] = done[0], {**done[1], "reused": True}
    finished = len(jobs) - len(todo)
    if progress is not None:
        progress(finished, len(jobs), {"reused": finished})

    def _finish(i: int, state: dict, info: dict) -> None:
        nonlocal finished
        net = make_digits_model(**{**jobs[i].model, "seed": None})
        net.load_state_dict(state)
        net.eval()
        models[i], infos[i] = net, info
        if out is not None:
            _save_done(jobs[i], keys[i], out, net, info)
        finished += 1
        if progress is not None:
            progress(finished, len(jobs), {"model": jobs[i].name})

    if workers == 1 or len(todo) <= 1:
        for i in todo:
            if stop is not None and stop.is_set():
                break
            _finish(i, *_run_local(jobs[i], x, y))
    else:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=ctx, initializer=_init_worker,
                                 initargs=(x.cpu(), y.cpu())) as pool:
            pending = {pool.submit(_run_job, jobs[i]): i for i in todo}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED, timeout=1.0)
                for fut in done:
                    i = pending.pop(fut)
                    try:
                        state, info = fut.result()
                    except BrokenProcessPool:
                        raise PatchlabError("a training process died (out of memory, or a script that starts "
                                            "workers without an `if __name__ == '__main__':` guard); finished "
                                            "models are kept in out_dir; rerun, or use workers=1") from None
                    _finish(i, state, info)
                if stop is not None and stop.is_set():
                    for fut in pending:
                        fut.cancel()
                    break
    if stop is None or not stop.is_set():
        missing = [jobs[i].name for i, m in enumerate(models) if m is None]
        if missing:
            raise PatchlabError(f"train_many: {len(missing)} models did not finish ({missing[0]}, ...)")
    return models, infos
