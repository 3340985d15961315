"""The starter model: a small CNN trained (in this repository) on real MNIST digits
composited onto real photos and textures, shipped with the package.

>>> import lucidax.models as lm
>>> from lucidax.models import starter
>>> model = lm.load("starter")              # shipped weights, no network
>>> data = starter.dataset(256, split="test", seed=0)
>>> logits = model.apply(model.params, data.images, ("logits",))["logits"]
>>> reds = starter.concept_set("color", "red", 50, seed=1)   # for TCAV

See :mod:`lucidax.models.starter.data` for the data sources, licenses and label families, and
``scripts/train_starter.py`` for how the weights were made.
"""

from __future__ import annotations

import os

from .._registry import ModelEntry, register
from .data import (
    BACKGROUNDS,
    BUILTIN_DATA,
    COLORS,
    FAMILIES,
    LABEL_NAMES,
    POSITIONS,
    SIDE,
    SIZES,
    SPLITS,
    StarterData,
    background_regions,
    builtin_split,
    concept_set,
    dataset,
    digit_split,
)
from .net import CHANNELS, INPUT_SPEC, LABELS, LAYERS, StarterNet, build

__all__ = [
    "BACKGROUNDS",
    "BUILTIN_DATA",
    "CHANNELS",
    "COLORS",
    "FAMILIES",
    "INPUT_SPEC",
    "LABELS",
    "LABEL_NAMES",
    "LAYERS",
    "METADATA_PATH",
    "POSITIONS",
    "SIDE",
    "SIZES",
    "SPLITS",
    "StarterData",
    "StarterNet",
    "WEIGHTS_PATH",
    "background_regions",
    "build",
    "builtin_split",
    "concept_set",
    "dataset",
    "digit_split",
]

_WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights")
WEIGHTS_PATH = os.path.join(_WEIGHTS_DIR, "starter.safetensors")
METADATA_PATH = os.path.join(_WEIGHTS_DIR, "starter.json")

register(
    ModelEntry(
        name="starter",
        build=build,
        default_weights=WEIGHTS_PATH,
        description=(
            "small 5-block CNN (64 px) trained here on MNIST digits composited on real "
            "photos/textures; labels '0'..'9'"
        ),
    )
)
