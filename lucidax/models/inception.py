"""InceptionV1 (GoogLeNet as in Lucid / lucent's ``inceptionv1``: 1008 classes, "inception5h").

Topology, channel counts, local response normalization (torch convention: size 9,
alpha 9.99999974738e-05, beta 0.5, k 1) and the layer names follow lucent's
``lucent.modelzoo.inceptionv1``; padding is TensorFlow's "SAME" computed from the input
size (the same explicit pads lucent hard-codes, for any side that is a multiple of 32,
224 included). Input: RGB in ``[0, 1]``; ``apply`` feeds the network ``x * 255 - 117``.

Layers (forward order)::

    conv2d0_pre_relu conv2d0 maxpool0 conv2d1_pre_relu conv2d1 conv2d2_pre_relu conv2d2
    maxpool1 mixed3a_pre_relu mixed3a mixed3b_pre_relu mixed3b maxpool4 mixed4a_pre_relu
    mixed4a ... mixed4e maxpool10 mixed5a_pre_relu mixed5a mixed5b_pre_relu mixed5b
    avgpool0 softmax2_pre_activation_matmul softmax2

``mixedNx_pre_relu`` is the concatenation of the four branches' pre-ReLU outputs (so
``mixedNx == relu(mixedNx_pre_relu)``). ``avgpool0`` is the spatial mean of ``mixed5b``
(lucent's 7x7 average pool at 224 px; defined for any size here), ``[N, 1024]``.
``softmax2_pre_activation_matmul`` are the logits, ``softmax2`` the probabilities.

The lucent / ProGamerGov ``inception5h.pth`` state dict loads as is:
``conv2d0_pre_relu_conv.weight``, ``mixed3a_1x1_pre_relu_conv.weight``, ...,
``softmax2_pre_activation_matmul.weight``.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ._base import LayerInfo, Model, Taps
from ._layers import (
    Conv,
    Dense,
    InitRules,
    linen_model,
    local_response_norm,
    max_pool,
    random_params,
    relu,
)
from ._layers import torch_key_map as _torch_key_map
from ._registry import ModelEntry, register

__all__ = ["InceptionV1", "LAYERS", "MIXED", "build", "key_map"]

# name: (1x1, 3x3 bottleneck, 3x3, 5x5 bottleneck, 5x5, pool projection)
MIXED: dict[str, tuple[int, int, int, int, int, int]] = {
    "mixed3a": (64, 96, 128, 16, 32, 32),
    "mixed3b": (128, 128, 192, 32, 96, 64),
    "mixed4a": (192, 96, 204, 16, 48, 64),
    "mixed4b": (160, 112, 224, 24, 64, 64),
    "mixed4c": (128, 128, 256, 24, 64, 64),
    "mixed4d": (112, 144, 288, 32, 64, 64),
    "mixed4e": (256, 160, 320, 32, 128, 128),
    "mixed5a": (256, 160, 320, 48, 128, 128),
    "mixed5b": (384, 192, 384, 48, 128, 128),
}
# stride-2 max pools in front of these blocks (lucent's names)
_POOL_BEFORE = {"mixed4a": "maxpool4", "mixed5a": "maxpool10"}
_LRN = {"size": 9, "alpha": 9.99999974738e-05, "beta": 0.5, "k": 1.0}
NUM_CLASSES = 1008


def _layer_infos() -> list[LayerInfo]:
    infos = []
    for name, c in (("conv2d0", 64), ("conv2d1", 64), ("conv2d2", 192)):
        infos += [LayerInfo(f"{name}_pre_relu", "conv", c, True), LayerInfo(name, "conv", c)]
        if name == "conv2d0":
            infos.append(LayerInfo("maxpool0", "conv", 64))
    infos.append(LayerInfo("maxpool1", "conv", 192))
    prev = 192
    for name, (c1, _, c3, _, c5, cp) in MIXED.items():
        if name in _POOL_BEFORE:
            infos.append(LayerInfo(_POOL_BEFORE[name], "conv", prev))
        prev = c1 + c3 + c5 + cp
        infos += [LayerInfo(f"{name}_pre_relu", "conv", prev, True), LayerInfo(name, "conv", prev)]
    infos += [
        LayerInfo("avgpool0", "dense", prev),
        LayerInfo("softmax2_pre_activation_matmul", "dense", NUM_CLASSES),
        LayerInfo("softmax2", "dense", NUM_CLASSES),
    ]
    return infos


LAYERS: tuple[LayerInfo, ...] = tuple(_layer_infos())
_NAMES = tuple(info.name for info in LAYERS)


class _Mixed(nn.Module):
    """One inception block; returns the concatenated *pre-ReLU* branch outputs."""

    widths: tuple[int, int, int, int, int, int]

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c1, c3r, c3, c5r, c5, cp = self.widths
        b1 = Conv(c1, 1, name="1x1")(x)
        b3 = Conv(c3, 3, name="3x3")(relu(Conv(c3r, 1, name="3x3_bottleneck")(x)))
        b5 = Conv(c5, 5, name="5x5")(relu(Conv(c5r, 1, name="5x5_bottleneck")(x)))
        bp = Conv(cp, 1, name="pool_reduce")(max_pool(x, 3, 1))
        return jnp.concatenate([b1, b3, b5, bp], axis=-1)


class InceptionV1(nn.Module):
    """InceptionV1 stopping after the deepest requested layer (see the module docstring)."""

    num_classes: int = NUM_CLASSES

    @nn.compact
    def __call__(self, x: jax.Array, layers: tuple[str, ...]) -> dict[str, jax.Array]:
        taps = Taps(layers)
        x = x * 255.0 - 117.0
        x = Conv(64, 7, 2, name="conv2d0")(x)
        if taps("conv2d0_pre_relu", x) or taps("conv2d0", x := relu(x)):
            return taps.out
        if taps("maxpool0", x := max_pool(x, 3, 2)):
            return taps.out
        x = local_response_norm(x, **_LRN)
        x = Conv(64, 1, name="conv2d1")(x)
        if taps("conv2d1_pre_relu", x) or taps("conv2d1", x := relu(x)):
            return taps.out
        x = Conv(192, 3, name="conv2d2")(x)
        if taps("conv2d2_pre_relu", x) or taps("conv2d2", x := relu(x)):
            return taps.out
        x = local_response_norm(x, **_LRN)
        if taps("maxpool1", x := max_pool(x, 3, 2)):
            return taps.out
        for name, widths in MIXED.items():
            if name in _POOL_BEFORE and taps(_POOL_BEFORE[name], x := max_pool(x, 3, 2)):
                return taps.out
            x = _Mixed(widths, name=name)(x)
            if taps(f"{name}_pre_relu", x) or taps(name, x := relu(x)):
                return taps.out
        if taps("avgpool0", x := jnp.mean(x, axis=(1, 2))):
            return taps.out
        x = Dense(self.num_classes, name="softmax2_pre_activation_matmul")(x)
        if taps("softmax2_pre_activation_matmul", x):
            return taps.out
        taps("softmax2", jax.nn.softmax(x, axis=-1))
        return taps.out


def _torch_module_key(owner: str) -> str:
    # "conv2d0" -> "conv2d0_pre_relu_conv"; "mixed3a/3x3" -> "mixed3a_3x3_pre_relu_conv"
    if owner == "softmax2_pre_activation_matmul":
        return owner
    return owner.replace("/", "_") + "_pre_relu_conv"


def key_map(params) -> dict[str, tuple[str, str]]:
    """Parameter paths -> lucent's ``InceptionV1`` state_dict keys."""
    return _torch_key_map(params, _torch_module_key)



def build(seed: int = 0) -> Model:
    """InceptionV1 with random weights from ``seed`` (He-scaled convs, fan-in; ``InitRules``)."""
    module = InceptionV1()
    params = random_params(module, (1, 224, 224, 3), _NAMES, seed, InitRules("fan_in"))
    return linen_model(
        module, params, name="inceptionv1", layers=LAYERS,
        normalization="x * 255 - 117 (Lucid / lucent InceptionV1)",
        logits_layer="softmax2_pre_activation_matmul",
    )


register(
    ModelEntry(
        name="inceptionv1",
        build=build,
        key_map=key_map,
        description="InceptionV1 / GoogLeNet as in Lucid and lucent (1008 classes, 224 px)",
        weights_hint="lucent's inceptionv1(pretrained=True) state dict, inception_v1.pth",
    )
)
