"""Occlusion (Zeiler & Fergus 2014): slide a patch of baseline pixels over the image and record
how much the target score drops.

The map at a pixel is the mean score drop ``score(image) - score(occluded)`` over every patch
position that covers the pixel. Every occluded copy of every image goes through one jitted
program, ``batch_size`` copies per forward pass.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lucidax.models import Model

from ._common import baseline_images, check_images, chunked_scores, make_scorer, program

__all__ = ["occlusion", "patch_masks"]


def _starts(size: int, patch: int, stride: int) -> list[int]:
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:  # always cover the last rows/columns
        starts.append(size - patch)
    return starts


def patch_masks(height: int, width: int, *, patch: int | tuple[int, int] = 8,
                stride: int | tuple[int, int] | None = None) -> np.ndarray:
    """float32 ``[P, H, W]``: 1 inside each patch position (row-major), 0 elsewhere.

    Args:
      height, width: the image size.
      patch: the patch side (or ``(h, w)``).
      stride: the step between patches (default: half the patch; the last position is
        added so every pixel is covered).

    Example:
      >>> from lucidax.attribute import patch_masks
      >>> masks = patch_masks(32, 32, patch=16)
      >>> masks.shape, float(masks.sum(axis=0).min())
      ((9, 32, 32), 1.0)
    """
    ph, pw = (patch, patch) if np.isscalar(patch) else patch
    sh, sw = (stride, stride) if stride is None or np.isscalar(stride) else stride
    sh = (ph // 2 or 1) if sh is None else sh
    sw = (pw // 2 or 1) if sw is None else sw
    for what, v in (("patch", ph), ("patch", pw), ("stride", sh), ("stride", sw)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{what} must be a positive int, got {v!r}")
    if ph > height or pw > width:
        raise ValueError(f"patch {ph}x{pw} is larger than the {height}x{width} images")
    ys, xs = _starts(height, ph, sh), _starts(width, pw, sw)
    masks = np.zeros((len(ys) * len(xs), height, width), np.float32)
    for i, (y, x) in enumerate((y, x) for y in ys for x in xs):
        masks[i, y : y + ph, x : x + pw] = 1.0
    return masks


def occlusion(
    model: Model,
    params: Any,
    images: Any,
    target: Any,
    *,
    patch: int | tuple[int, int] = 8,
    stride: int | tuple[int, int] | None = None,
    baseline: Any = "mean",
    batch_size: int = 128,
) -> jax.Array:
    """Occlusion maps ``[N, H, W]`` (positive: hiding the pixel lowers the target score).

    Args:
      model, params: the model and the parameters to attribute.
      images: float ``[N, H, W, C]``.
      target: class index, one class per image, or an Objective (see ``make_scorer``).
      patch: side (or ``(h, w)``) of the occluding square.
      stride: step between patch positions (default: half the patch); the last row/column
        of positions is always included so every pixel is covered.
      baseline: what the patch shows: a number, ``"mean"`` (the image's mean colour),
        ``"blur"`` or an array like the images.
      batch_size: occluded copies per forward pass.

    Example:
      >>> import numpy as np
      >>> import lucidax.models as lm
      >>> from lucidax.attribute import occlusion
      >>> model = lm.load("starter")
      >>> images = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
      >>> occlusion(model, model.params, images, target=3, patch=16).shape
      (2, 64, 64)
    """
    images = check_images(model, images)
    n, h, w, _ = images.shape
    masks = patch_masks(h, w, patch=patch, stride=stride)
    p = masks.shape[0]
    batch = max(1, min(int(batch_size), n * p))
    scorer = make_scorer(model, target, n, batch=batch, params=params, images=images)
    base = baseline_images(images, baseline)
    key = ("occlusion", scorer.key, n, h, w, masks.tobytes().__hash__(), batch)

    def build(shell):
        m = jnp.asarray(masks)
        count = jnp.maximum(m.sum(0), 1.0)

        def run(params, images, base, classes):
            def compose(ix):
                img, j = ix // p, ix % p
                mk = m[j][..., None]
                return images[img] * (1 - mk) + base[img] * mk, img

            s0 = chunked_scores(shell, params, scorer, lambda ix: (images[ix], ix), n, batch,
                                classes)
            s = chunked_scores(shell, params, scorer, compose, n * p, batch, classes)
            drop = s0[:, None] - s.reshape(n, p)
            return jnp.einsum("np,phw->nhw", drop, m) / count

        return run

    return program(model, key, build)(params, images, base, jnp.asarray(scorer.classes))
