"""Live-pipeline benchmark: decoded 640x480 BGR frame -> preprocess -> classify -> overlay, per-frame latency and
sustained FPS, against a naive pipeline (the reference efficientnet_lite_pytorch in eager mode with PIL
preprocessing) and the physical limit (the bare inference call of the fastest backend on a ready input tensor) in
the same run. The pipelines run in interleaved rounds so that load from other processes on a shared machine hits
all of them alike; each pipeline's figures are also given for its best round (`best`), which is what targets are
judged on (other load only ever adds time).
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch

from patchlab.bench.suite import Measured, benchmark
from patchlab.bench.targets import Target
from patchlab.capture.inference import load_backend, onnxruntime_available
from patchlab.capture.overlay import draw_overlay
from patchlab.capture.pipeline import FrameResult, LiveState, centre_square, process_frame
from patchlab.capture.virtual_patch import Patch
from patchlab.progress import ProgressFn
from patchlab.simulate.scene import SyntheticScene


def naive_pipeline(model_name: str, device: str = "cpu") -> Callable[[np.ndarray], FrameResult]:
    """What a first live demo does: PIL + torchvision transforms, the reference model in eager mode, no_grad."""
    import cv2
    from PIL import Image
    from torchvision import transforms

    from patchlab.bench.models import ReferenceClassifier
    from patchlab.data import imagenet_classes

    ref = ReferenceClassifier(model_name).to(device).eval()
    size = {"efficientnet_lite0": 224, "efficientnet_lite1": 240, "efficientnet_lite2": 260}[model_name]
    transform = transforms.Compose([transforms.Resize(int(size / 0.875)), transforms.CenterCrop(size),
                                    transforms.ToTensor()])
    labels = list(imagenet_classes().names)
    t0 = time.perf_counter()

    def run(frame_bgr: np.ndarray) -> FrameResult:
        start = time.perf_counter()
        image = Image.fromarray(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB))
        x = transform(image).unsqueeze(0).to(device)
        with torch.no_grad():
            probs = ref(x).softmax(-1)[0].cpu()
        values, idx = probs.topk(5)
        top5 = [{"index": int(i), "label": labels[int(i)], "prob": float(v)} for v, i in zip(values, idx)]
        result = FrameResult(index=0, time_s=start - t0, top5=top5)
        out = frame_bgr.copy()
        result.latency_ms = (time.perf_counter() - start) * 1000
        draw_overlay(out, result, centre_square(out.shape))
        result.latency_ms = (time.perf_counter() - start) * 1000
        return result

    return run


def _stats(latencies_ms: list[float], wall_s: float) -> dict:
    lat = np.asarray(latencies_ms)
    return {"frames": int(lat.size), "fps": float(lat.size / wall_s), "mean_ms": float(lat.mean()),
            "p50_ms": float(np.percentile(lat, 50)), "p95_ms": float(np.percentile(lat, 95)),
            "p99_ms": float(np.percentile(lat, 99)), "max_ms": float(lat.max())}


BARE = "bare inference call (limit)"
NAIVE = "naive (reference eager + PIL)"


def bare_inference(backend) -> Callable[[np.ndarray], float]:
    """The physical limit of a pipeline on `backend`: only its inference call, on an input already in the model's
    layout (float32 NCHW in [0, 1]); no frame conversion, no read-out, no overlay."""
    size = backend.input_size
    x = np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32)
    if backend.kind == "onnx":
        feed = {backend.input_name: x}

        def run(_frame: np.ndarray) -> float:
            start = time.perf_counter()
            backend.session.run(None, feed)
            return (time.perf_counter() - start) * 1000
        return run
    xt = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)

    def run_eager(_frame: np.ndarray) -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            backend.model(xt)
        return (time.perf_counter() - start) * 1000
    return run_eager


def bench_camera(model: str = "efficientnet_lite0", frames: int = 300, rounds: int = 5, warmup: int = 20,
                 threads: int = 1, size: tuple[int, int] = (640, 480), with_markers: bool = True,
                 progress: ProgressFn | None = None) -> dict:
    """Time each pipeline on the same pre-decoded frames; returns {pipeline: stats} plus ratios vs naive."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _bench_camera(model, frames, rounds, warmup, threads, size, with_markers, progress)
    finally:  # the thread count is process-wide: leave it as it was for whatever runs next
        torch.set_num_threads(before)


