"""The EOT distribution's settings: one dataclass, named presets, JSON/YAML round-trip.

Ranges are uniform draws; a (lo, hi) pair with lo == hi disables that effect. Sources for the preset values:
Brown 2017 (rotation +-22.5 deg, wide scale range), Athalye 2018 (brightness +-0.05 in 2D / +-0.15 in 3D, noise sigma
<= 0.1, per-channel affine printer error), Thys 2019 (contrast 0.8-1.2, brightness +-0.1, noise +-0.1, rotation
+-20 deg), ART (perspective distortion 0-0.3, natural corruptions: blur, JPEG).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from patchlab.errors import PatchlabError
from patchlab.registry import Registry, check_known

Range = tuple[float, float]


@dataclass
class EOTConfig:
    """Physical transformation distribution. Angles in degrees, blur in pixels of the model input."""

    name: str = "custom"
    # placement
    area_scale: Range = (1.0, 1.0)      # multiplies the nominal patch-area fraction per sample
    rotation: float = 0.0               # in-plane rotation, +- degrees
    tilt: float = 0.0                   # out-of-plane rotation about a random in-plane axis, 0..tilt degrees
    translate: bool = True              # random position (patch fully inside the frame)
    # printer -> camera colour (per-channel affine jitter, applied after a fitted ColourModel if one is given)
    colour_gain: Range = (1.0, 1.0)
    colour_offset: Range = (0.0, 0.0)
    # photometric (whole frame)
    brightness: float = 0.0             # additive, +-
    contrast: Range = (1.0, 1.0)        # around the per-image mean
    saturation: Range = (1.0, 1.0)
    hue: float = 0.0                    # +- fraction of a full turn
    gamma: Range = (1.0, 1.0)
    # camera
    blur_sigma: Range = (0.0, 0.0)      # Gaussian blur sigma, pixels
    motion_blur_p: float = 0.0
    motion_blur_kernel: int = 5
    noise: float = 0.0                  # Gaussian sensor noise sigma drawn from U(0, noise)
    jpeg_p: float = 0.0
    jpeg_quality: Range = (75.0, 95.0)

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, list):
                setattr(self, f.name, tuple(float(x) for x in v))
        self.validate()

    def validate(self) -> None:
        def rng(name, lo_min=None, hi_max=None):
            v = getattr(self, name)
            if not (isinstance(v, tuple) and len(v) == 2 and v[0] <= v[1]):
                raise PatchlabError(f"eot.{name} must be a (low, high) pair with low <= high, got {v!r}")
            if lo_min is not None and v[0] < lo_min or hi_max is not None and v[1] > hi_max:
                raise PatchlabError(f"eot.{name} must lie within [{lo_min}, {hi_max}], got {v!r}")

        rng("area_scale", 0.01, 10)
        rng("colour_gain", 0, 2)
        rng("colour_offset", -1, 1)
        rng("contrast", 0, 5)
        rng("saturation", 0, 5)
        rng("gamma", 0.1, 10)
        rng("blur_sigma", 0, 10)
        rng("jpeg_quality", 1, 100)
        for name, hi in (("rotation", 180), ("tilt", 80), ("brightness", 1), ("hue", 0.5), ("noise", 1),
                         ("motion_blur_p", 1), ("jpeg_p", 1)):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0 <= v <= hi:
                raise PatchlabError(f"eot.{name} must lie in [0, {hi}], got {v!r}")
        if self.motion_blur_kernel < 3 or self.motion_blur_kernel % 2 == 0:
            raise PatchlabError(f"eot.motion_blur_kernel must be an odd integer >= 3, got {self.motion_blur_kernel}")

    # -- round trip --------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> "EOTConfig":
        if not isinstance(data, dict):
            raise PatchlabError("an EOT config must be a mapping of settings")
        check_known(data, (f.name for f in fields(cls)), "EOT setting")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_text(cls, text: str) -> "EOTConfig":
        import yaml

        try:
            data = yaml.safe_load(text)  # JSON is YAML
        except yaml.YAMLError as exc:
            raise PatchlabError(f"EOT config is not valid YAML/JSON ({str(exc).splitlines()[0]})") from None
        return cls.from_dict(data)

    def save(self, path: str | Path) -> Path:
        """Write the config as JSON or YAML (by suffix), atomically."""
        from patchlab.artifacts import write_text

        path = Path(path)
        return write_text(path, self.to_json() + "\n" if path.suffix == ".json" else self.to_yaml())

    def replace(self, **changes) -> "EOTConfig":
        data = self.to_dict()
        data.update(changes)
        return EOTConfig.from_dict(data)


PRESETS: Registry[EOTConfig] = Registry("EOT preset")
# Brown 2017's digital setting: location, rotation and scale only.
PRESETS.register("digital", EOTConfig(name="digital", area_scale=(0.7, 1.4), rotation=22.5))
# A printed patch photographed by a phone or camera: pose, printer colour error, lighting, blur, noise, JPEG.
PRESETS.register("print", EOTConfig(
    name="print", area_scale=(0.7, 1.4), rotation=22.5, tilt=30.0,
    colour_gain=(0.75, 1.0), colour_offset=(0.0, 0.08),
    brightness=0.1, contrast=(0.8, 1.2), saturation=(0.8, 1.2), hue=0.02, gamma=(0.8, 1.25),
    blur_sigma=(0.0, 1.0), motion_blur_p=0.2, motion_blur_kernel=5, noise=0.04, jpeg_p=0.5,
    jpeg_quality=(60.0, 95.0)))
# A live webcam: wider distance range, stronger lighting changes, motion blur and stream compression.
PRESETS.register("webcam", EOTConfig(
    name="webcam", area_scale=(0.5, 2.0), rotation=30.0, tilt=40.0,
    colour_gain=(0.7, 1.0), colour_offset=(0.0, 0.1),
    brightness=0.15, contrast=(0.7, 1.3), saturation=(0.7, 1.3), hue=0.03, gamma=(0.7, 1.4),
    blur_sigma=(0.0, 1.5), motion_blur_p=0.5, motion_blur_kernel=7, noise=0.06, jpeg_p=0.8,
    jpeg_quality=(40.0, 90.0)))


def preset(name: str) -> EOTConfig:
    """A copy of a named preset (digital, print, webcam)."""
    return EOTConfig.from_dict(PRESETS.get(name).to_dict())


def load_config(spec: str | Path | EOTConfig | dict) -> EOTConfig:
    """A preset name, a .yaml/.json file path, a dict, or a config."""
    if isinstance(spec, EOTConfig):
        return spec
    if isinstance(spec, dict):
        return EOTConfig.from_dict(spec)
    s = str(spec)
    if s in PRESETS:
        return preset(s)
    path = Path(s)
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        if not path.is_file():
            raise PatchlabError(f"{path}: EOT config file not found")
        return EOTConfig.from_text(path.read_text())
    return preset(s)
