"""Model zoo: CNNs exposing their activations by layer name, and torch-free weight import.

>>> import lucidax.models as lm
>>> lm.list_models()
>>> model = lm.load("starter")
>>> acts = model.apply(model.params, images, layers=("conv3", "logits"))
"""

from ._base import (
    InputSpec,
    LayerInfo,
    Model,
    Taps,
    UnknownLayerError,
    flatten_params,
    normalize_layers,
    suggest,
    unflatten_params,
)
from ._convert import CheckpointMismatchError
from ._registry import (
    MissingWeightsError,
    ModelEntry,
    RandomWeightsWarning,
    UnknownModelError,
    get_entry,
    list_models,
    load,
    register,
    weights_sha256,
)
from ._wrap import wrap
from .hooks import apply_perturbed, apply_with_relu
from .io import UnsafeCheckpointError, load_params, read_checkpoint, save_params

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
    "flatten_params",
    "get_entry",
    "list_models",
    "load",
    "load_params",
    "normalize_layers",
    "read_checkpoint",
    "register",
    "save_params",
    "suggest",
    "unflatten_params",
    "weights_sha256",
    "wrap",
]

# Architectures register themselves on import.
from . import zoo as _zoo  # noqa: E402,F401
