"""Model zoo: registry, EfficientNet-Lite with packaged weights, preprocessing, safe checkpoint loading."""

from patchlab.models.efficientnet_lite import reference_model, weights_file
from patchlab.models.preprocess import center_crop, preprocess, resize_short_side
from patchlab.models.zoo import (DEFAULT_MODEL, REGISTRY, Classifier, ModelSpec, list_models, load_checkpoint_state,
                                 load_model, resolve_device)

__all__ = [
    "DEFAULT_MODEL", "REGISTRY", "Classifier", "ModelSpec", "center_crop", "list_models", "load_checkpoint_state",
    "load_model", "preprocess", "reference_model", "resize_short_side", "resolve_device", "weights_file",
]
