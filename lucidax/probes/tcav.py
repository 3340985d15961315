"""TCAV: testing with concept activation vectors (Kim et al., 2018).

For a layer ``l``, a concept ``C`` and a class ``k``:

1. **CAV**: an L2 logistic classifier separates the layer-``l`` features of concept examples
   from those of random examples; the CAV ``v`` is the unit normal of its decision boundary,
   pointing towards the concept (the probe solver of :mod:`lucidax.probes.linear`, every CAV
   of a run solved at once: one ``vmap``-ed L-BFGS program).
2. **Directional derivative** of the class-``k`` logit along ``v`` for an input ``x``:
   ``S(x) = grad_l logit_k(x) . v``, with the gradient taken with respect to the layer's
   activation (the network truncated from ``l``, :func:`lucidax.models.apply_perturbed`).
3. **TCAV score**: the fraction of class-``k`` inputs with ``S(x) > 0``.

Feature spaces (``reduce=``):

* ``"mean"`` (default): a conv activation ``a[h, w, c]`` is summarized by its spatial mean
  ``m[c]``, so CAVs live in channel space (``C`` dims: 24..128 for the starter model, 256..1024
  for GoogLeNet). A CAV ``v`` in that space is the perturbation ``a[h, w, :] += eps * v`` at
  every position (it moves ``m`` by exactly ``eps * v``), so the directional derivative is
  ``S = sum_{h,w} grad a[h, w, :] . v``: the gradient summed over positions, dotted with
  ``v``. It is computed as the gradient with respect to one ``[1, 1, C]`` perturbation per
  image broadcast over the map. The default because it is small (CAVs are well determined
  from 50 examples, fits are fast, features are cached cheaply) and translation-invariant,
  which suits concepts like colours and textures that can appear anywhere.
* ``"flatten"``: the whole activation ``H*W*C`` (the paper's choice): position-specific
  concepts, but huge for early layers (64*64*24 = 98k dims for the starter ``conv1``) and
  poorly determined from 50 examples. ``S = sum_{h,w,c} grad a . v``.

Dense layers are used as they are in both.

**Statistics** (what makes a TCAV score meaningful): ``runs`` repetitions, each with its own
concept examples and its own random negatives, give ``runs`` concept scores; ``runs``
random-vs-random repetitions (a random "concept" of the same size against other random
images) give the null scores. A two-sided two-sample t-test (Welch by default, Student with
``equal_var=True`` as in the paper) compares them, and the p-values of every (concept, layer)
test of a class are adjusted together (Holm by default; Benjamini-Hochberg with
``correction="bh"``).

The runs are independent when the pools are large enough: every run draws disjoint blocks
of a permutation of the concept pool and of the random pool (``runs * n_concept`` concept
images, ``runs * (2 * n_random + n_concept)`` random images). With a smaller pool each run
draws its own subsample, runs share images, their scores are correlated and the t-test
(which assumes independent runs) becomes anti-conservative; ``TCAVResult.independent_runs``
says which happened. (The paper reuses one fixed concept set in every run, which is the
extreme case: a random concept can then look "significant".)

Gradients do not depend on the CAV: they are computed once per (layer, class) and cached
next to the features, so every score is one matrix product.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import math
import os
import time
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lucidax.models.base import Model, normalize_layers, suggest

from .._files import (
    UnreadableImageError,
    atomic_write,
    check_int,
    prepare_out_dir,
    readable_images,
    save_json,
    save_plot,
)
from .extract import (
    _array_key,
    _key,
    _listing,
    _listing_key,
    _params_hash,
    _safe,
    extract,
    load_image,
)
from .linear import _bucket, _lbfgs_batch, _moments, _SolverConfig
from .stats import _check_correction, adjust_pvalues, ttest_ind

__all__ = [
    "CAVs",
    "FEATURE_SPACES",
    "ImageSet",
    "TCAVResult",
    "TCAVRun",
    "fit_cavs",
    "format_tcav",
    "layer_gradients",
    "plot_tcav",
    "run_tcav_cli",
    "tcav",
    "tcav_from_features",
    "tcav_scores",
    "write_tcav",
]

FEATURE_SPACES = ("mean", "flatten")
_GRAD_FORMAT = 1
_BLOCK_BYTES = 256 << 20  # largest feature block of one CAV solve


# ----------------------------------------------------------------------------------------------
# image sets (lazy: a warm cache never builds or reads the images)
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class ImageSet:
    """A named pool of images with a cache identity; the pixels are produced only on demand.

    Build with :meth:`from_array`, :meth:`from_folder`, :meth:`starter` or :meth:`photos`.
    """

    name: str
    key: str
    n: int
    load: Callable[[], np.ndarray] = dataclasses.field(repr=False)

    @functools.cached_property
    def images(self) -> np.ndarray:
        """float32 ``[n, H, W, C]`` in [0, 1]."""
        arr = np.asarray(self.load(), np.float32)
        if arr.ndim != 4 or len(arr) != self.n:
            raise ValueError(f"image set {self.name!r}: expected [{self.n}, H, W, C] images; "
                             f"got shape {arr.shape}")
        return arr

    @classmethod
    def from_array(cls, images: Any, name: str = "array") -> ImageSet:
        arr = np.asarray(images)
        if arr.ndim != 4:
            raise ValueError(f"image set {name!r}: images must be [N, H, W, C]; got shape "
                             f"{arr.shape}")
        if arr.dtype == np.uint8:
            arr = arr.astype(np.float32) / 255.0
        return cls(name, "array:" + _array_key(arr), len(arr), lambda: arr)

    @classmethod
    def from_folder(cls, path: str | os.PathLike, *, size: int, channels: int = 3,
                    name: str | None = None) -> ImageSet:
        """Every readable image under ``path`` (recursively; class sub-folders are merged),
        resized so its shorter side is ``size`` and center-cropped."""
        path = os.fspath(path)
        lst = _listing(path)
        if not lst.paths:
            raise ValueError(f"no images found in {path!r}")
        # checked now (a cheap header check), before any expensive work; unreadable files
        # are skipped with a warning naming them
        paths = tuple(readable_images(lst.paths, f"image folder {path!r}"))

        def load() -> np.ndarray:
            imgs, bad = [], []
            for p in paths:
                try:
                    imgs.append(load_image(p, size=size, channels=channels))
                except UnreadableImageError as e:
                    bad.append(f"{os.path.basename(e.path)} ({e.reason})")
            if bad:
                raise ValueError(f"{len(bad)} image file(s) in {path!r} cannot be decoded: "
                                 f"{', '.join(bad[:5])}; remove them")
            return np.stack(imgs)

        key = f"folder:{_listing_key(lst)}:{size}:{channels}"
        return cls(name or os.path.basename(os.path.normpath(path)), key, len(paths), load)

    @classmethod
    def starter(cls, n: int, *, split: str = "test", seed: int = 0,
                fixed: Mapping[str, int | str] | None = None,
                name: str | None = None) -> ImageSet:
        """``n`` images of the starter dataset (:func:`lucidax.models.starter.dataset`), with
        the label families in ``fixed`` held fixed (a concept) and the others random."""
        from lucidax.models import starter

        fixed = dict(fixed or {})
        for fam, val in fixed.items():  # validate now, not when the pixels are needed
            if fam not in starter.FAMILIES:
                raise ValueError(f"Unknown starter label family {fam!r}. Valid families: "
                                 f"{', '.join(starter.FAMILIES)}")
            names = starter.LABEL_NAMES[fam]
            if isinstance(val, str) and val not in names:
                raise ValueError(suggest(val, names, what=f"{fam} value"))
            if not isinstance(val, str) and not (isinstance(val, int | np.integer)
                                                 and 0 <= int(val) < len(names)):
                raise ValueError(f"{fam} value {val!r}: give a name or an index 0.."
                                 f"{len(names) - 1}; valid {fam} values: {', '.join(names)}")
        if split not in starter.SPLITS:
            raise ValueError(suggest(split, starter.SPLITS, what="split"))
        spec = ",".join(f"{k}={v}" for k, v in sorted(fixed.items()))
        label = name or (spec or "random")

        def load() -> np.ndarray:
            return starter.dataset(n, split=split, seed=seed, fixed=fixed).images

        return cls(label, f"starter-{_starter_version()}:{split}:{n}:{seed}:{spec}", int(n),
                   load)


    @classmethod
    def photos(cls, n: int, *, side: int | None = None, channels: int = 3, seed: int = 0,
               sources: Sequence[str] | None = None, name: str | None = None) -> ImageSet:
        """``n`` crops of the photos shipped in installed packages
        (:func:`lucidax.models.photos.photos`, at ``side`` px, default 224), of every source
        or of ``sources`` only."""
        from lucidax.models import photos as ph

        side = int(side or ph.DEFAULT_SIDE)
        if sources is not None:  # validate now, not when the pixels are needed
            sources = tuple(ph.resolve_sources(sources))
        # the resolved list: the sources available differ between installs
        spec = ",".join(sources if sources is not None else ph.available_sources())

        def load() -> np.ndarray:
            return ph.photos(int(n), side=side, seed=seed, sources=sources,
                             channels=channels).images

        return cls(name or "photos", f"photos-{_module_version(ph.__file__)}:{spec}:{n}:"
                   f"{side}:{channels}:{seed}", int(n), load)


@functools.cache
def _module_version(path: str) -> str:
    """Hash of a data module's code: a cached entry built by other code is not reused."""
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:12]