def _bench_camera(model: str, frames: int, rounds: int, warmup: int, threads: int, size: tuple[int, int],
                  with_markers: bool, progress: ProgressFn | None) -> dict:
    scene = SyntheticScene(size=size, seed=0)
    scene_frames = [scene.frame(i).image for i in range(48)]
    pipelines: dict[str, Callable[[np.ndarray], float]] = {}
    from patchlab.models import load_model

    net = load_model(model, "cpu")
    backends = {"eager": load_backend(net, "eager")}
    if onnxruntime_available():
        backends["onnx"] = load_backend(net, "onnx", threads=threads)
    for kind, backend in backends.items():
        state = LiveState(backend, target="toaster")
        pipelines[f"patchlab {kind}"] = lambda f, s=state: process_frame(f, s)[1].latency_ms
    if with_markers and "onnx" in backends:
        rng = np.random.default_rng(0)
        patch = Patch.from_rgba(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), target="toaster")
        state = LiveState(backends["onnx"], patch=patch, virtual=True)
        pipelines["patchlab onnx + ArUco + virtual patch"] = lambda f, s=state: process_frame(f, s)[1].latency_ms
    naive = naive_pipeline(model)
    pipelines[NAIVE] = lambda f: naive(f).latency_ms
    pipelines[BARE] = bare_inference(backends.get("onnx") or backends["eager"])

    for run in pipelines.values():  # warm-up: first-call allocations, ORT graph init
        for i in range(warmup):
            run(scene_frames[i % len(scene_frames)])
    per_round = max(1, frames // rounds)
    latencies: dict[str, list[list[float]]] = {name: [] for name in pipelines}
    walls: dict[str, list[float]] = {name: [] for name in pipelines}
    step = 0
    for r in range(rounds):
        for name, run in pipelines.items():
            lat = []
            start = time.perf_counter()
            for i in range(per_round):
                lat.append(run(scene_frames[(r * per_round + i) % len(scene_frames)]))
            walls[name].append(time.perf_counter() - start)
            latencies[name].append(lat)
            step += 1
            if progress:
                progress(step, rounds * len(pipelines), {"pipeline": name})
    result = {"model": model, "frame": f"{size[0]}x{size[1]} BGR uint8", "threads": threads, "rounds": rounds,
              "torch": torch.__version__, "backends": {k: b.describe() for k, b in backends.items()},
              "pipelines": {}}
    for name in pipelines:
        stats = _stats([v for lat in latencies[name] for v in lat], sum(walls[name]))
        by_round = [_stats(lat, wall) for lat, wall in zip(latencies[name], walls[name])]
        stats["best"] = min(by_round, key=lambda s: s["mean_ms"])  # the round least disturbed by other load
        result["pipelines"][name] = stats
    naive_stats = result["pipelines"][NAIVE]
    for name, stats in result["pipelines"].items():
        stats["speedup_vs_naive"] = naive_stats["mean_ms"] / stats["mean_ms"]
        stats["speedup_p50_vs_naive"] = naive_stats["p50_ms"] / stats["p50_ms"]
        stats["best"]["speedup_vs_naive"] = naive_stats["best"]["mean_ms"] / stats["best"]["mean_ms"]
    return result


def format_table(result: dict) -> str:
    rows = ["| pipeline | FPS (sustained) | p50 ms | p95 ms | p99 ms | speed-up vs naive (mean / p50) | best round: "
            "FPS / p95 ms / vs naive |", "|---|---|---|---|---|---|---|"]
    for name, s in result["pipelines"].items():
        b = s["best"]
        rows.append(f"| {name} | {s['fps']:.1f} | {s['p50_ms']:.1f} | {s['p95_ms']:.1f} | {s['p99_ms']:.1f} | "
                    f"{s['speedup_vs_naive']:.2f}x / {s['speedup_p50_vs_naive']:.2f}x | {b['fps']:.1f} / "
                    f"{b['p95_ms']:.1f} / {b['speedup_vs_naive']:.2f}x |")
    return "\n".join(rows)


@benchmark("camera", "Live camera pipeline: patchlab vs a naive pipeline and the bare inference call",
           needs=("cv2",), data=False)
def run_camera_benchmark(quick: bool, images=None, frames: int | None = None, rounds: int | None = None,
                         threads: int = 1) -> Measured:
    """Targets (issue #14): >= 60 FPS, p95 <= 25 ms, >= 3x the naive pipeline, within 1.2x of the bare inference
    call; judged on each pipeline's best round."""
    rounds = rounds or (3 if quick else 5)
    r = bench_camera("efficientnet_lite0", frames=frames or (60 if quick else 300), rounds=rounds, threads=threads)
    name = "patchlab onnx" if "patchlab onnx" in r["pipelines"] else "patchlab eager"
    best, bare, naive = r["pipelines"][name]["best"], r["pipelines"][BARE]["best"], r["pipelines"][NAIVE]["best"]
    targets = [Target(f"camera ({name}): FPS, best round", best["fps"], ">=", 60.0, "FPS"),
               Target(f"camera ({name}): p95 latency, best round", best["p95_ms"], "<=", 25.0, "ms"),
               Target(f"camera ({name}) speed-up vs naive (mean latency)", best["speedup_vs_naive"], ">=", 3.0, "x",
                      f"naive {naive['fps']:.1f} FPS"),
               Target(f"camera ({name}) / bare inference call (mean latency)", best["mean_ms"] / bare["mean_ms"], "<=",
                      1.2, "x", f"bare call {bare['mean_ms']:.2f} ms, pipeline {best['mean_ms']:.2f} ms")]
    head = (f"{r['frame']} frames, {r['threads']} threads, {rounds} interleaved rounds, torch {r['torch']}; backends "
            f"{r['backends']}")
    return Measured(targets, head + "\n\n" + format_table(r), r)
