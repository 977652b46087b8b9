"""A sweep's grid: one patch scored over models x areas x presets x defenses x seeds, as one settings dataclass that
round-trips to YAML/JSON. `cells()` lists the grid's cells in a fixed order; each cell is a plain dict (picklable,
sent to a Ray task or a pool process) and has a stable id that names its result file."""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from patchlab.errors import PatchlabError

AXES = ("models", "areas", "presets", "defenses", "seeds")


@dataclass
class SweepGrid:
    """Everything that determines a sweep's results (`executor`, `workers` and Ray's address do not)."""

    patch: str = ""                      # patch PNG (its sidecar names the target and the training images)
    images: str = ""                     # held-out scene folder; the patch's training images are skipped
    models: list[str] = field(default_factory=lambda: ["efficientnet_lite0"])
    areas: list[float] = field(default_factory=lambda: [0.10])
    presets: list[str] = field(default_factory=lambda: ["print"])
    defenses: list[str] = field(default_factory=lambda: ["none"])
    seeds: list[int] = field(default_factory=lambda: [0])
    target: str | int | None = None      # default: the patch's own target
    limit: int | None = None             # at most this many images per cell (None: all held-out images)
    draws: int = 1                       # EOT draws per image
    batch_size: int = 32
    device: str = "cpu"                  # each cell's device ("auto" picks CUDA where the task lands on a GPU)
    cpus_per_cell: float = 1.0           # Ray resources of one cell (and torch threads in the pool)
    gpus_per_cell: float = 0.0
    plugins: list[str] = field(default_factory=list)  # modules imported in every worker (they register defenses)

    def __post_init__(self) -> None:
        for axis in AXES:
            value = getattr(self, axis)
            if not isinstance(value, (list, tuple)):
                value = [value]
            if not value:
                raise PatchlabError(f"{axis} must list at least one value")
            setattr(self, axis, list(value))
        if not self.patch:
            raise PatchlabError("a sweep needs patch= (a patch PNG)")
        if not self.images:
            raise PatchlabError("a sweep needs images= (a held-out scene folder)")
        try:
            self.areas = [float(a) for a in self.areas]
            self.seeds = [int(s) for s in self.seeds]
        except (TypeError, ValueError):
            raise PatchlabError("areas must be numbers and seeds integers") from None
        for a in self.areas:
            if not 0 < a <= 0.5:
                raise PatchlabError(f"areas must lie in (0, 0.5], got {a}")
        for axis in AXES:
            values = getattr(self, axis)
            if len(set(map(str, values))) != len(values):
                raise PatchlabError(f"{axis} lists a value twice")
        if self.limit is not None and int(self.limit) < 1:
            raise PatchlabError(f"limit must be at least 1, got {self.limit}")
        for name in ("draws", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise PatchlabError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.cpus_per_cell <= 0 or self.gpus_per_cell < 0:
            raise PatchlabError("cpus_per_cell must be positive and gpus_per_cell not negative")

    # -- round trips ---------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SweepGrid":
        if not isinstance(data, dict):
            raise PatchlabError("a sweep grid is a mapping of settings (patch, images, models, areas, ...)")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            from patchlab.registry import did_you_mean

            raise PatchlabError(f"unknown sweep setting '{unknown[0]}'{did_you_mean(unknown[0], known)}")
        return cls(**data)

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def load(cls, path: str | Path) -> "SweepGrid":
        """A grid from a .yaml/.yml/.json file; relative `patch` and `images` are taken from the file's folder."""
        import yaml

        path = Path(path)
        if not path.is_file():
            raise PatchlabError(f"{path}: no such grid file")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise PatchlabError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        if isinstance(data, dict):
            for key in ("patch", "images"):
                if isinstance(data.get(key), str) and not Path(data[key]).is_absolute():
                    data[key] = str((path.parent / data[key]).resolve())
        return cls.from_dict(data)

    # -- cells ---------------------------------------------------------------------------------------------------
    def check(self) -> None:
        """Fail fast, before any worker starts: inputs exist and every axis value is known."""
        from patchlab.eot import load_config
        from patchlab.models import MODELS
        from patchlab.sweep.defenses import DEFENSES, load_plugins

        if not Path(self.patch).is_file():
            raise PatchlabError(f"{self.patch}: no such patch file")
        if not Path(self.images).is_dir():
            raise PatchlabError(f"{self.images}: no such image folder")
        load_plugins(self.plugins)
        for m in self.models:
            if Path(m).suffix not in (".pt", ".pth", ".safetensors"):
                MODELS.resolve(m)
        for p in self.presets:
            load_config(p)
        for d in self.defenses:
            DEFENSES.resolve(d)

    def settings_key(self) -> str:
        """What every cell shares besides its axis values: the patch's bytes and the scoring settings. A finished
        cell counts as done only when its key matches, so editing the grid never mixes old and new results."""
        shared = {k: v for k, v in self.to_dict().items() if k not in (*AXES, "cpus_per_cell", "gpus_per_cell")}
        patch = Path(self.patch)
        shared["patch"] = hashlib.sha1(patch.read_bytes()).hexdigest() if patch.is_file() else str(patch)
        shared["images"] = str(Path(self.images).resolve())
        return hashlib.sha1(json.dumps(shared, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def cells(self) -> list[dict]:
        key = self.settings_key()
        out = []
        for model, area, preset, defense, seed in itertools.product(self.models, self.areas, self.presets,
                                                                    self.defenses, self.seeds):
            cell = {"model": model, "area": area, "preset": preset, "defense": defense, "seed": seed}
            out.append({**cell, "id": cell_id(cell), "settings_key": key})
        ids = [c["id"] for c in out]
        if len(set(ids)) != len(ids):  # e.g. two model checkpoints with the same file name
            raise PatchlabError(f"two cells would share the file name {max(ids, key=ids.count)}: areas closer than "
                                "0.1% or two models with the same file name")
        return out


def cell_id(cell: dict) -> str:
    """A file-name-safe id: model, area (per mille), preset, defense, seed: `efficientnet_lite0_a100_print_none_s0`."""
    import re

    def safe(s) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(str(s)).stem if "/" in str(s) else str(s)).strip("-.")

    area = round(cell["area"] * 1000)
    return f"{safe(cell['model'])}_a{area:03d}_{safe(cell['preset'])}_{safe(cell['defense'])}_s{cell['seed']}"
