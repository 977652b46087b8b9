"""Every defense by name: `DEFENSES`, a `patchlab.registry.Registry` of `DefenseSpec`s, each saying what the defense
is and where it can be used, so the CLI, the app and the library share one list and one error for a bad name.

Uses: "patch" (the shipped patch against each defense, `defend evaluate patch`), "transforms" (naive vs BPDA+EOT
attacks, `defend evaluate transforms`), "adaptive" (a patch trained against the defended model, `defend train
patch --against`), "live" (`patchlab camera --defense`, the Live camera page).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from patchlab.defenses.lgs import LocalGradientSmoothing
from patchlab.defenses.transforms import JPEG, BitDepth, InputTransform, Median, ResizePad
from patchlab.errors import PatchlabError
from patchlab.registry import Registry, did_you_mean

USES = {"patch": "against the shipped patch", "transforms": "under naive and adaptive attack",
        "adaptive": "for adaptive patch training", "live": "live"}


@dataclass(frozen=True)
class DefenseSpec:
    name: str
    kind: str                               # "none", "certified" or "transform"
    transform: type[InputTransform] | None  # the input transformation of a "transform" defense
    uses: frozenset[str]


DEFENSES: Registry[DefenseSpec] = Registry("defense")


def _add(name: str, title: str, kind: str, transform, uses: Iterable[str], aliases: Iterable[str] = ()) -> None:
    DEFENSES.register(name, DefenseSpec(name, kind, transform, frozenset(uses)), title=title, aliases=aliases)


_ALL = ("patch", "transforms", "adaptive", "live")
_add("none", "No defense", "none", None, ("patch", "transforms", "live"), aliases=("off",))
_add("patchcleanser", "PatchCleanser (certified, double masking)", "certified", None, ("patch", "adaptive", "live"),
     aliases=("patch-cleanser", "pc"))
_add("lgs", "Local gradient smoothing", "transform", LocalGradientSmoothing, _ALL,
     aliases=("local-gradient-smoothing",))
_add("jpeg", "JPEG compression", "transform", JPEG, _ALL, aliases=("jpeg-compression",))
_add("median", "Median filter", "transform", Median, _ALL, aliases=("median-filter",))
_add("bitdepth", "Bit-depth reduction", "transform", BitDepth, ("patch", "transforms"), aliases=("bit-depth",))
_add("resize_pad", "Random resize-and-pad", "transform", ResizePad, ("patch", "transforms"),
     aliases=("resize-pad", "resizepad"))


def defense_names(use: str | None = None) -> tuple[str, ...]:
    """The canonical names, in registration order; with `use`, only those available there."""
    if use is not None and use not in USES:
        raise PatchlabError(f"use must be one of {', '.join(USES)}, got {use!r}")
    return tuple(n for n, spec in DEFENSES.items() if use is None or use in spec.uses)


def check_defenses(names: Iterable[str], use: str) -> list[str]:
    """The canonical names of `names` (aliases and case allowed), or one line naming the first that is unknown or
    not available for `use`, with the names that are."""
    allowed = defense_names(use)
    out = []
    for name in names:
        key = DEFENSES.resolve(name) if name in DEFENSES else None
        if key is None:
            raise PatchlabError(f"unknown defense '{name}'{did_you_mean(str(name).strip().lower(), allowed)} "
                                f"(choose from {', '.join(allowed)})")
        if key not in allowed:
            raise PatchlabError(f"defense '{name}' is not available {USES[use]} (choose from {', '.join(allowed)})")
        out.append(key)
    return out


def make_transform(name: str, **settings) -> InputTransform:
    """The input transformation of a transform defense (jpeg, bitdepth, median, resize_pad, lgs), built with
    `settings` (e.g. quality=50)."""
    spec = DEFENSES.get(name)
    if spec.transform is None:
        names = ", ".join(n for n, s in DEFENSES.items() if s.transform is not None)
        raise PatchlabError(f"defense '{name}' is not an input transformation (choose from {names})")
    return spec.transform(**settings)


__all__ = ["DEFENSES", "DefenseSpec", "USES", "check_defenses", "defense_names", "make_transform"]
