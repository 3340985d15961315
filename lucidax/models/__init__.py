"""Model zoo: CNNs exposing their activations by layer name, and torch-free weight import.

>>> import lucidax.models as lm
>>> lm.list_models()
>>> model = lm.load("starter")
>>> acts = model.apply(model.params, images, layers=("conv3", "logits"))
"""

from .base import InputSpec, LayerInfo, Model, Taps, UnknownLayerError
from .convert import CheckpointMismatchError
from .hooks import apply_perturbed, apply_with_relu
from .io import UnsafeCheckpointError, load_params, read_checkpoint, save_params
from .registry import (
    MissingWeightsError,
    ModelEntry,
    RandomWeightsWarning,
    UnknownModelError,
    list_models,
    load,
    register,
    weights_sha256,
)
from .wrap import wrap

__all__ = [
    "CheckpointMismatchError",
    "InputSpec",
    "LayerInfo",
    "MissingWeightsError",
    "Model",
    "ModelEntry",
    "RandomWeightsWarning",
    "Taps",
    "UnknownLayerError",
    "UnknownModelError",
    "UnsafeCheckpointError",
    "apply_perturbed",
    "apply_with_relu",
    "list_models",
    "load",
    "load_params",
    "read_checkpoint",
    "register",
    "save_params",
    "weights_sha256",
    "wrap",
]

# Architectures register themselves on import.
from . import zoo as _zoo  # noqa: E402,F401
