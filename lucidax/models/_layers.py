"""Building blocks shared by the zoo architectures (inference only, NHWC).

Everything here matches a PyTorch / TensorFlow counterpart numerically, so that pretrained
weights converted 1:1 reproduce the original network:

* :class:`Conv` -- TF-style ``"SAME"`` padding computed from the input size (asymmetric for
  stride 2: the extra pixel goes bottom/right, as TF and lucent's explicit pads do), or a
  symmetric integer padding as ``torch.nn.Conv2d(padding=p)``.
* :class:`BatchNorm` -- inference BatchNorm whose running statistics live in the *params*
  pytree next to its affine parameters (``scale``, ``bias``, ``mean``, ``var``), so that a
  model's parameters are one pytree.
* :func:`max_pool` (padding with ``-inf``), :func:`adaptive_avg_pool` (exactly
  ``torch.nn.AdaptiveAvgPool2d``), :func:`local_response_norm` (exactly
  ``torch.nn.LocalResponseNorm``).
* :func:`random_params` -- fast random initialization from parameter *shapes*
  (``jax.eval_shape`` of ``module.init``; no forward pass is compiled or run).
* :func:`torch_key_map` -- the key map from parameter paths to PyTorch ``state_dict`` keys.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._base import InputSpec, LayerInfo, Model, unflatten_params

IMAGENET_NORMALIZATION = "(x - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225] (ImageNet)"


def _linen_apply(module: nn.Module, params: Any, images: jax.Array, layers: Sequence[str]):
    return module.apply({"params": params}, images, tuple(layers))


def linen_model(
    module: nn.Module,
    params: Any,
    *,
    name: str,
    layers: Sequence[LayerInfo],
    normalization: str,
    logits_layer: str,
    side: int = 224,
    min_side: int = 1,
    labels: Sequence[str] | None = None,
) -> Model:
    """A zoo :class:`Model` around a Taps-style linen module taking ``(x, layers)`` (RGB in
    [0, 1], ``side`` px natural input)."""
    return Model(
        name=name,
        apply_fn=functools.partial(_linen_apply, module),
        params=params,
        layers=layers,
        input_spec=InputSpec(
            side=side, channels=3, value_range=(0.0, 1.0), normalization=normalization,
            min_side=min_side,
        ),
        logits_layer=logits_layer,
        labels=labels,
    )

__all__ = [
    "BatchNorm",
    "Conv",
    "Dense",
    "InitRules",
    "adaptive_avg_pool",
    "global_avg_pool",
    "local_response_norm",
    "max_pool",
    "random_params",
    "relu",
    "relu6",
    "same_padding",
    "torch_key_map",
]

Padding = str | int
_DN = ("NHWC", "HWIO", "NHWC")


def relu(x: jax.Array) -> jax.Array:
    return jnp.maximum(x, 0.0)


def relu6(x: jax.Array) -> jax.Array:
    """``min(max(x, 0), 6)`` as ``jax.nn.relu6`` (what :mod:`lucidax.models.hooks` recognizes)."""
    return jax.nn.relu6(x)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding (before, after) of one spatial axis: output size ``ceil(size / stride)``.

    The odd pixel of an odd total goes *after* (bottom/right), as in TensorFlow.
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pads(x: jax.Array, kernel: int, stride: int, padding: Padding) -> list[tuple[int, int]]:
    if isinstance(padding, str):
        if padding != "SAME":
            raise ValueError(f"padding must be 'SAME' or an int, got {padding!r}")
        return [same_padding(int(x.shape[ax]), kernel, stride) for ax in (1, 2)]
    return [(int(padding), int(padding))] * 2


class Conv(nn.Module):
    """2-d convolution, NHWC activations, HWIO ``kernel`` (+ ``bias``).

    Attributes:
      features: output channels.
      kernel_size: square kernel side.
      strides: square stride.
      padding: ``"SAME"`` (TF-style, computed from the input size) or a symmetric int
        (``torch.nn.Conv2d(padding=p)``).
      use_bias: add a learned bias.
      groups: feature groups (``torch.nn.Conv2d(groups=...)``); ``groups == features ==``
        input channels is a depthwise convolution (kernel ``(k, k, 1, C)``).
    """

    features: int
    kernel_size: int
    strides: int = 1
    padding: Padding = "SAME"
    use_bias: bool = True
    groups: int = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.kernel_size
        kernel = self.param(
            "kernel",
            nn.initializers.variance_scaling(2.0, "fan_in", "normal"),
            (k, k, x.shape[-1] // self.groups, self.features),
        )
        y = lax.conv_general_dilated(
            x,
            kernel,
            window_strides=(self.strides, self.strides),
            padding=_pads(x, k, self.strides, self.padding),
            dimension_numbers=_DN,
            feature_group_count=self.groups,
        )
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,))
        return y


class Dense(nn.Module):
    """Fully connected layer: ``kernel`` (in, out) and ``bias``."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        return x @ kernel + bias


