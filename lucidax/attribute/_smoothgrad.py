"""SmoothGrad (Smilkov et al. 2017) and SmoothGrad-Squared (Hooker et al. 2019)."""

from __future__ import annotations

import functools
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lucidax.models import Model

from ._common import (
    REDUCTIONS,
    TRACE_COUNT,
    Attribution,
    as_key,
    batched_map,
    check_reduce,
    chunking,
    finish,
    grad_fn,
    loop_apply,
    model_fn,
    prepare,
    program,
)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _noise_jit(key, shape, total):
    """``[total, *shape]`` standard normal draws (its own program, shared by every model:
    random-number generation is slow to compile on XLA:CPU, so every SmoothGrad variant shares
    this one)."""
    return jax.random.normal(key, (total, *shape), jnp.float32)


def _smoothgrad_program(model: Model, spec, reduce, n_samples, squared, times_input, chunk):
    def build(shell):
        def run(params, x, tdata, noise, sigma):
            TRACE_COUNT["smoothgrad"] += 1
            grad = grad_fn(model_fn(shell, spec, params, tdata, apply=loop_apply(shell)))
            weights = (jnp.arange(noise.shape[0]) < n_samples).astype(x.dtype) / n_samples

            def one(nw):
                z, w = nw
                g = grad(x + sigma * z)[1]
                return w * (g * g if squared else g)

            g = jnp.sum(batched_map(one, (noise, weights), chunk), axis=0)
            s = model_fn(shell, spec, params, tdata)(x)
            raw = g * x if times_input else g
            return REDUCTIONS[reduce](raw), raw, s

        return run

    return program(model, ("smoothgrad", spec, reduce, n_samples, squared, times_input, chunk),
                   build)


def smoothgrad(
    model: Model, params: Any, images: Any, target: Any, *, key: Any = None,
    n_samples: int = 16, noise: float = 0.15, squared: bool = False,
    multiply_by_input: bool = False, batch_size: int = 16, reduce: str = "max_abs",
    return_raw: bool = False,
) -> jax.Array | Attribution:
    """SmoothGrad (Smilkov et al. 2017): the gradient averaged over ``n_samples`` noisy copies
    ``x + N(0, sigma^2)``, ``sigma = noise * (hi - lo)`` of the model's value range.

    Args:
      key: a ``jax.random`` key (or an int seed); None means ``jax.random.key(0)``. The same
        key gives the same maps.
      squared: average the squared gradient (SmoothGrad-Squared, Hooker et al. 2019).
      multiply_by_input: return ``x * mean gradient`` (a smoothed gradient x input).
      batch_size: noisy copies evaluated at once (vmapped); the rest runs sequentially.
      params: its parameters (``model.params``).
      images: ``[N, H, W, C]`` images in the model's value range.
      target: a class index or label, a sequence of ``N`` of them, ``"predicted"`` (each
        image's top class) or an objective (see :func:`target_classes`).
      reduce: how the channel axis becomes a map (:data:`REDUCTIONS`).
      return_raw: return an :class:`Attribution` (maps, raw attribution, target scores)
        instead of the maps.

    Example:
      >>> import numpy as np
      >>> import lucidax.models as lm
      >>> from lucidax.attribute import smoothgrad
      >>> model = lm.load("starter")
      >>> images = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
      >>> smoothgrad(model, model.params, images, target=3, n_samples=4).shape
      (2, 64, 64)
    """
    x, spec, tdata = prepare(model, params, images, target)
    if not isinstance(n_samples, numbers.Integral) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive int; got {n_samples!r}")
    if not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be >= 0 (a fraction of the value range); got {noise!r}")
    key = as_key(key)
    lo, hi = model.input_spec.value_range
    sigma = jnp.float32(noise * (hi - lo))
    chunk, total = chunking(int(n_samples), int(batch_size))
    noise = _noise_jit(key, tuple(x.shape), total)  # the padding draws get weight 0
    fn = _smoothgrad_program(model, spec, check_reduce(reduce), int(n_samples), bool(squared),
                             bool(multiply_by_input), chunk)
    maps, raw, s = fn(params, x, tdata, noise, sigma)
    return finish(maps, raw, s, return_raw=return_raw, method="smoothgrad")
