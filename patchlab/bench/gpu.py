"""The GPU check (scripts/gpu_check.sh, `patchlab bench gpu`): in one run of at most ~8 minutes, fine-tune the
shipped toaster patch on the GPU at batch >= 64 (the shipped run's settings, new EOT draws, cosine decay over the
run), score it on the held-out shared images at 10% area under the print preset (the shipped patch beside it, same
draws), and time patch-training steps per second and live inference FPS (the camera's eager backend: frame ->
pinned host buffer -> GPU -> logits -> host, batch 1) and batched inference images per second.

The number of steps fits the time budget: 10 calibration steps measure the step rate, then the run is sized to
`train_seconds`. Issue #20's goal: >= 90% held-out success for the 10%-area toaster patch under the print preset.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from patchlab.progress import ProgressFn

SHIPPED = Path(__file__).resolve().parents[2] / "printables" / "toaster_efficientnet_lite0.png"
GOAL = 0.90
CALIBRATION_STEPS = 10


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def inference_fps(model, frames: int = 300, batch: int = 64, warmup: int = 20) -> dict:
    """Batch-1 live inference through the camera's eager backend (uint8 HWC frame in, logits out) and batched
    images/s of the bare model, on the model's device."""
    import numpy as np

    from patchlab.capture.inference import EagerBackend

    device = model.device
    backend = EagerBackend(model)
    size = model.input_size
    rng = np.random.default_rng(0)
    stream = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(8)]
    for i in range(warmup):
        backend.logits(stream[i % len(stream)])
    start = time.perf_counter()
    for i in range(frames):
        backend.logits(stream[i % len(stream)])  # ends with a device -> host copy: every frame is complete
    live = frames / (time.perf_counter() - start)
    x = torch.rand(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    reps = max(3, frames // batch)
    with torch.inference_mode():
        for _ in range(3):
            model(x)
        _sync(device)
        start = time.perf_counter()
        for _ in range(reps):
            model(x)
        _sync(device)
    batched = reps * batch / (time.perf_counter() - start)
    return {"live_fps": live, "live_frames": frames, "batched_images_per_s": batched,
            "batch": batch, "backend": backend.describe()}


def gpu_check(images: str | Path, out: str | Path, device: str = "cuda", batch: int = 64, train_seconds: float = 240,
              max_steps: int = 4000, draws: int = 3, bf16: bool = False, smoke: bool = False,
              progress: ProgressFn | None = None) -> dict:
    """Fine-tune, score, time. `smoke`: a tiny CPU-sized run of the same code path (2 steps, 8 images, a few frames)
    that proves the script works end to end; its numbers mean nothing."""
    from patchlab.artifacts import check_outputs, write_json
    from patchlab.models import resolve_device
    from patchlab.patch.io import load_patch, save_patch
    from patchlab.patch.score import evaluate_patch
    from patchlab.patch.train import PatchConfig, PatchTrainer

    start = time.perf_counter()
    dev = resolve_device(device)
    out = Path(out)
    patch_out, json_out = out / "toaster_gpu.png", out / "gpu_check.gpu.json"
    from patchlab.patch.io import sidecar_path

    # its own earlier outputs are replaced; anything else at these paths is refused
    check_outputs({patch_out: "patch", sidecar_path(patch_out): "patch-sidecar"}, force=True)
    check_outputs({json_out: "gpu-check"}, force=True)
    _, shipped_meta = load_patch(SHIPPED)
    settings = {**shipped_meta["config"], "images": str(images), "batch": batch, "device": str(dev),
                "init": str(SHIPPED),
                "out": None, "eval_every": 0, "seed": shipped_meta["config"]["seed"] + 1, "lr_final": 0.1,
                "decay_start": 0, "bf16": bf16, "steps": max_steps, "checkpoint_every": 10**9}
    if smoke:
        settings.update(batch=min(batch, 4), steps=2)
    trainer = PatchTrainer(PatchConfig.from_dict(settings)).prepare()
    t0 = time.perf_counter()
    calibration = min(CALIBRATION_STEPS, trainer.cfg.steps)
    for _ in range(calibration):
        trainer.step()
    _sync(dev)
    rate = calibration / (time.perf_counter() - t0)
    if not smoke:  # size the run to the budget; the lr schedule follows the new length
        trainer.cfg.steps = int(min(max_steps, max(calibration, rate * train_seconds)))
    t1 = time.perf_counter()
    while trainer.steps_taken < trainer.cfg.steps:
        metrics = trainer.step()
        if progress and trainer.steps_taken % 10 == 0:
            progress(trainer.steps_taken, trainer.cfg.steps, {"phase": "train", **metrics})
    _sync(dev)
    timed = trainer.steps_taken - calibration
    steps_per_s = timed / (time.perf_counter() - t1) if timed else rate
    trainer.elapsed = time.perf_counter() - t0
    meta = trainer.meta()
    save_patch(patch_out, trainer.rgba()[:3], trainer.rgba()[3:], meta)

    limit = 8 if smoke else None
    scores = {}
    for name, path in (("fine_tuned", patch_out), ("shipped", SHIPPED)):
        r = evaluate_patch(path, images, areas=[0.10], eot="print", draws=1 if smoke else draws, baselines=False,
                           limit=limit, device=dev)
        row = next(iter(r["models"].values()))["curve"][0]
        scores[name] = {"success_rate": row["success_rate"], "ci95": row["ci95"], "k": row["k"], "n": row["n"],
                        "images": r["images"], "seconds": r["seconds"]}
        if progress:
            progress(1, 1, {"phase": f"eval {name}", "success": row["success_rate"]})
    fps = inference_fps(trainer.models[0], frames=5 if smoke else 300, batch=4 if smoke else 64,
                        warmup=2 if smoke else 20)
    result = {"device": str(dev), "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
              "torch": torch.__version__, "smoke": smoke, "batch": trainer.cfg.batch, "bf16": bf16,
              "steps": trainer.steps_taken, "steps_per_s": steps_per_s,
              "samples_per_s": steps_per_s * trainer.cfg.batch,
              "train_seconds": trainer.elapsed, "area": 0.10, "preset": "print", "draws": 1 if smoke else draws,
              "success_rate": scores["fine_tuned"]["success_rate"], "ci95": scores["fine_tuned"]["ci95"],
              "n": scores["fine_tuned"]["n"], "shipped": scores["shipped"], "goal": GOAL,
              "goal_met": scores["fine_tuned"]["success_rate"] >= GOAL, **fps, "patch": str(patch_out),
              "seconds": time.perf_counter() - start}
    write_json(json_out, result, kind="gpu-check")
    result["json"] = str(json_out)
    return result