class BatchNorm(nn.Module):
    """Inference BatchNorm: ``(x - mean) / sqrt(var + eps) * scale + bias`` on the last axis.

    All four arrays are *params* (``scale``/``bias`` = torch ``weight``/``bias``,
    ``mean``/``var`` = torch ``running_mean``/``running_var``).
    """

    eps: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (c,))
        bias = self.param("bias", nn.initializers.zeros, (c,))
        mean = self.param("mean", nn.initializers.zeros, (c,))
        var = self.param("var", nn.initializers.ones, (c,))
        inv = scale * lax.rsqrt(var + self.eps)
        return x * inv + (bias - mean * inv)


def max_pool(x: jax.Array, window: int, stride: int, padding: Padding = "SAME") -> jax.Array:
    """Max pooling (NHWC); padded pixels never win (``-inf``), as TF "SAME" and torch pads."""
    pads = _pads(x, window, stride, padding)
    return lax.reduce_window(
        x,
        -jnp.inf,
        lax.max,
        (1, window, window, 1),
        (1, stride, stride, 1),
        [(0, 0), *pads, (0, 0)],
    )


def global_avg_pool(x: jax.Array) -> jax.Array:
    """Mean over the spatial axes: ``[N, H, W, C] -> [N, C]``."""
    return jnp.mean(x, axis=(1, 2))


