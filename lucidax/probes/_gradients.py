"""Gradients of a class logit with respect to layer activations, in a CAV feature space,
and their on-disk cache."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lucidax._batching import pad_batch
from lucidax.models import Model, apply_perturbed, normalize_layers, suggest

from .._files import atomic_write
from ._cache import _digest, _safe
from ._data import ImageSet

#: TCAV feature spaces: the spatial mean of a layer (``[C]``) or its whole flattened map
#: (``[h * w * C]``, the paper's choice)
FEATURE_SPACES = ("mean", "flatten")
_GRAD_FORMAT = 1

# ----------------------------------------------------------------------------------------------
# gradients of a class logit with respect to layer activations
# ----------------------------------------------------------------------------------------------
def _check_space(reduce: str) -> str:
    if reduce not in FEATURE_SPACES:
        raise ValueError(suggest(str(reduce), FEATURE_SPACES, what="feature space (reduce)"))
    return reduce


def _grad_fn(model: Model, layers: tuple[str, ...], reduce: str):
    """The jitted ``(params, images, onehot) -> {layer: [B, D]}`` gradients: one program per
    architecture (:meth:`lucidax.models.Model.program`), shared by ``with_params`` copies."""

    def build(shell: Model):
        logits = shell.logits_layer

        def fn(params, images, onehot):
            acts = jax.eval_shape(lambda p, x: shell.apply(p, x, layers), params, images)
            deltas = {}
            for name in layers:
                s = acts[name].shape
                if reduce == "mean" and len(s) == 4:
                    s = (s[0], 1, 1, s[3])
                deltas[name] = jnp.zeros(s, acts[name].dtype)

            def logit(dl):
                out = apply_perturbed(shell, params, images, (logits,), dl)[logits]
                return jnp.sum(out.astype(jnp.float32) @ onehot)

            g = jax.grad(logit)(deltas)
            return {name: g[name].reshape(g[name].shape[0], -1) for name in layers}

        return fn

    return model.program(("probes.tcav.gradients", layers, reduce), build)


def layer_gradients(
    model: Model,
    params: Any,
    images: Any,
    layers: str | Sequence[str],
    target_class: int,
    *,
    reduce: str = "mean",
    batch_size: int = 50,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """``{layer: [N, D]}``: gradient of the ``target_class`` logit with respect to each layer's
    activation, in the CAV feature space of ``reduce`` (``"mean"``: summed over positions,
    ``D = C``; ``"flatten"``: ``D = H*W*C``). All layers come from one backward pass.

    Args:
      model: a :class:`lucidax.models.Model` with a logits layer.
      params: its parameters.
      images: ``[N, H, W, C]`` inputs (e.g. images of the class).
      layers: layer names or a comma-separated string.
      target_class: the logit index (or a label of a labelled model).
      reduce: ``"mean"`` or ``"flatten"`` (:data:`FEATURE_SPACES`).
      batch_size: images per backward pass.
      progress: show a tqdm progress bar.

    Example:
      >>> import numpy as np
      >>> import lucidax.models as lm
      >>> from lucidax.probes import layer_gradients
      >>> model = lm.load("starter")
      >>> images = np.random.default_rng(0).random((4, 64, 64, 3), dtype=np.float32)
      >>> grads = layer_gradients(model, model.params, images, "conv3,conv5", 3)
      >>> {k: v.shape for k, v in grads.items()}
      {'conv3': (4, 64), 'conv5': (4, 128)}
    """
    _check_model(model)
    names = normalize_layers(layers, model.layer_names)
    reduce = _check_space(reduce)
    k = _class_index(model, target_class)
    arr = np.asarray(images, np.float32)
    if arr.ndim != 4 or len(arr) == 0:
        raise ValueError(f"images must be a non-empty [N, H, W, C] array; got shape {arr.shape}")
    b = min(batch_size, len(arr))
    fn = _grad_fn(model, names, reduce)
    onehot = jnp.zeros(len(model.labels) if model.labels else _n_logits(model, params, arr),
                       jnp.float32).at[k].set(1.0)
    parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
    from tqdm.auto import tqdm

    for i in tqdm(range(0, len(arr), b), desc=f"gradients {model.name}", unit="batch",
                  disable=not progress, leave=False):
        chunk = arr[i : i + b]
        m = len(chunk)
        chunk = pad_batch(chunk, b)
        out = fn(params, jnp.asarray(chunk), onehot)
        for n in names:
            parts[n].append(np.asarray(out[n])[:m])
    return {n: np.concatenate(parts[n]) for n in names}


def _check_model(model: Any) -> None:
    if not isinstance(model, Model):
        raise TypeError(f"model must be a lucidax.models.Model; got {type(model).__name__}")
    if model.logits_layer is None:
        raise ValueError(f"model {model.name!r} has no logits_layer; TCAV needs class logits "
                         "(wrap(..., logits_layer=...))")


def _n_logits(model: Model, params: Any, arr: np.ndarray) -> int:
    spec = jax.ShapeDtypeStruct((1, *arr.shape[1:]), jnp.float32)
    out = jax.eval_shape(lambda p, x: model.apply(p, x, (model.logits_layer,)), params, spec)
    return int(out[model.logits_layer].shape[-1])


def _class_index(model: Model, target_class: int | str) -> int:
    labels = tuple(model.labels or ())
    if isinstance(target_class, str):
        if target_class in labels:
            return labels.index(target_class)
        if target_class.strip().lstrip("-").isdigit() and not labels:
            target_class = int(target_class)
        else:
            raise ValueError(suggest(target_class, labels, what="class label") if labels else
                             f"model {model.name!r} has no labels; give the class as an index")
    if isinstance(target_class, bool) or not isinstance(target_class, int | np.integer):
        raise TypeError(f"target_class must be a class index or label; got {target_class!r}")
    n = len(labels) if labels else None
    if target_class < 0 or (n is not None and target_class >= n):
        raise ValueError(f"target_class {target_class} out of range 0..{(n or 1) - 1}")
    return int(target_class)


def _cached_gradients(model, params, targets: ImageSet, layers, k, reduce, cache_dir,
                      batch_size, params_hash, progress=False):
    """Gradients per layer, read from / written to ``cache_dir`` (npy per layer)."""
    ident = {"format": _GRAD_FORMAT, "model": model.name, "weights": model.weights_source,
             "params": params_hash, "data": targets.key, "class": k, "reduce": reduce}
    paths = {}
    for name in layers:
        h = _digest({**ident, "layer": name})[:24]
        paths[name] = (os.path.join(cache_dir, f"grad-{_safe(name)}-{h}.npy")
                       if cache_dir else None)
    have = {}
    for n, p in paths.items():
        if p and os.path.isfile(p):
            try:
                g = np.load(p)
            except (OSError, ValueError):  # a damaged entry is recomputed
                continue
            if g.ndim == 2 and len(g) == targets.n:
                have[n] = g
    missing = tuple(n for n in layers if n not in have)
    if missing:
        fresh = layer_gradients(model, params, targets.images, missing, k, reduce=reduce,
                                batch_size=batch_size, progress=progress)
        for n in missing:
            have[n] = fresh[n]
            if paths[n]:
                buf = io.BytesIO()
                np.save(buf, fresh[n].astype(np.float32))
                atomic_write(paths[n], buf.getvalue())
    return {n: np.asarray(have[n], np.float64) for n in layers}, missing
