"""Surrogate-model attributions over superpixels: LIME and KernelSHAP.

Both hide random subsets of an image's superpixels (paint them with a baseline), score the
perturbed copies, and fit a linear model of the target score on the superpixel indicators:

* **LIME** (Ribeiro et al. 2016): each superpixel is kept with probability 1/2; weighted
  ridge regression with the exponential kernel on the cosine distance to the full image
  (``kernel_width`` 0.25, ``ridge`` 1, as in ``lime_image``).
* **KernelSHAP** (Lundberg & Lee 2017): coalition sizes drawn from the Shapley kernel
  ``(K-1) / (s (K-s))``, paired with their complements; least squares under the efficiency
  constraint ``sum(phi) = f(all) - f(none)`` (solved exactly by eliminating one superpixel).
  For a score that is linear in the superpixel indicators it recovers the coefficients
  exactly, which are then the Shapley values.

Superpixels come from :func:`superpixels`: SLIC from scikit-image when it is installed
(``method="auto"``/``"slic"``), else a regular grid (``"grid"``, pure numpy); or pass your own
label images as ``segments``. Sampling, every forward pass and the regressions run in one
jitted program.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lucidax.models import Model, suggest

from ._common import baseline_images, check_images, chunked_scores, make_scorer, program

__all__ = [
    "SUPERPIXEL_METHODS",
    "kernel_shap",
    "kernel_shap_values",
    "lime",
    "lime_coefficients",
    "superpixels",
]

#: superpixel algorithms of :func:`superpixels` (``method=``), LIME and KernelSHAP
SUPERPIXEL_METHODS = ("auto", "slic", "grid")


def _grid_labels(h: int, w: int, n_segments: int) -> np.ndarray:
    side = max(1.0, np.sqrt(h * w / max(1, n_segments)))
    rows, cols = max(1, round(h / side)), max(1, round(w / side))
    ry = np.minimum(np.arange(h) * rows // h, rows - 1)
    rx = np.minimum(np.arange(w) * cols // w, cols - 1)
    return (ry[:, None] * cols + rx[None, :]).astype(np.int32)


def superpixels(
    images: Any, *, method: str = "auto", n_segments: int = 40, compactness: float = 10.0,
    sigma: float = 0.5,
) -> np.ndarray:
    """Superpixel labels ``int32 [N, H, W]``, numbered ``0 .. K_i - 1`` in each image.

    Args:
      images: float ``[N, H, W, C]`` in ``[0, 1]``.
      method: ``"slic"`` (``skimage.segmentation.slic``), ``"grid"`` (regular blocks) or
        ``"auto"`` (SLIC).
      n_segments: approximate number of superpixels per image.
      compactness, sigma: SLIC's colour/space trade-off and pre-smoothing.

    Example:
      >>> import numpy as np
      >>> from lucidax.attribute import superpixels
      >>> images = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
      >>> labels = superpixels(images, method="grid", n_segments=16)
      >>> labels.shape, int(labels.max()) + 1
      ((2, 64, 64), 16)
    """
    arr = np.asarray(images, np.float32)
    if arr.ndim != 4:
        raise ValueError(f"superpixels needs a batch [N, H, W, C]; got shape {arr.shape}")
    if method not in SUPERPIXEL_METHODS:
        raise ValueError(suggest(method, SUPERPIXEL_METHODS, what="superpixel method"))
    if not isinstance(n_segments, (int, np.integer)) or n_segments < 1:
        raise ValueError(f"n_segments must be a positive int, got {n_segments!r}")
    n, h, w, c = arr.shape
    if method == "auto":
        method = "slic"
    if method == "grid":
        return np.broadcast_to(_grid_labels(h, w, n_segments), (n, h, w)).copy()
    from skimage.segmentation import slic

    out = np.empty((n, h, w), np.int32)
    for i in range(n):
        img = arr[i] if c in (1, 3) else arr[i, ..., :3]
        lab = slic(np.clip(img, 0, 1).astype(np.float64), n_segments=int(n_segments),
                   compactness=float(compactness), sigma=sigma, start_label=0,
                   channel_axis=-1, enforce_connectivity=True)
        out[i] = np.unique(lab, return_inverse=True)[1].reshape(h, w)
    return out


def _segments(images: jax.Array, segments: Any, superpixel: str, n_segments: int) -> np.ndarray:
    n, h, w, _ = images.shape
    if segments is None:
        return superpixels(np.asarray(images), method=superpixel, n_segments=n_segments)
    seg = np.asarray(segments)
    if seg.ndim == 2:
        seg = np.broadcast_to(seg, (n, h, w))
    if seg.shape != (n, h, w) or seg.dtype.kind not in "iu":
        raise ValueError(f"segments must be integer labels [N, H, W] = {(n, h, w)} (or one "
                         f"[H, W] for all images); got {seg.dtype} {seg.shape}")
    return np.stack([np.unique(s, return_inverse=True)[1].reshape(h, w) for s in seg]).astype(
        np.int32)


def _key(key: Any) -> jax.Array:
    if isinstance(key, (int, np.integer)):
        return jax.random.key(int(key))
    return key


def _sample_lime(key, k_max, samples, n_active):
    z = jax.random.bernoulli(key, 0.5, (samples, k_max)).astype(jnp.float32)
    z = z.at[0].set(1.0)  # the unperturbed image, as lime_image does
    return z * (jnp.arange(k_max) < n_active)


def _sample_shap(key, k_max, samples, n_active):
    """Rows 0 / 1: no / every superpixel; then pairs (coalition, complement)."""
    half = (samples - 2 + 1) // 2
    active = jnp.arange(k_max) < n_active
    s = jnp.arange(1, max(k_max, 2))  # coalition sizes (one dummy entry when K_max = 1)
    valid = s < n_active
    logits = jnp.where(valid, -jnp.log(s * jnp.maximum(n_active - s, 1).astype(jnp.float32)),
                       -jnp.inf)
    logits = jnp.where(valid.any(), logits, 0.0)
    k1, k2 = jax.random.split(key)
    sizes = 1 + jax.random.categorical(k1, logits, shape=(half,))
    u = jnp.where(active, jax.random.uniform(k2, (half, k_max)), 2.0)
    ranks = jnp.argsort(jnp.argsort(u, axis=1), axis=1)
    z = (ranks < sizes[:, None]) & active
    comp = active & ~z
    rows = jnp.concatenate([jnp.zeros((1, k_max), bool), active[None], z, comp])[:samples]
    return rows.astype(jnp.float32)


def _fit_lime(z, y, n_active, kernel_width, ridge):
    k_max = z.shape[1]
    active = (jnp.arange(k_max) < n_active).astype(jnp.float32)
    dot = z.sum(1)
    cos = dot / jnp.maximum(jnp.sqrt(dot) * jnp.sqrt(n_active.astype(jnp.float32)), 1e-12)
    dist = 1.0 - cos
    wts = jnp.sqrt(jnp.exp(-(dist**2) / kernel_width**2))
    x = jnp.concatenate([jnp.ones((z.shape[0], 1)), z], axis=1)
    reg = jnp.concatenate([jnp.zeros(1), active * ridge + (1 - active)])
    a = x.T @ (wts[:, None] * x) + jnp.diag(reg)
    b = x.T @ (wts * y)
    beta = jnp.linalg.solve(a, b)
    return beta[1:] * active, beta[0]


def _fit_shap(z, y, n_active, ridge):
    k_max = z.shape[1]
    last = n_active - 1
    cols = (jnp.arange(k_max) < last).astype(jnp.float32)  # every active one but the last
    f0, f1 = y[0], y[1]
    delta = f1 - f0
    z, y = z[2:], y[2:]
    zl = z[:, last]
    x = (z - zl[:, None]) * cols
    t = y - f0 - zl * delta
    a = x.T @ x
    scale = jnp.maximum(jnp.trace(a) / jnp.maximum(cols.sum(), 1.0), 1.0)
    a = a + jnp.diag(cols * ridge * scale + (1 - cols))
    phi = jnp.linalg.solve(a, x.T @ t) * cols
    phi = phi.at[last].set(delta - phi.sum())
    return phi, f0


def _surrogate(kind, model, params, images, target, *, segments, superpixel, n_segments,
               samples, baseline, key, batch_size, kernel_width=0.25, ridge=1.0):
    images = check_images(model, images)
    n, h, w, _ = images.shape
    if not isinstance(samples, (int, np.integer)) or samples < 4:
        raise ValueError(f"samples must be an int >= 4, got {samples!r}")
    samples = int(samples)
    seg = _segments(images, segments, superpixel, n_segments)
    n_active = seg.reshape(n, -1).max(1) + 1
    k_max = int(n_active.max())
    batch = max(1, min(int(batch_size), n * samples))
    scorer = make_scorer(model, target, n, batch=batch, params=params, images=images)
    base = baseline_images(images, baseline)
    cache_key = (kind, scorer.key, n, h, w, k_max, samples, batch,
                 float(kernel_width), float(ridge))

    def build(shell):
        sample = _sample_lime if kind == "lime" else _sample_shap

        def run(params, images, base, classes, seg, n_active, key):
            keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(n))
            z = jax.vmap(lambda k, a: sample(k, k_max, samples, a))(keys, n_active)

            def compose(ix):
                img, s = ix // samples, ix % samples
                m = jnp.take_along_axis(z[img, s], seg[img].reshape(len(ix), -1), axis=1)
                m = m.reshape(len(ix), h, w, 1)
                return images[img] * m + base[img] * (1 - m), img

            y = chunked_scores(shell, params, scorer, compose, n * samples, batch, classes)
            y = y.reshape(n, samples)
            if kind == "lime":
                coef, icpt = jax.vmap(lambda zz, yy, a: _fit_lime(zz, yy, a, kernel_width,
                                                                   ridge))(z, y, n_active)
            else:
                coef, icpt = jax.vmap(lambda zz, yy, a: _fit_shap(zz, yy, a, ridge))(
                    z, y, n_active)
            maps = jnp.take_along_axis(coef, seg.reshape(n, -1), axis=1).reshape(n, h, w)
            return maps, coef, icpt

        return run

    fn = program(model, cache_key, build)
    maps, coef, icpt = fn(params, images, base, jnp.asarray(scorer.classes), jnp.asarray(seg),
                          jnp.asarray(n_active, jnp.int32), _key(key))
    return maps, coef, icpt, seg


def lime_coefficients(
    model: Model, params: Any, images: Any, target: Any, *, segments: Any = None,
    superpixel: str = "auto", n_segments: int = 40, samples: int = 256, baseline: Any = "mean",
    kernel_width: float = 0.25, ridge: float = 1.0, key: Any = 0, batch_size: int = 128,
) -> tuple[jax.Array, jax.Array, np.ndarray]:
    """LIME's per-superpixel weights: ``(coef [N, K_max], intercept [N], segments [N, H, W])``
    (``coef[i, k]`` is 0 for ``k`` at or past image i's number of superpixels). Options as
    :func:`lime`.

    Args:
      model, params: the model and its parameters.
      images: ``[N, H, W, C]`` images in the model's value range.
      target: a class index or label, one per image, ``"predicted"`` or an objective.
      segments: ``[N, H, W]`` superpixel labels (None: :func:`superpixels` with
        ``superpixel`` and ``n_segments``).
      superpixel, n_segments: see :func:`superpixels`.
      samples: perturbed copies per image.
      baseline: what a hidden superpixel shows (``"mean"``, ``"blur"``, a number or an array).
      ridge: ridge penalty of the linear fit.
      key: ``jax.random`` key or int seed of the sampled coalitions.
      batch_size: perturbed copies per forward pass.
      kernel_width: width of the exponential kernel on the cosine distance.

    Example:
      >>> import numpy as np
      >>> import lucidax.models as lm
      >>> from lucidax.attribute import lime_coefficients
      >>> model = lm.load("starter")
      >>> images = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
      >>> coef, intercept, segments = lime_coefficients(model, model.params, images, 3, samples=32,
      ...                                         superpixel="grid", n_segments=16)
      >>> coef.shape, intercept.shape
      ((2, 16), (2,))
    """
    _, coef, icpt, seg = _surrogate(
        "lime", model, params, images, target, segments=segments, superpixel=superpixel,
        n_segments=n_segments, samples=samples, baseline=baseline, key=key,
        batch_size=batch_size, kernel_width=kernel_width, ridge=ridge)
    return coef, icpt, seg


def lime(
    model: Model, params: Any, images: Any, target: Any, *, segments: Any = None,
    superpixel: str = "auto", n_segments: int = 40, samples: int = 256, baseline: Any = "mean",
    kernel_width: float = 0.25, ridge: float = 1.0, key: Any = 0, batch_size: int = 128,
) -> jax.Array:
    """LIME maps ``[N, H, W]``: each superpixel painted with its surrogate weight.

    Args:
      model, params, images, target: as every attribution method (target: class index, one
        class per image, or an Objective).
      segments: superpixel labels ``[N, H, W]`` (or ``[H, W]``); default :func:`superpixels`.
      superpixel, n_segments: how :func:`superpixels` segments when ``segments`` is None.
      samples: perturbed copies per image (the first is the unperturbed image).
      baseline: what hidden superpixels show (number, ``"mean"``, ``"blur"``, array).
      kernel_width: width of the exponential kernel on the cosine distance.
      ridge: ridge penalty of the weighted linear fit.
      key: ``jax.random`` key or int seed of the sampled subsets.
      batch_size: perturbed copies per forward pass.

    Example:
      >>> import numpy as np
      >>> import lucidax.models as lm
      >>> from lucidax.attribute import lime
      >>> model = lm.load("starter")
      >>> images = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
      >>> lime(model, model.params, images, target=3, samples=32, n_segments=8).shape
      (2, 64, 64)
    """
    maps, *_ = _surrogate(
        "lime", model, params, images, target, segments=segments, superpixel=superpixel,
        n_segments=n_segments, samples=samples, baseline=baseline, key=key,
        batch_size=batch_size, kernel_width=kernel_width, ridge=ridge)
    return maps


def kernel_shap_values(
    model: Model, params: Any, images: Any, target: Any, *, segments: Any = None,
    superpixel: str = "auto", n_segments: int = 40, samples: int = 256, baseline: Any = "mean",
    ridge: float = 1e-6, key: Any = 0, batch_size: int = 128,
) -> tuple[jax.Array, jax.Array, np.ndarray]:
    """KernelSHAP's per-superpixel Shapley estimates: ``(phi [N, K_max], f_none [N],
    segments [N, H, W])``; ``phi.sum(1) == f(all) - f(none)`` exactly. Options as
    :func:`kernel_shap`.

    Args:
      model, params: the model and its parameters.
      images: ``[N, H, W, C]`` images in the model's value range.
      target: a class index or label, one per image, ``"predicted"`` or an objective.
      segments: ``[N, H, W]`` superpixel labels (None: :func:`superpixels` with
        ``superpixel`` and ``n_segments``).
      superpixel, n_segments: see :func:`superpixels`.
      samples: perturbed copies per image.
      baseline: what a hidden superpixel shows (``"mean"``, ``"blur"``, a number or an array).
      ridge: ridge penalty of the linear fit.
      key: ``jax.random`` key or int seed of the sampled coalitions.
      batch_size: perturbed copies per forward pass.

    Example:
      >>> import numpy as np
      >>> import lucidax.models as lm
      >>> from lucidax.attribute import kernel_shap_values
      >>> model = lm.load("starter")
      >>> images = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
      >>> phi, f_none, segments = kernel_shap_values(model, model.params, images, 3, samples=32,
      ...                                          superpixel="grid", n_segments=16)
      >>> phi.shape, f_none.shape, segments.shape
      ((2, 16), (2,), (2, 64, 64))
    """
    _, phi, f0, seg = _surrogate(
        "shap", model, params, images, target, segments=segments, superpixel=superpixel,
        n_segments=n_segments, samples=samples, baseline=baseline, key=key,
        batch_size=batch_size, ridge=ridge)
    return phi, f0, seg


def kernel_shap(
    model: Model, params: Any, images: Any, target: Any, *, segments: Any = None,
    superpixel: str = "auto", n_segments: int = 40, samples: int = 256, baseline: Any = "mean",
    ridge: float = 1e-6, key: Any = 0, batch_size: int = 128,
) -> jax.Array:
    """KernelSHAP maps ``[N, H, W]``: each superpixel painted with its Shapley estimate.

    Args as :func:`lime`; ``samples`` counts the empty and full coalitions (rows 0 and 1)
    plus coalition/complement pairs; ``ridge`` is relative to the mean diagonal of the normal
    equations (a tiny value only for numerical safety).

    Args:
      model, params: the model and its parameters.
      images: ``[N, H, W, C]`` images in the model's value range.
      target: a class index or label, one per image, ``"predicted"`` or an objective.
      segments: ``[N, H, W]`` superpixel labels (None: :func:`superpixels` with
        ``superpixel`` and ``n_segments``).
      superpixel, n_segments: see :func:`superpixels`.
      samples: perturbed copies per image.
      baseline: what a hidden superpixel shows (``"mean"``, ``"blur"``, a number or an array).
      ridge: ridge penalty of the linear fit.
      key: ``jax.random`` key or int seed of the sampled coalitions.
      batch_size: perturbed copies per forward pass.

    Example:
      >>> import numpy as np
      >>> import lucidax.models as lm
      >>> from lucidax.attribute import kernel_shap
      >>> model = lm.load("starter")
      >>> images = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
      >>> kernel_shap(model, model.params, images, target=3, samples=32, n_segments=8).shape
      (2, 64, 64)
    """
    maps, *_ = _surrogate(
        "shap", model, params, images, target, segments=segments, superpixel=superpixel,
        n_segments=n_segments, samples=samples, baseline=baseline, key=key,
        batch_size=batch_size, ridge=ridge)
    return maps
