"""TCAV: testing with concept activation vectors (Kim et al., 2018).

For a layer ``l``, a concept ``C`` and a class ``k``:

1. **CAV**: an L2 logistic classifier separates the layer-``l`` features of concept examples
   from those of random examples; the CAV ``v`` is the unit normal of its decision boundary,
   pointing towards the concept (the probe solver of :func:`lucidax.probes.fit_probe`, every CAV
   of a run solved at once: one ``vmap``-ed L-BFGS program). With ``cav="mean"`` the CAV is
   instead FastCAV's closed form (Schmalwasser et al., ICML 2025): the normalized difference
   between the mean concept activation and the global mean, i.e. the direction of
   ``mean(concept) - mean(random)`` (:func:`lucidax.probes.fit_cavs`), one pass over the
   features; everything after the CAV is the same.
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
import math
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lucidax.models import Model, normalize_layers

from ._cache import _params_hash
from ._cav import _check_method, fit_cavs, tcav_scores
from ._data import ImageSet, _Batches
from ._extract import extract
from ._gradients import _cached_gradients, _check_model, _check_space, _class_index
from ._solver import _bucket
from ._stats import _check_correction, adjust_pvalues, ttest_ind


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
      cav: how the CAVs were found: ``"logistic"`` (L2 logistic normals) or ``"mean"``
        (FastCAV's mean difference, :func:`lucidax.probes.fit_cavs`).

    Example:
      >>> import numpy as np
      >>> import lucidax.models as lm
      >>> from lucidax.probes import load_data, tcav
      >>> model = lm.load("starter")
      >>> data = load_data("builtin:starter:test", n=300)
      >>> red = data.data[data.labels["color"] == 0]
      >>> threes = data.data[data.labels["digit"] == 3]
      >>> results = tcav(model, model.params, {"red": red}, data.data[:100], threes, 3,
      ...                "conv4", runs=3, n_concept=10, n_random=10, progress=False)
      >>> r = results[0]
      >>> r.concept, r.layer, len(r.scores), len(r.null_scores), 0.0 <= r.p_adj <= 1.0
      ('red', 'conv4', 3, 3, True)
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
    cav: str = "logistic"

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for k in ("scores", "null_scores"):
            out[k] = list(out[k])
        for k, v in out.items():
            if isinstance(v, float) and not math.isfinite(v):
                out[k] = None if math.isnan(v) else ("inf" if v > 0 else "-inf")
        return out

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
    cav: str = "logistic",
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
      reduce: CAV feature space, ``"mean"`` or ``"flatten"`` (``lucidax.probes._tcav``).
      correction: ``"holm"`` (family-wise), ``"bh"`` (false discovery rate),
        ``"bonferroni"`` or ``"none"``, over every (concept, layer) test of this class.
      alpha: significance level of ``p_adj``.
      equal_var: Student's t-test (True, the paper's) instead of Welch's (False).
      lam, cav_test_size: L2 strength and held-out share of the CAV classifiers.
      cav: ``"logistic"`` (default: the L2 logistic CAVs of the paper) or ``"mean"``
        (FastCAV: mean-difference CAVs, one pass, no solver; ``lam`` unused); see
        :func:`lucidax.probes.fit_cavs`.
      seed: draws of the run sets and held-out splits.
      cache_dir: feature and gradient cache (None: nothing cached).
      stats: if given, filled with timings and cache facts.
      memory_check: refuse a feature extraction that cannot fit in memory (see
        :func:`lucidax.probes.extract`); False: try anyway.
      batch_size: images per forward / backward pass.
      progress: show tqdm progress bars.

    Returns:
      One :class:`TCAVResult` per (concept, layer), concepts in the given order, layers in
      depth order.

    Example:
      >>> import numpy as np
      >>> import lucidax.models as lm
      >>> from lucidax.probes import load_data, tcav
      >>> model = lm.load("starter")
      >>> data = load_data("builtin:starter:test", n=300)
      >>> red = data.data[data.labels["color"] == 0]
      >>> threes = data.data[data.labels["digit"] == 3]
      >>> results = tcav(model, model.params, {"red": red}, data.data[:100], threes, 3,
      ...                "conv4", runs=3, n_concept=10, n_random=10, progress=False)
      >>> [(r.concept, r.layer, r.target_index) for r in results]
      [('red', 'conv4', 3)]
    """
    t_start = time.perf_counter()
    _check_model(model)
    names = normalize_layers(layers, model.layer_names)
    names = tuple(sorted(names, key=model.layer_names.index))
    reduce = _check_space(reduce)
    correction = _check_correction(correction)
    cav = _check_method(cav)
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
        alpha=alpha, equal_var=equal_var, lam=lam, cav_test_size=cav_test_size, cav=cav,
        seed=seed, target=label, target_index=k, reduce=reduce, stats=info)
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
    cav: str = "logistic",
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
      runs, n_concept, n_random, correction, alpha, equal_var: as in :func:`tcav`.
      lam, cav_test_size, cav, seed: as in :func:`tcav`.
      target, target_index, reduce: only recorded in the results.
      stats: if given, filled with timings.

    Returns:
      One :class:`TCAVResult` per (concept, layer).

    Example:
      >>> import numpy as np
      >>> from lucidax.probes import tcav_from_features
      >>> rng = np.random.default_rng(0)
      >>> concept = {"stripes": {"conv4": rng.normal(size=(40, 8)) + np.eye(8)[0]}}
      >>> random = {"conv4": rng.normal(size=(80, 8))}
      >>> gradients = {"conv4": rng.normal(size=(30, 8)) + np.eye(8)[0]}
      >>> results = tcav_from_features(concept, random, gradients, runs=5, n_concept=10,
      ...                              n_random=10, target="3")
      >>> r = results[0]
      >>> r.concept, len(r.scores), bool(r.mean > r.null_mean)
      ('stripes', 5, True)
    """
    _check_counts(runs, n_concept, n_random, alpha)
    if not concepts:
        raise ValueError("no concepts given")
    correction = _check_correction(correction)
    cav = _check_method(cav)
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
        fit = fit_cavs(pos, neg, method=cav, lam=lam, test_size=cav_test_size, seed=seed + 1,
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
            cav=cav,
        ))
    if stats is not None:
        stats["timings_s"] = {"cav_fits": round(t_fit, 3),
                              "scores_tests": round(time.perf_counter() - t0, 3)}
        stats["n_cavs"] = len(cav_dirs) * runs
    return results