def _starter_version() -> str:
    """Hash of the starter dataset's code: a cached entry built by other code is not reused."""
    from lucidax.models.starter import data

    return _module_version(data.__file__)


class _Batches:
    """An iterable over an ImageSet's batches for :func:`extract` (consumed only on a miss)."""

    def __init__(self, images: ImageSet, batch: int):
        self.images, self.batch = images, batch

    def __iter__(self) -> Iterator[np.ndarray]:
        arr = self.images.images
        for i in range(0, len(arr), self.batch):
            yield arr[i : i + self.batch]


# ----------------------------------------------------------------------------------------------
# CAVs
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class CAVs:
    """``P`` concept activation vectors (one per problem of :func:`fit_cavs`).

    Attributes:
      directions: ``[P, D]`` unit normals of the decision boundaries in the original feature
        space, pointing towards the positive (concept) examples.
      accuracy: ``[P]`` held-out accuracy of each classifier (NaN when ``test_size=0``).
      converged: ``[P]`` whether each fit reached the solver tolerance.
      lambda_: the L2 strength (:mod:`lucidax.probes.linear` convention).
    """

    directions: np.ndarray
    accuracy: np.ndarray
    converged: np.ndarray
    lambda_: float


@functools.partial(jax.jit, static_argnames=("memory", "max_ls"))
def _solve_many(x, y, w, lam, b0, max_iter, tol, *, memory, max_ls):
    """Independent binary problems, each with its own data: ``vmap`` of the probe solver."""

    def one(xp, yp, wp, bp):
        d, k = xp.shape[1], yp.shape[1]
        params0 = (jnp.zeros((1, d, k), xp.dtype), bp[None])
        wt, b, it, gn, _ = _lbfgs_batch(
            xp, yp, wp[None], lam[None], jnp.zeros((1, d), xp.dtype),
            jnp.ones((1, d), xp.dtype), params0, max_iter, tol, memory=memory,
            max_ls=max_ls)
        return wt[0], b[0], gn[0]

    return jax.vmap(one)(x, y, w, b0)


def _as_problems(sets: Any, what: str) -> list[np.ndarray]:
    if isinstance(sets, np.ndarray) and sets.ndim == 3:
        return list(sets)
    out = [np.asarray(s) for s in sets]
    for s in out:
        if s.ndim != 2:
            raise ValueError(f"every {what} set must be [n, D] features; got shape {s.shape}")
    return out


