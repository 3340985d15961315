"""The random baseline map: what every attribution method should beat."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from lucidax.models import Model


def random_map(model: Model, params: Any, images: Any, target: Any = None, *,
               key: jax.Array | int = 0) -> jax.Array:
    """A uniform random map per image: the baseline every method should beat.

    Args:
      model: a :class:`lucidax.models.Model` (only its input shape is used).
      params: unused (the signature of every method).
      images: ``[N, H, W, C]`` images.
      target: unused.
      key: an int seed or a ``jax.random`` key.

    Example:
      >>> import numpy as np
      >>> import lucidax.models as lm
      >>> from lucidax.attribute import random_map
      >>> model = lm.load("starter")
      >>> images = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
      >>> random_map(model, model.params, images, key=1).shape
      (2, 64, 64)
    """
    images = jnp.asarray(images)
    if isinstance(key, int):
        key = jax.random.key(key)
    return jax.random.uniform(key, images.shape[:3], jnp.float32)
