"""ResNet-50 as torchvision's ``resnet50`` (v1.5: the stride sits on the 3x3 conv).

Input: RGB in ``[0, 1]``; ``apply`` normalizes with the ImageNet mean
``(0.485, 0.456, 0.406)`` and std ``(0.229, 0.224, 0.225)``. BatchNorm eps 1e-5, inference
statistics stored in the params pytree.

Layers (forward order), named after torchvision's modules::

    conv1 bn1 relu maxpool
    layer1.0_pre_relu layer1.0 ... layer1.2  layer2.0_pre_relu ... layer2.3
    layer3.0_pre_relu ... layer3.5  layer4.0_pre_relu ... layer4.2  avgpool fc

``conv1`` is the raw stem convolution, ``bn1`` its BatchNorm output (the input of the ReLU,
flagged ``pre_relu``), ``relu`` and ``maxpool`` the stem's outputs. ``layerS.B`` is the
output of bottleneck ``B`` of stage ``S`` and ``layerS.B_pre_relu`` the residual sum before
its final ReLU. The stage outputs ``layer1`` ... ``layer4`` of torchvision equal the last
block of each stage (``layer1.2``, ``layer2.3``, ``layer3.5``, ``layer4.2``) and are not
listed twice. ``avgpool`` is the pooled ``[N, 2048]`` feature, ``fc`` the 1000 logits.

torchvision's state dict loads as is (``conv1.weight``, ``bn1.running_mean``,
``layer1.0.downsample.0.weight``, ``fc.weight``, ...; ``num_batches_tracked`` is ignored).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ._base import LayerInfo, Model, Taps
from ._layers import (
    IMAGENET_NORMALIZATION,
    BatchNorm,
    Conv,
    Dense,
    InitRules,
    linen_model,
    max_pool,
    random_params,
    relu,
    torch_key_map,
)
from ._registry import ModelEntry, register

__all__ = ["LAYERS", "ResNet", "STAGES", "build", "key_map"]

# (bottleneck width, number of blocks, stride of the first block)
STAGES: tuple[tuple[int, int, int], ...] = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))
_EXPANSION = 4
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)
NUM_CLASSES = 1000


def _layer_infos() -> list[LayerInfo]:
    infos = [
        LayerInfo("conv1", "conv", 64),
        LayerInfo("bn1", "conv", 64, True),
        LayerInfo("relu", "conv", 64),
        LayerInfo("maxpool", "conv", 64),
    ]
    for s, (width, blocks, _) in enumerate(STAGES, start=1):
        c = width * _EXPANSION
        for b in range(blocks):
            infos += [
                LayerInfo(f"layer{s}.{b}_pre_relu", "conv", c, True),
                LayerInfo(f"layer{s}.{b}", "conv", c),
            ]
    c = STAGES[-1][0] * _EXPANSION
    infos += [LayerInfo("avgpool", "dense", c), LayerInfo("fc", "dense", NUM_CLASSES)]
    return infos


LAYERS: tuple[LayerInfo, ...] = tuple(_layer_infos())
_NAMES = tuple(info.name for info in LAYERS)


class _Bottleneck(nn.Module):
    """torchvision ``Bottleneck``; returns the residual sum *before* the final ReLU."""

    width: int
    stride: int
    downsample: bool

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = relu(BatchNorm(name="bn1")(Conv(self.width, 1, 1, 0, False, name="conv1")(x)))
        y = Conv(self.width, 3, self.stride, 1, False, name="conv2")(y)
        y = relu(BatchNorm(name="bn2")(y))
        y = Conv(self.width * _EXPANSION, 1, 1, 0, False, name="conv3")(y)
        y = BatchNorm(name="bn3")(y)
        if self.downsample:
            x = Conv(self.width * _EXPANSION, 1, self.stride, 0, False, name="downsample.0")(x)
            x = BatchNorm(name="downsample.1")(x)
        return y + x


class ResNet(nn.Module):
    """Bottleneck ResNet (ResNet-50 by default) stopping after the deepest requested layer."""

    stages: tuple[tuple[int, int, int], ...] = STAGES
    num_classes: int = NUM_CLASSES

    @nn.compact
    def __call__(self, x: jax.Array, layers: tuple[str, ...]) -> dict[str, jax.Array]:
        taps = Taps(layers)
        x = (x - jnp.asarray(_MEAN, x.dtype)) / jnp.asarray(_STD, x.dtype)
        if taps("conv1", x := Conv(64, 7, 2, 3, False, name="conv1")(x)):
            return taps.out
        if taps("bn1", x := BatchNorm(name="bn1")(x)) or taps("relu", x := relu(x)):
            return taps.out
        if taps("maxpool", x := max_pool(x, 3, 2, 1)):
            return taps.out
        channels = 64
        for s, (width, blocks, stride) in enumerate(self.stages, start=1):
            for b in range(blocks):
                down = b == 0 and (stride != 1 or channels != width * _EXPANSION)
                x = _Bottleneck(width, stride if b == 0 else 1, down, name=f"layer{s}.{b}")(x)
                channels = width * _EXPANSION
                if taps(f"layer{s}.{b}_pre_relu", x) or taps(f"layer{s}.{b}", x := relu(x)):
                    return taps.out
        if taps("avgpool", x := jnp.mean(x, axis=(1, 2))):
            return taps.out
        taps("fc", Dense(self.num_classes, name="fc")(x))
        return taps.out


def key_map(params) -> dict[str, tuple[str, str]]:
    """Param paths (``layer1.0/conv1/kernel``) -> torchvision keys (``layer1.0.conv1.weight``)."""
    return torch_key_map(params)



def build(seed: int = 0) -> Model:
    """ResNet-50, random weights with torchvision's scales (He fan-out; see ``InitRules``)."""
    module = ResNet()
    params = random_params(module, (1, 224, 224, 3), _NAMES, seed, InitRules("fan_out"))
    return linen_model(
        module, params, name="resnet50", layers=LAYERS, normalization=IMAGENET_NORMALIZATION,
        logits_layer="fc",
    )


register(
    ModelEntry(
        name="resnet50",
        build=build,
        key_map=key_map,
        description="ResNet-50 as torchvision's resnet50 (1000 ImageNet classes, 224 px)",
        weights_hint="torchvision's resnet50 state dict, e.g. resnet50-0676ba61.pth",
    )
)