def _adaptive_matrix(size: int, out: int) -> np.ndarray:
    """Row ``i`` averages input ``[floor(i*size/out), ceil((i+1)*size/out))`` (torch's bins)."""
    m = np.zeros((out, size), np.float32)
    for i in range(out):
        start = (i * size) // out
        end = -(-((i + 1) * size) // out)
        m[i, start:end] = 1.0 / (end - start)
    return m


def adaptive_avg_pool(x: jax.Array, output_size: int | tuple[int, int]) -> jax.Array:
    """``torch.nn.AdaptiveAvgPool2d(output_size)`` for NHWC ``x``, any input size."""
    oh, ow = (output_size, output_size) if isinstance(output_size, int) else output_size
    h, w = int(x.shape[1]), int(x.shape[2])
    if (h, w) == (oh, ow):
        return x
    mh = jnp.asarray(_adaptive_matrix(h, oh), x.dtype)
    mw = jnp.asarray(_adaptive_matrix(w, ow), x.dtype)
    return jnp.einsum("oh,pw,nhwc->nopc", mh, mw, x, precision=lax.Precision.HIGHEST)


def local_response_norm(
    x: jax.Array, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0
) -> jax.Array:
    """``torch.nn.LocalResponseNorm(size, alpha, beta, k)`` across the channels of NHWC ``x``.

    ``x / (k + alpha * mean_{size-window}(x**2)) ** beta``, the window zero-padded by
    ``size // 2`` before and ``(size - 1) // 2`` after (torch divides by ``size`` always).
    """
    sq = lax.reduce_window(
        x * x,
        0.0,
        lax.add,
        (1, 1, 1, size),
        (1, 1, 1, 1),
        [(0, 0), (0, 0), (0, 0), (size // 2, (size - 1) // 2)],
    )
    div = sq / size * alpha + k
    if beta == 0.5:
        return x * lax.rsqrt(div)
    return x / div**beta


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dict -> ``{"a/b/kernel": leaf}`` without touching the leaves."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        path = f"{prefix}/{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(_flat(v, path))
        else:
            out[path] = v
    return out


# -- random initialization ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class InitRules:
    """How :func:`random_params` fills each parameter, chosen by its leaf name.

    Kernels are drawn *uniformly* with the standard deviation of the usual normal schemes
    (uniform draws are several times faster for VGG's 100M-weight layer):
    conv kernels (4-d ``kernel``) std ``sqrt(2 / fan)`` (He), ``fan`` the fan-in
    (``kh*kw*cin``) or fan-out (``kh*kw*cout``, torchvision's choice) per ``conv_fan``;
    dense kernels (2-d ``kernel``) std ``dense_std`` or, when None, ``1 / sqrt(fan_in)``.
    ``bias``/``mean`` zeros; ``scale``/``var`` ones.
    """

    conv_fan: str = "fan_in"
    dense_std: float | None = None


def _uniform(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> np.ndarray:
    """Zero-mean uniform draws with standard deviation ``std`` (bound ``sqrt(3) * std``)."""
    x = rng.random(shape, dtype=np.float32)
    x -= np.float32(0.5)
    x *= np.float32(2.0 * np.sqrt(3.0) * std)
    return x


def _draw(path: str, shape: tuple[int, ...], rules: InitRules, rng: np.random.Generator):
    leaf = path.rsplit("/", 1)[-1]
    if leaf == "kernel" and len(shape) == 4:
        kh, kw, cin, cout = shape
        fan = kh * kw * (cin if rules.conv_fan == "fan_in" else cout)
        return _uniform(rng, shape, np.sqrt(2.0 / fan))
    if leaf == "kernel" and len(shape) == 2:
        std = rules.dense_std if rules.dense_std is not None else 1.0 / np.sqrt(shape[0])
        return _uniform(rng, shape, std)
    if leaf in ("bias", "mean"):
        return np.zeros(shape, np.float32)
    if leaf in ("scale", "var"):
        return np.ones(shape, np.float32)
    raise ValueError(f"no initialization rule for parameter {path!r}")


def random_params(
    module: nn.Module,
    sample_shape: Sequence[int],
    layers: tuple[str, ...],
    seed: int,
    rules: InitRules = InitRules(),
) -> dict[str, Any]:
    """Random parameters for ``module`` without running (or compiling) its forward pass.

    Shapes come from ``jax.eval_shape(module.init, ...)`` (tracing only); values are drawn
    per parameter from a NumPy generator seeded by ``(seed, index of the parameter)``, so
    a parameter's value does not depend on the others.
    """
    x = jax.ShapeDtypeStruct(tuple(sample_shape), jnp.float32)
    shapes = jax.eval_shape(
        lambda key, im: module.init(key, im, layers)["params"], jax.random.key(0), x
    )
    flat = _flat(shapes)
    values = {
        path: jnp.asarray(_draw(path, tuple(s.shape), rules, np.random.default_rng([seed, i])))
        for i, (path, s) in enumerate(sorted(flat.items()))
    }
    return unflatten_params(values)


# -- PyTorch key maps ---------------------------------------------------------------------------

_TORCH_LEAF = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}


def torch_key_map(
    params: Any, module_key: Callable[[str], str] = lambda p: p.replace("/", ".")
) -> dict[str, tuple[str, str]]:
    """``{"a/b/kernel": ("<module_key('a/b')>.weight", kind)}`` for every parameter.

    ``kernel`` maps to ``weight`` (kind ``conv`` for 4-d, ``linear`` for 2-d), BatchNorm's
    ``scale``/``mean``/``var`` to ``weight``/``running_mean``/``running_var``.
    """
    out: dict[str, tuple[str, str]] = {}
    for path, value in _flat(params).items():
        owner, leaf = path.rsplit("/", 1)
        if leaf == "kernel":
            kind = "conv" if np.ndim(value) == 4 else "linear"
            out[path] = (f"{module_key(owner)}.weight", kind)
        else:
            out[path] = (f"{module_key(owner)}.{_TORCH_LEAF[leaf]}", "plain")
    return out
