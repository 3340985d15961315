"""How much each concept matters for a class: CRAFT's Sobol total-order indices and the
cheaper gradient x concept.

A layer's activations ``A [..., C]`` are factored as ``A ~= U W``: codes ``U [..., K]`` (from
``encode(A)``) times concept directions ``W [K, C]``. Both estimators take ``W`` and ``encode``
(any factorization: NMF, PCA, a dictionary...) and a class ``target``:

* :func:`sobol_importance` (Fel et al., *CRAFT*, CVPR 2023): every concept of an image is
  scaled by a random mask value ``M_k in [0, 1]`` -- ``A' = (U * M) W`` -- the rest of the
  network runs from the layer to the class logit, and the total-order Sobol index of ``M_k``
  (how much of the logit's variance goes away when ``M_k`` alone is fixed, interactions
  included) is the concept's importance for that image. Masks come from a scrambled Sobol
  sequence in the Saltelli layout (:func:`sobol_design`); the indices from the Jansen
  estimator (:func:`sobol_total_indices`).
* :func:`gradient_importance`: ``sum over positions of U_k * (d logit / d A . W_k)`` -- the
  first-order (linear) share of the logit carried by each concept; one backward pass per
  batch of images.

Both return a :class:`ConceptImportance`; :func:`importance_agreement` says how well two of
them rank the concepts alike.
"""

from __future__ import annotations

import dataclasses
import numbers
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lucidax._batching import pad_batch
from lucidax.models import Model, apply_perturbed, normalize_layers, suggest

__all__ = [
    "ConceptImportance",
    "gradient_importance",
    "importance_agreement",
    "sobol_design",
    "sobol_importance",
    "sobol_total_indices",
]

Encode = Callable[[jax.Array], jax.Array]

#: Logit variance below which an image's Sobol indices are all zero (the masks change nothing).
_MIN_VARIANCE = 1e-12


