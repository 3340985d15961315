"""The random baseline map: what every attribution method should beat."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from lucidax.models import Model


def random_map(model: Model, params: Any, images: Any, target: Any = None, *,
               key: jax.Array | int = 0) -> jax.Array:
    """A uniform random map per image: the baseline every method should beat."""
    images = jnp.asarray(images)
    if isinstance(key, int):
        key = jax.random.key(key)
    return jax.random.uniform(key, images.shape[:3], jnp.float32)
