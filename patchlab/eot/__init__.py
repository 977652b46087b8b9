"""EOT: a differentiable, batched distribution of physical transformations (placement, lighting, printer colour,
camera), its typed config and presets, and a preview grid."""

from patchlab.eot.colour import ColourModel
from patchlab.eot.config import PRESETS, EOTConfig, load_config, preset
from patchlab.eot.preview import preview_grid
from patchlab.eot.transforms import EOT, MAX_AREA, MAX_PATCH_AREA, EOTOutput, EOTParams

__all__ = ["ColourModel", "EOT", "EOTConfig", "EOTOutput", "EOTParams", "MAX_AREA", "MAX_PATCH_AREA", "PRESETS",
           "load_config", "preset", "preview_grid"]
