"""The sweep's defenses axis: a Registry of factories `factory(model) -> classifier`, where the returned classifier
takes the same [0, 1] input as `model` and has its `name`, `input_size` and `predict`. "none" returns the model.

Topic packages add entries when imported; a grid's `plugins` names modules to import in every worker (and the
defenses package is imported when present), e.g. in patchlab/defenses/__init__.py:

    from patchlab.sweep.defenses import DEFENSES, Defended
    DEFENSES.register("jpeg", lambda model: Defended(model, JPEG(quality=75), "jpeg"), title="JPEG q75")
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Callable, Iterable

import torch
import torch.nn as nn

from patchlab.errors import PatchlabError
from patchlab.registry import Registry

DEFENSES: Registry[Callable[[nn.Module], nn.Module]] = Registry("defense")
DEFENSES.register("none", lambda model: model, title="no defense")

PROVIDERS = ("patchlab.defenses",)  # topic packages that register defenses when imported, where installed


class Defended(nn.Module):
    """`model` behind an input transform (x in [0, 1] -> x' in [0, 1]): the classifier contract is kept."""

    def __init__(self, model: nn.Module, transform: nn.Module, defense: str):
        super().__init__()
        self.model, self.transform = model, transform
        self.name = f"{model.name}+{defense}"
        self.input_size = model.input_size

    @property
    def device(self) -> torch.device:
        return self.model.device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.transform(x))

    @torch.inference_mode()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self(x.to(self.device)).softmax(-1)


def load_plugins(modules: Iterable[str] = ()) -> None:
    """Import the defense providers that are installed and every module in `modules` (a grid's `plugins`)."""
    for name in PROVIDERS:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise PatchlabError(f"plugins: cannot import '{name}' ({exc})") from None


def defended(model: nn.Module, defense: str) -> nn.Module:
    """`model` under the named defense."""
    return DEFENSES.get(defense)(model)