# ---------------------------------------------------------------------------------------------
# the result
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class ConceptImportance:
    """Importance of each of ``K`` concepts for one class.

    Attributes:
      method: ``"sobol"`` (total-order Sobol indices, >= 0) or ``"gradient"`` (gradient x
        concept, signed: negative for a concept that lowers the logit).
      target: the class index.
      target_name: the class label (``model.labels[target]``), or None without labels.
      layer: the layer the concepts live in.
      per_image: ``float64 [n, K]``: the importance of each concept in each image.
      mean: ``[K]``: the mean over images (the concept's importance for the class).
      std: ``[K]``: the standard deviation over images.
      ranking: ``int64 [K]``: concept indices by decreasing ``mean``.
      settings: how it was computed (designs, seed, residual... for Sobol).

    Example:
      >>> import numpy as np
      >>> import lucidax.models as lm
      >>> from lucidax.concepts import gradient_importance, layer_activations, nmf
      >>> model = lm.load("starter")
      >>> images = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
      >>> rows, grid = layer_activations(model, model.params, images, "conv5", progress=False)
      >>> fact = nmf(rows, 3, iterations=20, progress=False)
      >>> imp = gradient_importance(model, model.params, images, "conv5", fact.W, fact.encode,
      ...                           target=3, progress=False)
      >>> imp.method, imp.target, imp.per_image.shape, imp.mean.shape, sorted(imp.ranking.tolist())
      ('gradient', 3, (2, 3), (3,), [0, 1, 2])
    """

    method: str
    target: int
    target_name: str | None
    layer: str
    per_image: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    ranking: np.ndarray
    settings: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def from_per_image(cls, method: str, target: int, target_name: str | None, layer: str,
                       per_image: Any, settings: dict | None = None) -> ConceptImportance:
        """The result of ``per_image [n, K]`` (mean, std and ranking computed from it)."""
        per = np.asarray(per_image, np.float64)
        if per.ndim != 2 or len(per) == 0:
            raise ValueError(f"per_image must be a non-empty [n, K] array; got shape {per.shape}")
        mean = per.mean(axis=0)
        ranking = np.argsort(-mean, kind="stable").astype(np.int64)
        return cls(method=method, target=int(target), target_name=target_name, layer=layer,
                   per_image=per, mean=mean, std=per.std(axis=0), ranking=ranking,
                   settings=dict(settings or {}))

    @property
    def n_concepts(self) -> int:
        return int(self.mean.shape[0])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: lists of floats / ints, per-image values included."""
        return {
            "method": self.method,
            "target": self.target,
            "target_name": self.target_name,
            "layer": self.layer,
            "n_images": int(self.per_image.shape[0]),
            "n_concepts": self.n_concepts,
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "ranking": [int(v) for v in self.ranking],
            "per_image": [[float(v) for v in row] for row in self.per_image],
            "settings": dict(self.settings),
        }


# ---------------------------------------------------------------------------------------------
# the estimator (pure, model-free)
# ---------------------------------------------------------------------------------------------
def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{what} must be a positive integer; got {value!r}")
    return int(value)


def sobol_design(k: int, designs: int = 32, seed: int = 0) -> np.ndarray:
    """Masks ``float32 [(k + 2) * designs, k]`` in [0, 1] for :func:`sobol_total_indices`.

    Saltelli / Jansen layout: ``designs`` points of a scrambled Sobol sequence of dimension
    ``2k`` (``scipy.stats.qmc.Sobol``, seeded by ``seed``) give two independent matrices ``A``
    (first ``k`` columns) and ``B`` (last ``k``); the rows are ``A``, then ``B``, then for each
    ``i`` in ``0..k-1`` the matrix ``A_B^i`` (``A`` with column ``i`` taken from ``B``). A
    power of two for ``designs`` keeps the Sobol sequence balanced (32 as in CRAFT).

    Args:
      k: number of concepts (the dimension of a mask).
      designs: points of each of the matrices ``A`` and ``B``.
      seed: seeds the scrambling: equal seeds give equal masks.

    Returns:
      float32 ``[(k + 2) * designs, k]`` in [0, 1].

    Raises:
      ValueError: ``k`` or ``designs`` not a positive integer, or ``seed`` not an integer.

    Example:
      >>> from lucidax.concepts import sobol_design
      >>> masks = sobol_design(3, designs=8)
      >>> masks.shape, masks.dtype, bool(masks.min() >= 0 and masks.max() <= 1)
      ((40, 3), dtype('float32'), True)
    """
    from scipy.stats import qmc

    k = _positive_int(k, "k (the number of concepts)")
    designs = _positive_int(designs, "designs")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be an integer; got {seed!r}")
    sampler = qmc.Sobol(2 * k, scramble=True, seed=np.random.default_rng(int(seed)))
    with warnings.catch_warnings():  # "balance properties ... power of 2": documented above
        warnings.simplefilter("ignore", UserWarning)
        base = sampler.random(designs)
    a, b = base[:, :k], base[:, k:]
    mixed = np.repeat(a[None], k, axis=0)  # [k, designs, k]
    idx = np.arange(k)
    mixed[idx, :, idx] = b.T
    return np.concatenate([a, b, mixed.reshape(k * designs, k)]).astype(np.float32)


def sobol_total_indices(values: Any, k: int, designs: int) -> np.ndarray:
    """Total-order Sobol indices ``float64 [k]`` from the outputs ``values [(k + 2) * designs]``
    of a function on the rows of :func:`sobol_design` (same ``k`` and ``designs``).

    Jansen's estimator: ``ST_i = mean_j (f(A)_j - f(A_B^i)_j)^2 / (2 Var f)``, the variance
    taken over the ``2 * designs`` independent points ``A`` and ``B``. All zeros when the
    function does not vary (nothing to apportion).

    Args:
      values: the function's outputs ``[(k + 2) * designs]`` on the rows of
        ``sobol_design(k, designs)``, in the same order.
      k: number of inputs (concepts).
      designs: as given to :func:`sobol_design`.

    Returns:
      float64 ``[k]``: the total-order index of each input (>= 0; about 0 for an input the
      function ignores).

    Raises:
      ValueError: ``values`` does not hold ``(k + 2) * designs`` numbers, or ``k`` /
        ``designs`` is not a positive integer.

    Example:
      >>> from lucidax.concepts import sobol_design, sobol_total_indices
      >>> masks = sobol_design(3, designs=32)
      >>> values = masks[:, 0] + 2 * masks[:, 1]  # input 2 is ignored
      >>> st = sobol_total_indices(values, 3, 32)
      >>> st.shape, bool(st[1] > st[0] > st[2]), float(st[2])
      ((3,), True, 0.0)
    """
    k = _positive_int(k, "k (the number of concepts)")
    designs = _positive_int(designs, "designs")
    v = np.asarray(values, np.float64).reshape(-1)
    if v.shape[0] != (k + 2) * designs:
        raise ValueError(f"values must hold (k + 2) * designs = {(k + 2) * designs} outputs "
                         f"(k={k}, designs={designs}); got {v.shape[0]}")
    fa, fb = v[:designs], v[designs : 2 * designs]
    fc = v[2 * designs :].reshape(k, designs)
    var = np.var(np.concatenate([fa, fb]), ddof=1) if designs > 1 else 0.0
    if not np.isfinite(var) or var <= _MIN_VARIANCE * max(1.0, float(np.mean(fa**2))):
        return np.zeros(k)
    return np.mean((fa[None] - fc) ** 2, axis=1) / (2.0 * var)


# ---------------------------------------------------------------------------------------------
# checks shared by both methods
# ---------------------------------------------------------------------------------------------
def _check_model(model: Any) -> None:
    if not isinstance(model, Model):
        raise TypeError(f"model must be a lucidax.models.Model (lucidax.models.load / wrap); got "
                        f"{type(model).__name__}")
    if model.logits_layer is None:
        raise ValueError(f"model {model.name!r} has no logits_layer: concept importance for a "
                         f"class needs class logits (wrap(..., logits_layer=...))")


def _check_layer(model: Model, layer: Any) -> str:
    if not isinstance(layer, str):
        raise ValueError(f"layer must be a layer name of {model.name}; got {layer!r}")
    (name,) = normalize_layers([layer], model.layer_names)  # UnknownLayerError (a ValueError)
    if name == model.logits_layer:
        raise ValueError(f"layer {name!r} is the logits layer itself: pick a hidden layer "
                         f"before it")
    return name


def _class_count(model: Model) -> int:
    return model.channels(model.logits_layer)


def _resolve_class(model: Model, target: Any) -> tuple[int, str | None]:
    """``(index, label or None)`` of a class given by index or by label."""
    labels = tuple(model.labels or ())
    n = _class_count(model)
    if isinstance(target, str):
        if target in labels:
            index = labels.index(target)
        elif target.strip().lstrip("-").isdigit():  # an index given as text ("285", --class)
            index = int(target)
        elif labels:
            raise ValueError(suggest(target, labels, what="class label"))
        else:
            raise ValueError(f"model {model.name!r} has no labels: give the target class as an "
                             f"index 0..{n - 1}; got {target!r}")
    elif isinstance(target, numbers.Integral) and not isinstance(target, bool):
        index = int(target)
    else:
        examples = ", ".join(repr(s) for s in labels[:5])
        raise ValueError(f"target must be a class index or a class label"
                         f"{' (e.g. ' + examples + ')' if examples else ''}; got {target!r}")
    if not 0 <= index < n:
        raise ValueError(f"target class {index} out of range: {model.name} has classes "
                         f"0..{n - 1}")
    return index, (labels[index] if index < len(labels) else None)


def _check_images(model: Model, images: Any) -> np.ndarray:
    arr = np.asarray(images)
    if arr.ndim != 4 or len(arr) == 0:
        raise ValueError(f"images must be a non-empty float batch [N, H, W, C] in "
                         f"{model.input_spec.value_range}; got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"images must be floating point in {model.input_spec.value_range}; got "
                         f"dtype {arr.dtype} (convert uint8 with images / 255.0)")
    if arr.shape[-1] != model.input_spec.channels:
        raise ValueError(f"{model.name} takes {model.input_spec.channels} input channel(s) "
                         f"(NHWC); got images of shape {arr.shape}")
    return arr.astype(np.float32, copy=False)


def _check_w(model: Model, layer: str, W: Any) -> np.ndarray:
    w = np.asarray(W, np.float32)
    c = model.channels(layer)
    if w.ndim != 2 or w.shape[1] != c or w.shape[0] < 1:
        raise ValueError(f"W must be the concept directions [K, C] of layer {layer!r}, which has "
                         f"C = {c} channels; got shape {w.shape}")
    return w


def _encode(encode: Any, acts: jax.Array, k: int) -> jax.Array:
    if not callable(encode):
        raise ValueError(f"encode must be a function acts [..., C] -> codes [..., K] (e.g. a "
                         f"factorization's .encode); got {encode!r}")
    u = jnp.asarray(encode(acts), jnp.float32)
    if u.shape != (*acts.shape[:-1], k):
        raise ValueError(f"encode(acts) must give codes {(*acts.shape[:-1], k)} (acts [..., C] "
                         f"-> [..., K], K = {k} rows of W); got shape {u.shape}")
    return u


def _batch(batch_size: Any) -> int:
    return _positive_int(batch_size, "batch_size")


def _logit(out: jax.Array, k: jax.Array) -> jax.Array:
    """``[B]`` logit of class ``k`` (averaged over positions for a convolutional logit map)."""
    out = out.astype(jnp.float32)
    if out.ndim > 2:
        out = out.mean(axis=tuple(range(1, out.ndim - 1)))
    return jnp.take(out, k, axis=-1)


def _acts_fn(model: Model, layer: str):
    """Jitted ``(params, images [B, H, W, 3]) -> acts [B, ...]`` of ``layer``."""

    def build(shell: Model):
        def fn(params, images):
            return shell.apply(params, images, (layer,))[layer]

        return fn

    return model.program(("concepts.importance.acts", layer), build)


def _layer_acts(model, params, arr, layer, batch_size) -> np.ndarray:
    fn = _acts_fn(model, layer)
    b = min(batch_size, len(arr))
    parts = []
    for i in range(0, len(arr), b):
        chunk = arr[i : i + b]
        parts.append(np.asarray(fn(params, jnp.asarray(pad_batch(chunk, b))))[: len(chunk)])
    return np.concatenate(parts)


# ---------------------------------------------------------------------------------------------
# Sobol (CRAFT)
# ---------------------------------------------------------------------------------------------
def _sobol_fn(model: Model, layer: str, residual: bool):
    """Jitted ``(params, image [1, H, W, 3], acts [...], codes [..., K], W [K, C],
    masks [B, K], k) -> logits [B]``: the class-``k`` logit of the image with its activation
    at ``layer`` replaced by ``(codes * mask) W`` (``+ acts - codes W`` with ``residual``).

    The masks are vmapped over the perturbation only: the network up to ``layer`` depends on
    the image alone, so it runs once per call, and only the rest runs ``B`` times."""

    def build(shell: Model):
        logits = shell.logits_layer

        def fn(params, image, acts, codes, w, masks, k):
            base = codes @ w if residual else acts  # what the masked reconstruction replaces

            def one(mask):
                delta = (codes * mask) @ w - base
                out = apply_perturbed(shell, params, image, (logits,), {layer: delta[None]})
                return _logit(out[logits], k)[0]

            return jax.vmap(one)(masks)

        return fn

    return model.program(("concepts.importance.sobol", layer, bool(residual)), build)


def sobol_importance(
    model: Model,
    params: Any,
    images: Any,
    layer: str,
    W: Any,
    encode: Encode,
    target: int | str,
    *,
    designs: int = 32,
    batch_size: int = 128,
    seed: int = 0,
    residual: bool = False,
    progress: bool = True,
) -> ConceptImportance:
    """CRAFT's concept importance for a class: total-order Sobol indices of concept masks.

    For each image: ``A = acts[layer]`` (``[h, w, C]`` for a conv layer, ``[C]`` for a dense
    one), codes ``U = encode(A)`` ``[h, w, K]``; for each of the ``(K + 2) * designs`` masks
    ``M [K]`` of :func:`sobol_design` (one value per concept, the same at every position) the
    activation becomes ``A' = (U * M) W`` and the rest of the network gives the ``target``
    logit; :func:`sobol_total_indices` turns these into ``[K]`` indices. ``per_image`` holds
    them, ``mean`` their average over images.

    Args:
      model: the network; it must have a ``logits_layer``.
      params: its parameters (``model.params``).
      images: float ``[N, H, W, C]`` in the model's value range ([0, 1] for the zoo),
        typically images of the ``target`` class.
      layer: where the concepts live.
      W: concept directions ``[K, C]`` (``C`` = channels of ``layer``).
      encode: ``acts [..., C] -> codes [..., K]`` (jittable; a factorization's ``encode``).
      target: class index, or class label of ``model.labels``.
      designs: Sobol points per matrix (a power of two; CRAFT: 32): ``(K + 2) * designs``
        forward passes of the network after ``layer`` per image.
      batch_size: masks evaluated per call of the compiled program (the last batch padded).
      seed: seeds the scrambled Sobol sequence: equal seeds give equal results.
      residual: if True, ``A' = (U * M) W + (A - U W)``: the reconstruction error is kept, so
        a mask of ones gives the original activation. False (default, as CRAFT) drops it:
        the logit is explained by the concepts alone.
      progress: tqdm bar over the images.

    Returns:
      :class:`ConceptImportance` with ``method="sobol"`` (``per_image [N, K]``).

    Raises:
      TypeError: ``model`` is not a :class:`lucidax.models.Model`.
      ValueError: the model has no logits layer, ``layer`` is unknown or the logits layer
        itself, ``target`` is not a class of the model, ``images`` are not a float batch
        ``[N, H, W, C]``, ``W`` is not ``[K, C]`` for ``layer``, or ``encode`` does not give
        codes ``[..., K]``.

    Example:
      >>> import numpy as np
      >>> import lucidax.models as lm
      >>> from lucidax.concepts import sobol_importance, layer_activations, nmf
      >>> model = lm.load("starter")
      >>> images = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
      >>> rows, grid = layer_activations(model, model.params, images, "conv5", progress=False)
      >>> fact = nmf(rows, 3, iterations=20, progress=False)
      >>> imp = sobol_importance(model, model.params, images, "conv5", fact.W, fact.encode,
      ...                        target=3, designs=4, progress=False)
      >>> imp.per_image.shape, imp.settings["evaluations_per_image"], bool((imp.mean >= 0).all())
      ((2, 3), 20, True)
    """
    _check_model(model)
    layer = _check_layer(model, layer)
    index, name = _resolve_class(model, target)
    arr = _check_images(model, images)
    w = _check_w(model, layer, W)
    k = w.shape[0]
    designs = _positive_int(designs, "designs")
    b = _batch(batch_size)
    masks = sobol_design(k, designs, seed)
    n_eval = len(masks)
    b = min(b, n_eval)
    batches = [jnp.asarray(pad_batch(masks[i : i + b], b)) for i in range(0, n_eval, b)]
    fn = _sobol_fn(model, layer, residual)
    acts = _layer_acts(model, params, arr, layer, b)
    wj = jnp.asarray(w)
    kj = jnp.asarray(index, jnp.int32)
    from tqdm.auto import tqdm

    per_image = np.zeros((len(arr), k))
    for i in tqdm(range(len(arr)), desc=f"sobol {model.name}:{layer}", unit="image",
                  disable=not progress, leave=False):
        a = jnp.asarray(acts[i])
        u = _encode(encode, a, k)
        image = jnp.asarray(arr[i : i + 1])
        values = np.concatenate([np.asarray(fn(params, image, a, u, wj, m, kj))
                                 for m in batches])[:n_eval]
        per_image[i] = sobol_total_indices(values, k, designs)
    return ConceptImportance.from_per_image(
        "sobol", index, name, layer, per_image,
        {"designs": designs, "seed": int(seed), "residual": bool(residual),
         "evaluations_per_image": n_eval})


# ---------------------------------------------------------------------------------------------
# gradient x concept
# ---------------------------------------------------------------------------------------------
def _grad_fn(model: Model, layer: str):
    """Jitted ``(params, images [B, H, W, 3], k) -> (acts [B, ...], d logit_k / d acts)``."""

    def build(shell: Model):
        logits = shell.logits_layer

        def fn(params, images, k):
            acts = shell.apply(params, images, (layer,))[layer]

            def total(delta):
                out = apply_perturbed(shell, params, images, (logits,), {layer: delta})
                return jnp.sum(_logit(out[logits], k))

            return acts, jax.grad(total)(jnp.zeros_like(acts))

        return fn

    return model.program(("concepts.importance.gradient", layer), build)


def gradient_importance(
    model: Model,
    params: Any,
    images: Any,
    layer: str,
    W: Any,
    encode: Encode,
    target: int | str,
    *,
    batch_size: int = 32,
    progress: bool = True,
) -> ConceptImportance:
    """Gradient x concept: ``importance_k = sum over positions of U_k * (g . W_k)``, with
    ``g = d logit / d A`` at ``layer`` (``[h, w, C]``) and ``U = encode(A)`` ``[h, w, K]``.

    The first-order share of the ``target`` logit carried by each concept (exact for a
    network linear after ``layer`` with ``A = U W``). Signed: a concept that lowers the logit
    gets a negative value. One forward and one backward pass per batch of ``batch_size``
    images: much cheaper than :func:`sobol_importance`.

    Args:
      model: the network; it must have a ``logits_layer``.
      params: its parameters (``model.params``).
      images: float ``[N, H, W, C]`` in the model's value range ([0, 1] for the zoo),
        typically images of the ``target`` class.
      layer: where the concepts live.
      W: concept directions ``[K, C]`` (``C`` = channels of ``layer``).
      encode: ``acts [..., C] -> codes [..., K]`` (jittable; a factorization's ``encode``).
      target: class index, or class label of ``model.labels``.
      batch_size: images per forward / backward pass (the last batch padded).
      progress: tqdm bar over the batches.

    Returns:
      :class:`ConceptImportance` with ``method="gradient"`` (``per_image [N, K]``).

    Raises:
      TypeError: ``model`` is not a :class:`lucidax.models.Model`.
      ValueError: as :func:`sobol_importance` (no logits layer, unknown layer or class, bad
        ``images``, ``W`` or ``encode``).

    Example:
      >>> import numpy as np
      >>> import lucidax.models as lm
      >>> from lucidax.concepts import gradient_importance, layer_activations, nmf
      >>> model = lm.load("starter")
      >>> images = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
      >>> rows, grid = layer_activations(model, model.params, images, "conv5", progress=False)
      >>> fact = nmf(rows, 3, iterations=20, progress=False)
      >>> imp = gradient_importance(model, model.params, images, "conv5", fact.W, fact.encode,
      ...                           target="3", progress=False)
      >>> imp.method, imp.target_name, imp.per_image.shape
      ('gradient', '3', (2, 3))
    """
    _check_model(model)
    layer = _check_layer(model, layer)
    index, name = _resolve_class(model, target)
    arr = _check_images(model, images)
    w = _check_w(model, layer, W)
    k = w.shape[0]
    b = min(_batch(batch_size), len(arr))
    fn = _grad_fn(model, layer)
    wj = jnp.asarray(w)
    kj = jnp.asarray(index, jnp.int32)
    from tqdm.auto import tqdm

    parts = []
    for i in tqdm(range(0, len(arr), b), desc=f"gradient x concept {model.name}:{layer}",
                  unit="batch", disable=not progress, leave=False):
        chunk = arr[i : i + b]
        acts, grad = fn(params, jnp.asarray(pad_batch(chunk, b)), kj)
        acts, grad = acts[: len(chunk)], grad[: len(chunk)]
        u = _encode(encode, acts, k)  # [n, ..., K]
        g = grad.astype(jnp.float32) @ wj.T  # [n, ..., K]: the gradient along each concept
        parts.append(np.asarray((u * g).reshape(len(chunk), -1, k).sum(axis=1)))
    return ConceptImportance.from_per_image("gradient", index, name, layer,
                                            np.concatenate(parts), {})


# ---------------------------------------------------------------------------------------------
# agreement
# ---------------------------------------------------------------------------------------------
def importance_agreement(a: ConceptImportance, b: ConceptImportance, *, top: int = 3,
                         absolute: bool = False) -> dict:
    """How alike two importances rank the same ``K`` concepts (e.g. Sobol vs gradient).

    Returns ``{"spearman": rho, "kendall": tau, "top_overlap": share, "top": t}``: Spearman's
    rank correlation and Kendall's tau of the two ``mean`` vectors (scipy; NaN when one is
    constant or ``K = 1``), and the share of the ``t = min(top, K)`` highest concepts of ``a``
    that are among the ``t`` highest of ``b``.

    ``absolute=True`` compares ``|mean|``: Sobol indices measure how much a concept moves the
    logit either way, gradient x concept is signed (a concept that lowers the logit ranks last
    by ``mean`` but high by magnitude).

    Args:
      a: one :class:`ConceptImportance` (its ``top`` concepts are looked for in ``b``).
      b: another one over the same ``K`` concepts.
      top: how many of the highest concepts to compare.
      absolute: compare the magnitudes ``|mean|`` rather than the signed means.

    Returns:
      ``{"spearman": float, "kendall": float, "top_overlap": float, "top": int}``.

    Raises:
      ValueError: ``a`` or ``b`` is not a :class:`ConceptImportance`, they rate different
        numbers of concepts, or ``top`` is not a positive integer.

    Example:
      >>> from lucidax.concepts import ConceptImportance, importance_agreement
      >>> a = ConceptImportance.from_per_image("sobol", 0, None, "conv5", [[0.1, 0.5, 0.2]])
      >>> b = ConceptImportance.from_per_image("gradient", 0, None, "conv5", [[0.2, 0.9, -0.4]])
      >>> agree = importance_agreement(a, b, top=1)
      >>> round(agree["spearman"], 2), agree["top_overlap"]
      (0.5, 1.0)
    """
    from scipy.stats import kendalltau, spearmanr

    for x, what in ((a, "a"), (b, "b")):
        if not isinstance(x, ConceptImportance):
            raise ValueError(f"{what} must be a ConceptImportance; got {type(x).__name__}")
    if a.n_concepts != b.n_concepts:
        raise ValueError(f"the two importances rate different numbers of concepts "
                         f"({a.n_concepts} and {b.n_concepts})")
    t = min(_positive_int(top, "top"), a.n_concepts)
    ma, mb = (np.abs(a.mean), np.abs(b.mean)) if absolute else (a.mean, b.mean)
    with warnings.catch_warnings():  # a constant input: NaN, documented above
        warnings.simplefilter("ignore")
        rho = spearmanr(ma, mb).statistic if a.n_concepts > 1 else float("nan")
        tau = kendalltau(ma, mb).statistic if a.n_concepts > 1 else float("nan")
    top_a = np.argsort(-ma, kind="stable")[:t]
    top_b = np.argsort(-mb, kind="stable")[:t]
    overlap = len(set(top_a.tolist()) & set(top_b.tolist())) / t
    return {"spearman": float(rho), "kendall": float(tau), "top_overlap": float(overlap),
            "top": t}