def fit_cavs(
    positives: Any,
    negatives: Any,
    *,
    lam: float = 0.01,
    test_size: float = 1 / 3,
    seed: int = 0,
    max_iter: int = 300,
    tol: float = 1e-4,
    width: int | None = None,
) -> CAVs:
    """Fit ``P`` CAVs at once: problem ``i`` separates ``positives[i]`` ``[n_i, D]`` (label 1)
    from ``negatives[i]`` ``[m_i, D]`` (label 0).

    Each problem is an L2 logistic regression (2-class softmax, the objective of
    :func:`lucidax.probes.fit_logistic`; default ``lam=0.01`` is scikit-learn's ``C=1`` at 100
    examples) on features standardized with its own training statistics; a stratified
    ``test_size`` share of each problem is held out to report its accuracy (as in the TCAV
    paper; the CAV comes from the training share). All problems run in one compiled program
    (the probe solver ``vmap``-ed over problems, each with its own data), in blocks of at most
    256 MB of features. ``width`` pads the feature dimension (so that layers of different
    widths share one compiled program).
    """
    pos = _as_problems(positives, "positive")
    neg = _as_problems(negatives, "negative")
    if len(pos) != len(neg) or not pos:
        raise ValueError(f"need as many positive as negative sets (>= 1); got {len(pos)} and "
                         f"{len(neg)}")
    d = pos[0].shape[1]
    if any(s.shape[1] != d for s in pos + neg):
        raise ValueError("every set of one fit_cavs call must have the same feature width")
    if any(len(s) < 2 for s in pos + neg):
        raise ValueError("every positive and negative set needs at least 2 examples")
    if not 0.0 <= float(test_size) < 1.0:
        raise ValueError(f"test_size must be in [0, 1); got {test_size}")
    if not (math.isfinite(lam) and lam > 0):
        raise ValueError(f"lam must be a positive number; got {lam!r}")
    cfg = _SolverConfig(max_iter=int(max_iter), tol=float(tol))
    p_count = len(pos)
    n_max = max(len(a) + len(b) for a, b in zip(pos, neg, strict=True))
    n_pad = -(-n_max // 8) * 8
    d_pad = max(_bucket(d), width or 0)
    rng = np.random.default_rng(seed)

    x = np.zeros((p_count, n_pad, d_pad), np.float32)
    y = np.zeros((p_count, n_pad, 2), np.float32)
    w = np.zeros((p_count, n_pad), np.float32)
    test = np.zeros((p_count, n_pad), bool)
    b0 = np.zeros((p_count, 2), np.float32)
    mus, sds = np.zeros((p_count, d)), np.ones((p_count, d))
    for i, (a, b) in enumerate(zip(pos, neg, strict=True)):
        feats = np.concatenate([a, b]).astype(np.float64)
        if not np.all(np.isfinite(feats)):
            raise ValueError(f"problem {i}: features contain NaN or infinite values")
        lab = np.r_[np.ones(len(a), np.int64), np.zeros(len(b), np.int64)]
        hold = np.zeros(len(lab), bool)
        if test_size > 0:
            for c in (0, 1):
                idx = np.flatnonzero(lab == c)
                k = min(len(idx) - 1, max(1, int(round(test_size * len(idx)))))
                hold[rng.choice(idx, k, replace=False)] = True
        mu, sd = _moments(feats[~hold])
        mus[i], sds[i] = mu, sd
        n = len(lab)
        x[i, :n, :d] = (feats - mu) / sd
        y[i, np.arange(n), lab] = 1.0
        w[i, :n] = (~hold) / max(1, int((~hold).sum()))
        test[i, :n] = hold
        prior = np.bincount(lab[~hold], minlength=2) + 0.5
        b0[i] = np.log(prior / prior.sum()) - np.log(prior / prior.sum()).mean()

    per_block = max(1, min(p_count, _BLOCK_BYTES // (n_pad * d_pad * 4)))
    ws, bs, gs = [], [], []
    for s in range(0, p_count, per_block):
        sl = slice(s, min(p_count, s + per_block))
        take = np.arange(sl.start, sl.stop)
        if len(take) < per_block:  # pad the last block: one compiled shape
            take = np.r_[take, np.full(per_block - len(take), take[-1])]
        out = _solve_many(
            jnp.asarray(x[take]), jnp.asarray(y[take]), jnp.asarray(w[take]),
            jnp.asarray(lam, jnp.float32), jnp.asarray(b0[take]),
            jnp.asarray(cfg.max_iter, jnp.int32), jnp.asarray(cfg.tol, jnp.float32),
            memory=cfg.memory, max_ls=cfg.max_ls)
        k = sl.stop - sl.start
        wt, bb, gn = (np.asarray(o)[:k] for o in out)
        ws.append(wt)
        bs.append(bb)
        gs.append(gn)
    wt, bb, gn = np.concatenate(ws), np.concatenate(bs), np.concatenate(gs)

    normal_std = (wt[:, :d, 1] - wt[:, :d, 0]).astype(np.float64)  # standardized space
    dirs = normal_std / sds  # the same boundary in the original feature space
    norms = np.linalg.norm(dirs, axis=1, keepdims=True)
    dirs = np.where(norms > 0, dirs / np.maximum(norms, 1e-300), 0.0)
    if test_size > 0:
        z = np.einsum("pnd,pd->pn", x[:, :, :d].astype(np.float64), normal_std) \
            + (bb[:, 1] - bb[:, 0])[:, None]
        correct = ((z > 0) == (y[:, :, 1] > 0)) & test
        acc = correct.sum(axis=1) / np.maximum(test.sum(axis=1), 1)
    else:
        acc = np.full(p_count, np.nan)
    converged = gn <= cfg.tol
    return CAVs(directions=dirs, accuracy=acc.astype(np.float64), converged=converged,
                lambda_=float(lam))


def tcav_scores(gradients: Any, cavs: Any) -> np.ndarray:
    """TCAV scores: for every CAV (``[P, D]`` or a :class:`CAVs`), the fraction of inputs
    whose directional derivative ``gradients[i] . v`` is positive (``gradients`` ``[N, D]``)."""
    v = cavs.directions if isinstance(cavs, CAVs) else np.asarray(cavs, np.float64)
    v = np.atleast_2d(v)
    g = np.asarray(gradients, np.float64)
    if g.ndim != 2 or g.shape[1] != v.shape[1]:
        raise ValueError(f"gradients must be [N, {v.shape[1]}]; got shape {g.shape}")
    return np.mean(g @ v.T > 0, axis=0)


# ----------------------------------------------------------------------------------------------
# gradients of a class logit with respect to layer activations
# ----------------------------------------------------------------------------------------------
def _check_space(reduce: str) -> str:
    if reduce not in FEATURE_SPACES:
        raise ValueError(suggest(str(reduce), FEATURE_SPACES, what="feature space (reduce)"))
    return reduce


_GRAD_FNS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _grad_fn(model: Model, layers: tuple[str, ...], reduce: str, shape: tuple[int, ...]):
    per_model = _GRAD_FNS.setdefault(model, {})
    key = (layers, reduce, shape)
    if key in per_model:
        return per_model[key]
    from lucidax.models import apply_perturbed

    logits = model.logits_layer
    model_ref = weakref.ref(model)

    def fn(params, images, onehot):
        m = model_ref()
        acts = jax.eval_shape(lambda p, x: m.apply(p, x, layers), params, images)
        deltas = {}
        for name in layers:
            s = acts[name].shape
            if reduce == "mean" and len(s) == 4:
                s = (s[0], 1, 1, s[3])
            deltas[name] = jnp.zeros(s, acts[name].dtype)

        def logit(dl):
            out = apply_perturbed(m, params, images, (logits,), dl)[logits]
            return jnp.sum(out.astype(jnp.float32) @ onehot)

        g = jax.grad(logit)(deltas)
        return {name: g[name].reshape(g[name].shape[0], -1) for name in layers}

    per_model[key] = jax.jit(fn)
    return per_model[key]


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
    ``D = C``; ``"flatten"``: ``D = H*W*C``). All layers come from one backward pass."""
    _check_model(model)
    names = normalize_layers(layers, model.layer_names)
    reduce = _check_space(reduce)
    k = _class_index(model, target_class)
    arr = np.asarray(images, np.float32)
    if arr.ndim != 4 or len(arr) == 0:
        raise ValueError(f"images must be a non-empty [N, H, W, C] array; got shape {arr.shape}")
    b = min(batch_size, len(arr))
    fn = _grad_fn(model, names, reduce, (b, *arr.shape[1:]))
    onehot = jnp.zeros(len(model.labels) if model.labels else _n_logits(model, params, arr),
                       jnp.float32).at[k].set(1.0)
    parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
    from tqdm.auto import tqdm

    for i in tqdm(range(0, len(arr), b), desc=f"gradients {model.name}", unit="batch",
                  disable=not progress, leave=False):
        chunk = arr[i : i + b]
        m = len(chunk)
        if m < b:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], b - m, axis=0)])
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
        h = _key({**ident, "layer": name})[:24]
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


# ----------------------------------------------------------------------------------------------
# results
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class TCAVResult:
    """TCAV of one (concept, layer, class).

    Attributes:
      concept, layer, target: names (``target``: the class label).
      target_index: the class's logit index.
      scores: TCAV score of every run (concept CAVs, one per random negative set).
      null_scores: TCAV score of every random-vs-random run.
      mean, std: of ``scores`` (``std`` with ddof=1).
      null_mean, null_std: of ``null_scores``.
      statistic, df, p: the two-sided t-test of ``scores`` against ``null_scores``.
      p_adj: ``p`` adjusted over every (concept, layer) test of this class (``correction``).
      significant: ``p_adj <= alpha``.
      cav_accuracy: mean held-out accuracy of the concept CAVs (low: the layer does not
        separate the concept from random images, and its scores are noise).
      null_cav_accuracy: the same for the random-vs-random CAVs (about 0.5 expected).
      runs, n_concept, n_random, n_targets: sizes.
      independent_runs: every run used its own concept and random images (see the module
        docstring); False means the t-test's independence assumption is violated.
      reduce, test, correction, alpha: the configuration.
    """

    concept: str
    layer: str
    target: str
    target_index: int
    scores: tuple[float, ...]
    null_scores: tuple[float, ...]
    mean: float
    std: float
    null_mean: float
    null_std: float
    statistic: float
    df: float
    p: float
    p_adj: float
    significant: bool
    cav_accuracy: float
    null_cav_accuracy: float
    runs: int
    n_concept: int
    n_random: int
    n_targets: int
    independent_runs: bool
    reduce: str
    test: str
    correction: str
    alpha: float

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for k in ("scores", "null_scores"):
            out[k] = list(out[k])
        for k, v in out.items():
            if isinstance(v, float) and not math.isfinite(v):
                out[k] = None if math.isnan(v) else ("inf" if v > 0 else "-inf")
        return out


@dataclasses.dataclass(frozen=True, eq=False)
class TCAVRun:
    """What :func:`run_tcav_cli` produced: results, output files, a printable table, timings
    and which cached entries were reused."""

    results: tuple[TCAVResult, ...]
    out: str | None
    files: dict[str, str]
    table: str
    timings_s: dict[str, float]
    cache: dict[str, Any]


_CSV_COLUMNS = ("concept", "layer", "target", "mean", "std", "null_mean", "null_std",
               "statistic", "df", "p", "p_adj", "significant", "cav_accuracy", "runs",
               "independent_runs")


# ----------------------------------------------------------------------------------------------
# the experiment
# ----------------------------------------------------------------------------------------------
def _check_counts(runs: Any, n_concept: Any, n_random: Any, alpha: Any) -> None:
    for nm, v in (("runs", runs), ("n_concept", n_concept), ("n_random", n_random)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 2:
            raise ValueError(f"{nm} must be an integer >= 2; got {v!r}")
    if not (isinstance(alpha, int | float) and 0 < alpha < 1):
        raise ValueError(f"alpha must be in (0, 1); got {alpha!r}")


def _run_sets(pool: int, size: int, runs: int, rng: np.random.Generator,
              what: str) -> tuple[np.ndarray, bool]:
    """``[runs, size]`` indices into a pool: disjoint blocks of one permutation when the pool
    holds ``runs * size`` items (independent runs), else a fresh subsample per run."""
    if pool < size:
        raise ValueError(f"{what}: the pool has {pool} images but each run needs {size}")
    if pool >= runs * size:
        return rng.permutation(pool)[: runs * size].reshape(runs, size), True
    return np.stack([rng.choice(pool, size, replace=False) for _ in range(runs)]), False


def _features(model, params, images: ImageSet, layers, reduce, cache_dir, batch_size,
              progress, side, memory_check=True):
    """``{layer: [n, D]}`` via :func:`extract` (cached), in the CAV space of ``reduce``."""
    if reduce == "mean":
        f = extract(model, params, _Batches(images, batch_size), layers, reduce="mean",
                    batch_size=batch_size, cache_dir=cache_dir, data_key=images.key,
                    progress=progress, memory_check=memory_check)
        return {n: np.asarray(f[n], np.float64) for n in layers}, f.cache_hits
    out, hits = {}, []
    for n in layers:  # flatten: a ('grid', side) reduction per conv layer
        shape = model.layer_shape(n, side)
        if len(shape) == 3 and shape[0] != shape[1]:
            raise ValueError(f"reduce='flatten' needs square maps; {n!r} is {shape}")
        red = ("grid", int(shape[0])) if len(shape) == 3 else "mean"
        f = extract(model, params, _Batches(images, batch_size), (n,), reduce=red,
                    batch_size=batch_size, cache_dir=cache_dir, data_key=images.key,
                    progress=progress, memory_check=memory_check)
        out[n] = np.asarray(f[n], np.float64)
        hits += list(f.cache_hits)
    return out, tuple(hits)


def tcav(
    model: Model,
    params: Any,
    concepts: Mapping[str, ImageSet | Any],
    random: ImageSet | Any,
    targets: ImageSet | Any,
    target_class: int | str,
    layers: str | Sequence[str],
    *,
    runs: int = 20,
    n_concept: int = 50,
    n_random: int = 50,
    reduce: str = "mean",
    correction: str = "holm",
    alpha: float = 0.05,
    equal_var: bool = False,
    lam: float = 0.01,
    cav_test_size: float = 1 / 3,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 50,
    progress: bool = True,
    stats: dict[str, Any] | None = None,
    memory_check: bool = True,
) -> list[TCAVResult]:
    """TCAV of every concept at every layer for one class, with its significance test.

    Args:
      model, params: a :class:`lucidax.models.Model` with a ``logits_layer`` and its
        parameters.
      concepts: ``{name: images}``; images are an :class:`ImageSet` or an array
        ``[N, H, W, C]``. Each run uses ``n_concept`` of them.
      random: the random-image pool (ImageSet or array): every run draws ``n_random`` random
        negatives, and every random-vs-random run ``n_concept`` + ``n_random`` more.
      targets: inputs of the class (ImageSet or array), e.g. images of digit ``k``.
      target_class: the class (logit index or label).
      layers: layer names (or a comma-separated string).
      runs: concept runs and random-vs-random runs (the paper: 10-500; >= 20 recommended).
      reduce: CAV feature space, ``"mean"`` or ``"flatten"`` (module docstring).
      correction: ``"holm"`` (family-wise), ``"bh"`` (false discovery rate),
        ``"bonferroni"`` or ``"none"``, over every (concept, layer) test of this class.
      alpha: significance level of ``p_adj``.
      equal_var: Student's t-test (True, the paper's) instead of Welch's (False).
      lam, cav_test_size: L2 strength and held-out share of the CAV classifiers.
      seed: draws of the run sets and held-out splits.
      cache_dir: feature and gradient cache (None: nothing cached).
      stats: if given, filled with timings and cache facts.
      memory_check: refuse a feature extraction that cannot fit in memory (see
        :func:`lucidax.probes.extract`); False: try anyway.

    Returns one :class:`TCAVResult` per (concept, layer), concepts in the given order, layers
    in depth order.
    """
    t_start = time.perf_counter()
    _check_model(model)
    names = normalize_layers(layers, model.layer_names)
    names = tuple(sorted(names, key=model.layer_names.index))
    reduce = _check_space(reduce)
    correction = _check_correction(correction)
    _check_counts(runs, n_concept, n_random, alpha)
    if not concepts:
        raise ValueError("no concepts given")
    k = _class_index(model, target_class)
    label = str(model.labels[k]) if model.labels else str(k)
    concept_sets = {c: v if isinstance(v, ImageSet) else ImageSet.from_array(v, c)
                    for c, v in concepts.items()}
    random = random if isinstance(random, ImageSet) else ImageSet.from_array(random, "random")
    targets = targets if isinstance(targets, ImageSet) else ImageSet.from_array(targets,
                                                                               "targets")
    cache = None if cache_dir is None else os.fspath(cache_dir)
    if cache:
        os.makedirs(cache, exist_ok=True)
    side = model.input_spec.side
    info: dict[str, Any] = {"feature_cache_hits": [], "feature_cache_misses": []}

    # ---- gradients (once per layer and class) -------------------------------------------
    t0 = time.perf_counter()
    phash = _params_hash(params) if cache else None
    grads, grad_missing = _cached_gradients(model, params, targets, names, k, reduce, cache,
                                            batch_size, phash, progress)
    info["gradient_cache_misses"] = list(grad_missing)
    t_grad = time.perf_counter() - t0

    # ---- features (cached by extract) ---------------------------------------------------
    t0 = time.perf_counter()
    feats: dict[str, dict[str, np.ndarray]] = {}
    for src in (random, *concept_sets.values()):
        if src.key in feats:
            continue
        f, hits = _features(model, params, src, names, reduce, cache, batch_size, progress,
                            side, memory_check)
        feats[src.key] = f
        (info["feature_cache_hits"] if len(hits) == len(names)
         else info["feature_cache_misses"]).append(src.name)
    t_feat = time.perf_counter() - t0

    results = tcav_from_features(
        {c: feats[src.key] for c, src in concept_sets.items()}, feats[random.key], grads,
        runs=runs, n_concept=n_concept, n_random=n_random, correction=correction,
        alpha=alpha, equal_var=equal_var, lam=lam, cav_test_size=cav_test_size, seed=seed,
        target=label, target_index=k, reduce=reduce, stats=info)
    if stats is not None:
        stats.update(info)
        stats["timings_s"] = {"gradients": round(t_grad, 3), "features": round(t_feat, 3),
                              **info["timings_s"],
                              "total": round(time.perf_counter() - t_start, 3)}
    return results


def tcav_from_features(
    concepts: Mapping[str, Mapping[str, Any]],
    random: Mapping[str, Any],
    gradients: Mapping[str, Any],
    *,
    runs: int = 20,
    n_concept: int = 50,
    n_random: int = 50,
    correction: str = "holm",
    alpha: float = 0.05,
    equal_var: bool = False,
    lam: float = 0.01,
    cav_test_size: float = 1 / 3,
    seed: int = 0,
    target: str = "",
    target_index: int = -1,
    reduce: str = "mean",
    stats: dict[str, Any] | None = None,
) -> list[TCAVResult]:
    """The statistical core of :func:`tcav` on precomputed features.

    Args:
      concepts: ``{concept: {layer: features [N_c, D_l]}}``.
      random: ``{layer: features [N_r, D_l]}`` of the random pool.
      gradients: ``{layer: [N_t, D_l]}``: gradient of the class logit at each class input in
        the same feature space (:func:`layer_gradients`); its keys are the layers tested.
      Others: see :func:`tcav` (``target``/``target_index``/``reduce`` are only recorded).
    """
    _check_counts(runs, n_concept, n_random, alpha)
    if not concepts:
        raise ValueError("no concepts given")
    correction = _check_correction(correction)
    names = tuple(gradients)
    grads = {n: np.asarray(gradients[n], np.float64) for n in names}
    for src_name, f in (("random", random), *((f"concept {c!r}", v)
                                             for c, v in concepts.items())):
        for n in names:
            if n not in f:
                raise ValueError(f"{src_name} has no features for layer {n!r}")
            if np.shape(f[n])[1:] != grads[n].shape[1:]:
                raise ValueError(f"{src_name}, layer {n!r}: features of shape "
                                 f"{np.shape(f[n])} do not match the gradients "
                                 f"{grads[n].shape} (same feature space needed)")
    n_random_pool = len(random[names[0]])

    # ---- run sets: disjoint when the pools are large enough -----------------------------
    rng = np.random.default_rng(seed)
    rand_idx, rand_indep = _run_sets(n_random_pool, 2 * n_random + n_concept, runs, rng,
                                     "random pool")
    neg_idx = rand_idx[:, :n_random]
    null_pos_idx = rand_idx[:, n_random : n_random + n_concept]
    null_neg_idx = rand_idx[:, n_random + n_concept :]
    concept_idx = {c: _run_sets(len(f[names[0]]), n_concept, runs, rng, f"concept {c!r}")
                   for c, f in concepts.items()}

    # ---- every CAV: one solve per layer ------------------------------------------------
    t0 = time.perf_counter()
    widths = {n: grads[n].shape[1] for n in names}
    small = max((_bucket(d) for d in widths.values() if d <= 1024), default=0)
    cav_dirs: dict[tuple[str | None, str], np.ndarray] = {}
    cav_acc: dict[tuple[str | None, str], float] = {}
    converged = True
    for n in names:  # narrow layers share one compiled program (same padded width)
        rf = np.asarray(random[n], np.float64)
        pos = [rf[i] for i in null_pos_idx]
        neg = [rf[i] for i in null_neg_idx]
        tags: list[str | None] = [None]
        for c, f in concepts.items():
            cf = np.asarray(f[n], np.float64)
            pos += [cf[i] for i in concept_idx[c][0]]
            neg += [rf[i] for i in neg_idx]
            tags.append(c)
        fit = fit_cavs(pos, neg, lam=lam, test_size=cav_test_size, seed=seed + 1,
                       width=small if widths[n] <= 1024 else None)
        converged &= bool(np.all(fit.converged))
        for j, tag in enumerate(tags):
            cav_dirs[(tag, n)] = fit.directions[j * runs : (j + 1) * runs]
            cav_acc[(tag, n)] = float(np.nanmean(fit.accuracy[j * runs : (j + 1) * runs]))
    if not converged:
        warnings.warn("some CAV fits did not reach the solver tolerance; raise lam",
                      RuntimeWarning, stacklevel=2)
    t_fit = time.perf_counter() - t0

    # ---- scores and tests ---------------------------------------------------------------
    t0 = time.perf_counter()
    test_name = "student" if equal_var else "welch"
    null = {n: tcav_scores(grads[n], cav_dirs[(None, n)]) for n in names}
    rows = []
    for c in concepts:
        for n in names:
            s = tcav_scores(grads[n], cav_dirs[(c, n)])
            rows.append((c, n, s, null[n], ttest_ind(s, null[n], equal_var=equal_var)))
    p_adj = adjust_pvalues([r[4].pvalue for r in rows], correction)
    results = []
    for (c, n, s, s0, tt), pa in zip(rows, p_adj, strict=True):
        results.append(TCAVResult(
            concept=c, layer=n, target=target, target_index=int(target_index),
            scores=tuple(float(v) for v in s), null_scores=tuple(float(v) for v in s0),
            mean=float(np.mean(s)), std=float(np.std(s, ddof=1)),
            null_mean=float(np.mean(s0)), null_std=float(np.std(s0, ddof=1)),
            statistic=float(tt.statistic), df=float(tt.df), p=float(tt.pvalue),
            p_adj=float(pa), significant=bool(pa <= alpha),
            cav_accuracy=cav_acc[(c, n)], null_cav_accuracy=cav_acc[(None, n)],
            runs=int(runs), n_concept=int(n_concept), n_random=int(n_random),
            n_targets=int(len(grads[n])),
            independent_runs=bool(rand_indep and concept_idx[c][1]),
            reduce=reduce, test=test_name, correction=correction, alpha=float(alpha),
        ))
    if stats is not None:
        stats["timings_s"] = {"cav_fits": round(t_fit, 3),
                              "scores_tests": round(time.perf_counter() - t0, 3)}
        stats["n_cavs"] = len(cav_dirs) * runs
    return results


# ----------------------------------------------------------------------------------------------
# output
# ----------------------------------------------------------------------------------------------
def _stars(r: TCAVResult) -> str:
    if not r.significant:
        return "ns"
    return "***" if r.p_adj <= 0.001 else "**" if r.p_adj <= 0.01 else "*"


def format_tcav(results: Sequence[TCAVResult]) -> str:
    """A plain-text table (what the CLI prints)."""
    head = (f"{'concept':<22} {'layer':<14} {'class':>5} {'TCAV':>13} {'random':>13} "
            f"{'p':>9} {'p_adj':>9} {'sig':>4} {'CAV acc':>7}")
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(
            f"{r.concept[:22]:<22} {r.layer[:14]:<14} {r.target[:5]:>5} "
            f"{r.mean:5.2f} ± {r.std:4.2f} {r.null_mean:5.2f} ± {r.null_std:4.2f} "
            f"{r.p:9.2e} {r.p_adj:9.2e} {_stars(r):>4} {r.cav_accuracy:7.2f}")
    if results and not all(r.independent_runs for r in results):
        lines.append("note: some runs share images (pool too small); p-values are optimistic")
    return "\n".join(lines)


def plot_tcav(
    results: Sequence[TCAVResult],
    path: str | os.PathLike,
    *,
    title: str | None = None,
) -> str:
    """Bar charts, one panel per concept: the TCAV score (mean ± std over runs, clipped to
    [0, 1]) at every layer next to the random-vs-random null (grey); ``*``/``**``/``***``
    mark ``p_adj`` <= alpha / 0.01 / 0.001, ``ns`` (hatched, faded bar) non-significant.
    The format follows the extension; the file is written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = os.fspath(path)
    if not results:
        raise ValueError("no results to plot")
    layers = list(dict.fromkeys(r.layer for r in results))
    concepts = list(dict.fromkeys(r.concept for r in results))
    by = {(r.concept, r.layer): r for r in results}
    cols = min(3, len(concepts))
    rows = -(-len(concepts) // cols)
    panel_w = max(2.6, 0.55 * len(layers) + 1.0)
    fig = Figure(figsize=(panel_w * cols + 0.6, 2.6 * rows + 0.7), dpi=120)
    FigureCanvasAgg(fig)
    x = np.arange(len(layers))
    w = 0.38

    def err(m, s):
        return [[m - max(0.0, m - s)], [min(1.0, m + s) - m]]

    for j, c in enumerate(concepts):
        ax = fig.add_subplot(rows, cols, j + 1)
        for i, n in enumerate(layers):
            r = by.get((c, n))
            if r is None:
                continue
            color = f"C{j % 10}"
            ax.bar(x[i] - w / 2, r.mean, w, yerr=err(r.mean, r.std), capsize=2, color=color,
                   alpha=1.0 if r.significant else 0.45, hatch=None if r.significant else "//",
                   edgecolor=color, linewidth=0.5, error_kw={"linewidth": 0.8},
                   label="concept" if i == 0 else None)
            ax.bar(x[i] + w / 2, r.null_mean, w, yerr=err(r.null_mean, r.null_std), capsize=2,
                   color="0.72", error_kw={"linewidth": 0.8},
                   label="random (null)" if i == 0 else None)
            ax.text(x[i] - w / 2, min(1.0, r.mean + r.std) + 0.02, _stars(r), ha="center",
                    va="bottom", fontsize=7)
        ax.set_title(c, fontsize=9)
        ax.set_xticks(x)
        ax.set_xticklabels(layers, rotation=30, ha="right", fontsize=7)
        ax.set_ylim(0.0, 1.3)
        ax.set_yticks([0.0, 0.25, 0.5, 0.75, 1.0])
        ax.axhline(0.5, color="0.5", linewidth=0.6, linestyle=":")
        ax.grid(True, axis="y", alpha=0.3)
        ax.tick_params(axis="y", labelsize=7)
        if j % cols == 0:
            ax.set_ylabel("TCAV score", fontsize=8)
        if j == 0:
            ax.legend(fontsize=6, loc="upper left", ncol=2, frameon=False)
    r0 = results[0]
    import textwrap

    text = title or (f"TCAV for class {r0.target!r}: mean ± std over {r0.runs} runs; "
                     f"{r0.test} t-test vs random, {r0.correction}-adjusted "
                     f"(alpha={r0.alpha:g})")
    # wrapped to the figure's width (~13 characters an inch at 9 pt): never cut at the sides
    width = max(20, int(fig.get_figwidth() * 13))
    fig.suptitle("\n".join(textwrap.wrap(text, width, break_on_hyphens=False)) or text,
                 fontsize=9)
    fig.tight_layout()
    save_plot(path, fig)
    return path


def write_tcav(results: Sequence[TCAVResult], out_dir: str | os.PathLike, *,
               extra: Mapping[str, Any] | None = None) -> dict[str, str]:
    """results.json, results.csv and tcav.png/.svg in ``out_dir``; returns ``{kind: path}``."""
    import csv

    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    paths = {kind: os.path.join(out_dir, name) for kind, name in (
        ("json", "results.json"), ("csv", "results.csv"), ("png", "tcav.png"),
        ("svg", "tcav.svg"))}
    save_json(paths["json"], {**(extra or {}), "results": [r.to_dict() for r in results]},
              allow_nan=False)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=_CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in results:
        d = r.to_dict()
        w.writerow({c: (f"{d[c]:.6g}" if isinstance(d[c], float) else d[c])
                    for c in _CSV_COLUMNS})
    atomic_write(paths["csv"], buf.getvalue().encode())
    plot_tcav(results, paths["png"])
    plot_tcav(results, paths["svg"])
    return paths


# ----------------------------------------------------------------------------------------------
# the CLI runner
# ----------------------------------------------------------------------------------------------
def _parse_source(spec: str, *, model: Model, n: int, split_default: str, seed: int,
                  what: str, exclude: tuple[str, ...] = ()) -> tuple[str, ImageSet]:
    """``family:value`` (starter concept), ``builtin:starter[:split]`` (random starter
    images), ``builtin:photos[:<source>]`` (crops of real photos), ``name=path`` or a folder
    path. ``exclude``: photo sources left out of ``builtin:photos`` (the concepts' own photos,
    so that random sets never hold concept images)."""
    from lucidax.models import photos, starter

    spec = os.fspath(spec)
    name = None
    if "=" in spec and not os.path.exists(spec):
        name, spec = spec.split("=", 1)
    builtin = photos.parse_builtin(spec, split_default)
    if builtin is not None and builtin.kind == "photos":
        one = None if spec == "builtin:photos" else builtin.sources  # builtin:photos:<source>
        if one is None and exclude:
            one = tuple(s for s in photos.available_sources() if s not in exclude) or None
            label = name or "random"
        else:
            label = name or (f"photos:{one[0]}" if one else "random")
        return label, ImageSet.photos(n, side=model.input_spec.side,
                                      channels=model.input_spec.channels, seed=seed,
                                      sources=one, name=label)
    if builtin is not None:
        return name or "random", ImageSet.starter(n, split=builtin.split, seed=seed, name=name)
    fam, sep, val = spec.partition(":")
    if sep and fam in starter.FAMILIES and not os.path.exists(spec):
        return name or spec, ImageSet.starter(n, split=split_default, seed=seed,
                                              fixed={fam: val}, name=name or spec)
    if os.path.exists(spec):
        side = model.input_spec.side
        if side is None:
            raise ValueError(f"model {model.name!r} has no natural input side to read images")
        s = ImageSet.from_folder(spec, size=side, channels=model.input_spec.channels,
                                 name=name)
        return s.name, s
    raise ValueError(
        f"{what} {spec!r} is neither a folder nor a starter concept. Valid: a folder of "
        f"images, name=folder, builtin:starter[:split], builtin:photos[:<source>], or "
        f"family:value with family one of "
        f"{', '.join(starter.FAMILIES)} (e.g. color:red, background:grass)")


def run_tcav_cli(
    model: str | Model = "starter",
    *,
    weights: str | os.PathLike | None = None,
    layers: str | Sequence[str] = "all",
    concepts: Sequence[str] = ("color:red",),
    target_class: int | str = 0,
    random: str = "auto",
    targets: str = "auto",
    runs: int = 20,
    n_concept: int = 50,
    n_random: int = 50,
    n_targets: int = 100,
    out: str | os.PathLike | None = "tcav-out",
    reduce: str = "mean",
    correction: str = "holm",
    alpha: float = 0.05,
    equal_var: bool = False,
    lam: float = 0.01,
    split: str = "test",
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 50,
    progress: bool = True,
    memory_check: bool = True,
) -> TCAVRun:
    """``lucidax tcav --concepts color:red,background:grass --class 3 --runs 20 --out O``.

    Args:
      model: registered model name or a Model; weights: its checkpoint (default weights).
      layers: ``"all"`` (every layer but ``*_pre_relu`` and the logits) or names.
      concepts: each ``family:value`` (starter images with that family fixed, e.g.
        ``color:red``, ``background:grass``, ``position:top-left``, ``size:large``), a folder
        of concept images, or ``name=folder``.
      target_class: class index or label (starter: ``"0"``..``"9"``).
      random: ``"auto"`` (``builtin:starter`` for the starter model, ``builtin:photos`` for
        other RGB models; :func:`lucidax.models.photos.resolve_auto`),
        ``builtin:starter[:split]`` (random starter images), ``builtin:photos`` (random crops
        of real photos, :mod:`lucidax.models.photos`, at the model's input side) or a folder.
      targets: ``"auto"`` (``builtin:starter`` for the starter model; for other RGB models
        ``builtin:photos``: crops of every photo, whatever the class, as stand-ins for
        natural inputs: the score is then the share of photos whose class logit rises along
        the concept), ``builtin:starter[:split]`` (starter images of the class, starter
        model only), ``builtin:photos[:<source>]`` (crops of the photos, or of one, e.g.
        ``builtin:photos:chelsea`` for an ImageNet cat class) or a folder of class images.
      runs, n_concept, n_random, n_targets: see :func:`tcav`; builtin pools are sized so that
        every run gets its own images.
      out: output folder (results.json/.csv, tcav.png/.svg), None: write nothing.
      cache_dir: feature + gradient cache (default ``<out>/cache``): a second run reuses it.
      split: starter split of builtin sources (default ``test``: images the model was not
        trained on).
      Others: see :func:`tcav`.
    """
    t0 = time.perf_counter()
    # Bad input fails here, in one line, before the model is loaded.
    for flag, v, least in (("--runs", runs, 2), ("--n-concept", n_concept, 2),
                           ("--n-random", n_random, 2), ("--n-targets", n_targets, 1),
                           ("--batch-size", batch_size, 1)):
        check_int(v, flag, minimum=least)
    if not (isinstance(alpha, int | float) and 0 < alpha < 1):
        raise ValueError(f"--alpha must be in (0, 1); got {alpha!r}")
    if out is not None:
        prepare_out_dir(out)
    if cache_dir is not None:
        prepare_out_dir(cache_dir, flag="--cache-dir")
    if isinstance(model, str):
        import lucidax.models as lm

        model = lm.load(model, weights)
    elif weights is not None:
        raise ValueError("weights= is only used with a model name")
    _check_model(model)
    from lucidax.models import photos, starter

    random = photos.resolve_auto(random, model, "tcav_random")
    targets = photos.resolve_auto(targets, model, "tcav_targets")
    if layers is None or layers == "all":
        from .sweep import default_layers

        names = tuple(n for n in default_layers(model) if n != model.logits_layer)
    else:
        names = normalize_layers(layers, model.layer_names)
    if isinstance(concepts, str):
        concepts = [c.strip() for c in concepts.split(",") if c.strip()]
    k = _class_index(model, target_class)
    label = str(model.labels[k]) if model.labels else str(k)
    c_sets: dict[str, ImageSet] = {}
    concept_photos: list[str] = []  # photo sources of concepts: kept out of the random sets
    for spec in concepts:
        b = photos.parse_builtin(str(spec).split("=", 1)[-1], split)
        if b is not None and b.kind == "photos" and b.spec != "builtin:photos":
            concept_photos.extend(b.sources)
    for i, spec in enumerate(concepts):
        name, s = _parse_source(spec, model=model, n=runs * n_concept, split_default=split,
                                seed=seed * 1000 + 101 + i, what="concept")
        if name in c_sets:
            raise ValueError(f"concept {name!r} given twice")
        c_sets[name] = s
    _, r_set = _parse_source(random, model=model, n=runs * (2 * n_random + n_concept),
                             split_default=split, seed=seed * 1000 + 7, what="random",
                             exclude=tuple(concept_photos))
    t_builtin = photos.parse_builtin(targets, split)
    if t_builtin is not None and t_builtin.kind == "starter":
        t_split = t_builtin.split
        if model.labels != starter.LABELS:
            raise ValueError("builtin:starter targets are digit images: only for the starter "
                             "model; give a folder of class images instead")
        t_set = ImageSet.starter(n_targets, split=t_split, seed=seed * 1000 + 3,
                                 fixed={"digit": k}, name=f"digit {label}")
    else:
        _, t_set = _parse_source(targets, model=model, n=n_targets, split_default=split,
                                 seed=seed, what="targets")
    out_dir = None if out is None else os.fspath(out)
    cache = (os.path.join(out_dir, "cache") if out_dir else None) if cache_dir is None \
        else os.fspath(cache_dir)
    info: dict[str, Any] = {}
    results = tcav(
        model, model.params, c_sets, r_set, t_set, k, names, runs=runs, n_concept=n_concept,
        n_random=n_random, reduce=reduce, correction=correction, alpha=alpha,
        equal_var=equal_var, lam=lam, seed=seed, cache_dir=cache, batch_size=batch_size,
        progress=progress, stats=info, memory_check=memory_check)
    timings = dict(info.pop("timings_s", {}))
    timings["total_with_setup"] = round(time.perf_counter() - t0, 3)
    files: dict[str, str] = {}
    if out_dir:
        files = write_tcav(results, out_dir, extra={
            "model": model.name, "weights": model.weights_source, "target": label,
            "concepts": {c: s.key for c, s in c_sets.items()}, "random": r_set.key,
            "targets": t_set.key, "config": {
                "runs": runs, "n_concept": n_concept, "n_random": n_random,
                "n_targets": t_set.n, "reduce": reduce, "correction": correction,
                "alpha": alpha, "equal_var": equal_var, "lam": lam, "seed": seed},
            "timings_s": timings, "cache": info})
    return TCAVRun(tuple(results), out_dir, files, format_tcav(results), timings, info)

