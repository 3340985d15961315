"""VGG-16 as torchvision's ``vgg16`` (no BatchNorm).

Input: RGB in ``[0, 1]``; ``apply`` normalizes with the ImageNet mean
``(0.485, 0.456, 0.406)`` and std ``(0.229, 0.224, 0.225)``.

Layers (forward order) are torchvision's module names::

    features.0 ... features.30  avgpool  classifier.0 classifier.1 classifier.3
    classifier.4 classifier.6

``features.i`` is the output of module ``i`` of torchvision's ``features`` Sequential: 3x3
convolutions (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28; their outputs are pre-ReLU and
flagged ``pre_relu``), the ReLU after each of them (1, 3, ...), and the 2x2 max pools (4, 9,
16, 23, 30). ``avgpool`` is ``AdaptiveAvgPool2d(7)`` (exactly torch's bins for any input
size), ``classifier.0/3/6`` the linear layers (``classifier.6`` = logits) and
``classifier.1/4`` their ReLUs. The dropouts (``classifier.2``, ``classifier.5``) are the
identity at inference and are not listed.

torchvision's state dict loads as is (``features.0.weight``, ``classifier.0.weight``, ...);
``classifier.0`` consumes the pooled features flattened in torch's (C, H, W) order.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ._base import LayerInfo, Model, Taps
from ._layers import (
    IMAGENET_NORMALIZATION,
    Conv,
    Dense,
    InitRules,
    adaptive_avg_pool,
    linen_model,
    max_pool,
    random_params,
    relu,
    torch_key_map,
)
from ._registry import ModelEntry, register

__all__ = ["CONFIG", "LAYERS", "VGG", "build", "key_map"]

CONFIG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"
)  # fmt: skip
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)
_POOL_SIDE = 7
_HIDDEN = 4096
NUM_CLASSES = 1000


def _layer_infos() -> list[LayerInfo]:
    infos, i, c = [], 0, 3
    for v in CONFIG:
        if v == "M":
            infos.append(LayerInfo(f"features.{i}", "conv", c))
            i += 1
        else:
            c = int(v)
            infos += [
                LayerInfo(f"features.{i}", "conv", c, True),
                LayerInfo(f"features.{i + 1}", "conv", c),
            ]
            i += 2
    infos += [
        LayerInfo("avgpool", "conv", c),
        LayerInfo("classifier.0", "dense", _HIDDEN, True),
        LayerInfo("classifier.1", "dense", _HIDDEN),
        LayerInfo("classifier.3", "dense", _HIDDEN, True),
        LayerInfo("classifier.4", "dense", _HIDDEN),
        LayerInfo("classifier.6", "dense", NUM_CLASSES),
    ]
    return infos


LAYERS: tuple[LayerInfo, ...] = tuple(_layer_infos())
_NAMES = tuple(info.name for info in LAYERS)


class VGG(nn.Module):
    """VGG (VGG-16 by default) stopping after the deepest requested layer."""

    config: tuple[int | str, ...] = CONFIG
    num_classes: int = NUM_CLASSES

    @nn.compact
    def __call__(self, x: jax.Array, layers: tuple[str, ...]) -> dict[str, jax.Array]:
        taps = Taps(layers)
        x = (x - jnp.asarray(_MEAN, x.dtype)) / jnp.asarray(_STD, x.dtype)
        i = 0
        for v in self.config:
            if v == "M":
                if taps(f"features.{i}", x := max_pool(x, 2, 2, 0)):
                    return taps.out
                i += 1
            else:
                x = Conv(int(v), 3, 1, 1, name=f"features.{i}")(x)
                if taps(f"features.{i}", x) or taps(f"features.{i + 1}", x := relu(x)):
                    return taps.out
                i += 2
        if taps("avgpool", x := adaptive_avg_pool(x, _POOL_SIDE)):
            return taps.out
        # torch flattens NCHW: (C, H, W) order
        x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)
        x = Dense(_HIDDEN, name="classifier.0")(x)
        if taps("classifier.0", x) or taps("classifier.1", x := relu(x)):
            return taps.out
        x = Dense(_HIDDEN, name="classifier.3")(x)
        if taps("classifier.3", x) or taps("classifier.4", x := relu(x)):
            return taps.out
        taps("classifier.6", Dense(self.num_classes, name="classifier.6")(x))
        return taps.out


def key_map(params) -> dict[str, tuple[str, str]]:
    """Parameter paths (``features.0/kernel``) -> torchvision keys (``features.0.weight``)."""
    return torch_key_map(params)



def build(seed: int = 0) -> Model:
    """VGG-16, random weights with torchvision's scales (He fan-out convs, std 0.01 dense)."""
    module = VGG()
    params = random_params(module, (1, 224, 224, 3), _NAMES, seed, InitRules("fan_out", 0.01))
    return linen_model(
        module, params, name="vgg16", layers=LAYERS, normalization=IMAGENET_NORMALIZATION,
        logits_layer="classifier.6", min_side=32,
    )


register(
    ModelEntry(
        name="vgg16",
        build=build,
        key_map=key_map,
        description="VGG-16 as torchvision's vgg16 (no BatchNorm; 1000 ImageNet classes, 224 px)",
        weights_hint="torchvision's vgg16 state dict, e.g. vgg16-397923af.pth",
    )
)
