"""Fast single-frame inference for the live classifier: ONNX Runtime (optional extra) or channels_last eager torch.

Both backends take the model's input as an RGB uint8 (S, S, 3) array and return float32 logits (1000,).
The ONNX graph is exported from the zoo `Classifier` (normalisation included), cached on disk, and checked
against the eager model every time it is loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import threading
import warnings
from pathlib import Path

import numpy as np
import torch

from patchlab.errors import PatchlabError

ONNX_TOLERANCE = 1e-3  # max |logit difference| accepted between the exported graph and the eager model


def cache_dir() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))
    root = os.environ.get("PATCHLAB_CACHE") or os.path.join(xdg, "patchlab")
    return Path(root) / "onnx"


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


class EagerBackend:
    """The zoo model in inference mode with channels_last input; a lock makes one instance safe across threads."""

    kind = "eager"

    def __init__(self, model):
        self.model = model
        self.name, self.input_size, self.labels = model.name, int(model.input_size), list(model.labels)
        self.device = model.device
        self._lock = getattr(model, "lock", None) or threading.Lock()
        self._staging: torch.Tensor | None = None  # a pinned frame buffer, reused for every frame (CUDA only)

    def logits(self, rgb: np.ndarray) -> np.ndarray:
        from patchlab.models import to_device

        frame = torch.from_numpy(np.ascontiguousarray(rgb))
        with self._lock:
            if self.device.type == "cuda" and (self._staging is None or self._staging.shape != frame.shape):
                self._staging = torch.empty(frame.shape, dtype=frame.dtype).pin_memory()
            x = to_device(frame, self.device, self._staging)  # the staging buffer is free again after .cpu() below
            x = x.permute(2, 0, 1).unsqueeze(0).float().div_(255.0).contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():  # inference_mode is thread-local: enter it here
                out = self.model(x)
            return out[0].float().cpu().numpy()

    def describe(self) -> str:
        return f"eager torch ({self.device}, channels_last, {torch.get_num_threads()} threads)"


class OnnxBackend:
    """An ONNX Runtime session over the exported model. `run` is thread-safe in ONNX Runtime."""

    kind = "onnx"

    def __init__(self, path: str | Path, name: str, input_size: int, labels: list[str], threads: int | None = None,
                 providers: list[str] | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise PatchlabError("ONNX Runtime is not installed; pip install 'patchlab[onnx]' or drop kind=onnx") from None
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = int(threads or default_threads())
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        available = ort.get_available_providers()
        providers = providers or [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        self.path, self.name, self.input_size, self.labels = Path(path), name, int(input_size), list(labels)
        self.threads = opts.intra_op_num_threads

    def logits(self, rgb: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], dtype=np.float32)
        x *= 1.0 / 255.0
        return self.session.run(None, {self.input_name: x})[0][0]

    def logits_batch(self, x: np.ndarray) -> np.ndarray:
        """(N, 3, S, S) float32 in [0, 1] -> (N, classes) logits."""
        return self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})[0]

    def describe(self) -> str:
        return f"ONNX Runtime {self.session.get_providers()[0]} ({self.threads} threads)"


def default_threads() -> int:
    """Half the cores (1 to 4): the rest stay free for capture, decoding and the UI thread."""
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def _fingerprint(model) -> str:
    digest = hashlib.sha1()
    digest.update(f"{model.name}:{model.input_size}:{torch.__version__}".encode())
    for name, t in model.state_dict().items():
        digest.update(name.encode())
        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


def export_onnx(model, path: str | Path | None = None, opset: int = 18) -> Path:
    """Export a zoo Classifier ([0, 1] RGB NCHW -> logits, batch dimension dynamic) to ONNX, once per weights.

    Uses the torch.export-based exporter (the default since torch 2.9; works offline with onnxscript) and falls
    back to the legacy TorchScript exporter if that fails.
    """
    if path is None:
        path = cache_dir() / f"{model.name}-{model.input_size}-{_fingerprint(model)}.onnx"
    path = Path(path)
    if path.is_file() and path.stat().st_size > 0:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    cpu_model = model if model.device.type == "cpu" else _cpu_copy(model)
    x = torch.rand(1, 3, model.input_size, model.input_size)
    tmp = path.with_suffix(f".tmp{os.getpid()}.onnx")
    errors = []
    for dynamo in (True, False):
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                    contextlib.redirect_stderr(io.StringIO()):
                warnings.simplefilter("ignore")
                kwargs = ({"dynamic_shapes": ({0: torch.export.Dim("batch", min=1, max=256)},)} if dynamo
                          else {"dynamic_axes": {"image": {0: "batch"}, "logits": {0: "batch"}}})
                torch.onnx.export(cpu_model, (x,), str(tmp), dynamo=dynamo, opset_version=opset,
                                  input_names=["image"], output_names=["logits"], **kwargs)
            os.replace(tmp, path)
            return path
        except Exception as exc:  # noqa: BLE001 - try the other exporter, then report both
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            errors.append(f"{'dynamo' if dynamo else 'torchscript'}: {first}")
            tmp.unlink(missing_ok=True)
    raise PatchlabError(f"{model.name}: ONNX export failed ({'; '.join(errors)})")


def _cpu_copy(model):
    import copy

    clone = copy.deepcopy(model).cpu()
    clone.lock = threading.Lock()
    return clone


def check_onnx(backend: OnnxBackend, model, images: torch.Tensor | None = None) -> float:
    """Max |logit difference| between the ONNX session and the eager model; raises above ONNX_TOLERANCE."""
    if images is None:
        g = torch.Generator().manual_seed(0)
        images = torch.rand(2, 3, model.input_size, model.input_size, generator=g)
    with torch.inference_mode():
        ref = model(images.to(model.device)).float().cpu().numpy()
    got = backend.logits_batch(images.cpu().numpy())
    diff = float(np.abs(got - ref).max())
    if not diff < ONNX_TOLERANCE:
        raise PatchlabError(f"{model.name}: the ONNX export differs from the eager model by {diff:.2g} in logits "
                            f"(tolerance {ONNX_TOLERANCE:g}); use the eager backend")
    return diff


Backend = EagerBackend | OnnxBackend


def load_backend(model: str | object = "efficientnet_lite0", kind: str = "auto", device: str | None = "auto",
                 threads: int | None = None, arch: str | None = None, onnx_path: str | Path | None = None) -> Backend:
    """A ready inference backend. kind: 'onnx', 'eager' or 'auto' (ONNX on CPU when onnxruntime is installed).

    `model` is a zoo name / checkpoint path or an already loaded Classifier.
    """
    from patchlab.models import load_model

    if kind not in ("auto", "onnx", "eager"):
        raise PatchlabError(f"unknown inference backend '{kind}'; choose auto, onnx or eager")
    net = load_model(model, device, arch=arch) if isinstance(model, (str, Path)) else model
    if threads:
        torch.set_num_threads(int(threads))
    use_onnx = kind == "onnx" or (kind == "auto" and net.device.type == "cpu" and onnxruntime_available())
    if not use_onnx:
        return EagerBackend(net)
    if not onnxruntime_available():
        raise PatchlabError("ONNX Runtime is not installed; pip install 'patchlab[onnx]' or drop kind=onnx")
    path = export_onnx(net, onnx_path)
    backend = OnnxBackend(path, net.name, net.input_size, net.labels, threads=threads)
    backend.max_logit_diff = check_onnx(backend, net)
    backend.reference = net
    return backend
