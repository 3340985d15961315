"""The starter CNN: five small conv blocks and a linear read-out of the digit.

``conv1``..``conv5`` are 3x3 SAME convolutions (24, 32, 64, 96, 128 units) each followed by
a ReLU; a 2x2 max pool sits between consecutive blocks. ``conv5`` is averaged over space
and a dense layer gives the 10 digit ``logits``. No BatchNorm, no dropout: every layer is a
plain conv/dense + ReLU, which keeps attribution (LRP, gradients) simple.

Cost at 64x64: 19.8 M multiply-adds (about 40 MFLOP) per image forward; 193,514 parameters
(0.78 MB as float32).
Any square (or not) input of at least 16 px works; ``conv5`` is then ``side/16`` wide.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from .._base import InputSpec, LayerInfo, Model, Taps

__all__ = [
    "CHANNELS",
    "INPUT_SPEC",
    "LABELS",
    "LAYERS",
    "StarterNet",
    "build",
    "init_params",
]

CHANNELS = (24, 32, 64, 96, 128)
LABELS = tuple(str(i) for i in range(10))
MEAN, STD = 0.5, 0.25
INPUT_SPEC = InputSpec(
    side=64,
    channels=3,
    value_range=(0.0, 1.0),
    normalization=f"(x - {MEAN}) / {STD} inside apply",
    min_side=16,
)
LAYERS: tuple[LayerInfo, ...] = (
    *(
        info
        for i, c in enumerate(CHANNELS, start=1)
        for info in (
            LayerInfo(f"conv{i}_pre_relu", "conv", c, pre_relu=True),
            LayerInfo(f"conv{i}", "conv", c),
        )
    ),
    LayerInfo("logits", "dense", len(LABELS)),
)

_he_init = nn.initializers.variance_scaling(2.0, "fan_in", "truncated_normal")


def _max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2/stride-2 max pool (odd trailing rows/columns dropped, like VALID pooling).

    Written as the max of four strided slices: same values as ``nn.max_pool``, but its
    gradient is an elementwise select, ~25x cheaper on XLA:CPU than select-and-scatter.
    """
    h, w = x.shape[1] // 2 * 2, x.shape[2] // 2 * 2
    x = x[:, :h, :w]
    return jnp.maximum(
        jnp.maximum(x[:, 0::2, 0::2], x[:, 0::2, 1::2]),
        jnp.maximum(x[:, 1::2, 0::2], x[:, 1::2, 1::2]),
    )


class StarterNet(nn.Module):
    """``__call__(x, layers)`` -> ``{name: activation}`` for the requested ``layers``."""

    channels: Sequence[int] = CHANNELS
    num_classes: int = len(LABELS)

    @nn.compact
    def __call__(self, x: jax.Array, layers: Sequence[str] = ("logits",)) -> dict[str, jax.Array]:
        taps = Taps(layers)
        x = (x - MEAN) / STD
        for i, c in enumerate(self.channels, start=1):
            if i > 1:
                x = _max_pool_2x2(x)
            x = nn.Conv(c, (3, 3), padding="SAME", kernel_init=_he_init, name=f"conv{i}")(x)
            if taps(f"conv{i}_pre_relu", x):
                return taps.out
            x = nn.relu(x)
            if taps(f"conv{i}", x):
                return taps.out
        x = jnp.mean(x, axis=(1, 2))
        x = nn.Dense(self.num_classes, name="logits")(x)
        taps("logits", x)
        return taps.out


def _truncated_normal(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> np.ndarray:
    """Normal(0, std) truncated to +-2 std, rescaled to keep the variance (as Flax does)."""
    z = rng.standard_normal(shape)
    while (bad := np.abs(z) > 2).any():
        z[bad] = rng.standard_normal(int(bad.sum()))
    return (z * (std / 0.87962566103423978)).astype(np.float32)


def init_params(seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Random parameters for :class:`StarterNet`, drawn with numpy from ``seed``.

    He (fan-in, gain 2) truncated-normal conv kernels, LeCun truncated-normal logits, zero
    biases -- the distributions of the module's own initializers, but without compiling a
    JAX program (XLA:CPU takes seconds to compile the threefry draws), so ``build`` and
    ``lucidax.models.load("starter")`` are instant.
    """
    rng = np.random.default_rng(seed)
    params: dict[str, dict[str, np.ndarray]] = {}
    cin = INPUT_SPEC.channels
    for i, c in enumerate(CHANNELS, start=1):
        kernel = _truncated_normal(rng, (3, 3, cin, c), np.sqrt(2.0 / (9 * cin)))
        params[f"conv{i}"] = {"kernel": kernel, "bias": np.zeros(c, np.float32)}
        cin = c
    kernel = _truncated_normal(rng, (cin, len(LABELS)), np.sqrt(1.0 / cin))
    params["logits"] = {"kernel": kernel, "bias": np.zeros(len(LABELS), np.float32)}
    return params


def build(seed: int = 0) -> Model:
    """The starter architecture with random weights (:func:`init_params`) drawn from ``seed``."""
    net = StarterNet()
    params = init_params(seed)

    def apply_fn(p, images, layers):
        return net.apply({"params": p}, images, tuple(layers))

    return Model(
        name="starter",
        apply_fn=apply_fn,
        params=params,
        layers=LAYERS,
        input_spec=INPUT_SPEC,
        logits_layer="logits",
        labels=LABELS,
    )
