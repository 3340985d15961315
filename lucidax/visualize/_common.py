"""Private helpers shared by the modules of :mod:`lucidax.visualize` (random draws per image)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Key = Any  # a typed PRNG key or a batch of them ([B] typed or [B, 2] raw)


def is_key_batch(key: Key) -> bool:
    """True for a batch of per-image keys ([B] typed keys or [B, 2] raw keys)."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key.ndim == 1
    return key.ndim == 2


def draw(
    key: Key, b: int, shape: tuple[int, ...], fn: Callable[[Key, int], jax.Array]
) -> jax.Array:
    """Per-image random values of shape ``(b,) + shape``. ``fn(k, n)`` draws a flat vector of
    ``n`` values (flat draws compile several times faster on XLA:CPU than high-rank ones). One
    key: a single batched draw; a batch of ``b`` keys: image ``i`` drawn from ``key[i]`` alone."""
    size = int(np.prod(shape, dtype=np.int64))
    if is_key_batch(key):
        if key.shape[0] != b:
            raise ValueError(
                f"Got a batch of {key.shape[0]} per-image keys for {b} images; pass one key or "
                f"exactly one key per image."
            )
        return jax.vmap(lambda k: fn(k, size).reshape(shape))(key)
    return fn(key, b * size).reshape((b,) + shape)
