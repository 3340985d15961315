"""Per-unit interpretability scores without humans: a simulated observer solves the
psychophysics task of Borowski et al. (ICLR 2021), as the Machine Interpretability Score
(MIS, Zimmermann, Klindt & Brendel, NeurIPS 2024) does.

A task, for one unit: the images are ranked by the unit's activation; the observer sees
``k`` *maximally* activating reference images (drawn from the top ``ref_frac`` of the
ranking), ``k`` *minimally* activating ones (the bottom ``ref_frac``) and two query images,
one from a high band just below the references (quantiles ``0.95-0.98`` by default) and one
from the mirrored low band (``0.02-0.05``); it must say which query activates the unit more.
The observer answers with the query whose mean cosine similarity to the max references minus
to the min references is larger (ties count half). The score is the fraction of tasks
answered correctly, with a Wilson 95% interval over the tasks.

The observer's similarity is a cosine between feature vectors that the caller supplies,
normally from a *different* network than the one analysed (``lucidax.gallery`` uses the
``avgpool`` features of another EfficientNet-Lite). MIS uses DreamSim, a similarity model
fitted to human judgements, and a soft (logistic) choice; this hard-choice observer with
another CNN's features approximates it and is **not the same number**: compare scores
within one observer, not with published MIS values.

Synthetic references (``synthetic_refs``): per unit, the features of some renders of the
unit replace the natural max references (every task shows all of them), the min references
stay natural: the *synthetic score*. ``natural - synthetic`` says how much information the
renders lose compared with exemplars.

When the images come in groups that share more than a unit's feature (``groups``: crops of
one photo, frames of one video), each task's references are drawn from groups other than its
queries' (:func:`sample_tasks`), so an observer that only recognises the group cannot answer.

The interval is over tasks given the dataset: tasks of one unit share their reference and
query pools, so with a small dataset the score of a meaningless unit scatters around 0.5 a
little more than the interval says.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._linear import wilson_interval

__all__ = [
    "DEFAULT_BANDS",
    "InterpretabilityResult",
    "Tasks",
    "interpretability_scores",
    "observer_choices",
    "sample_tasks",
]

#: (reference fraction, (query band low, query band high)) as quantiles of the high side;
#: the low side mirrors them: max references from the top 2%, the high query from the
#: 0.95-0.98 quantiles, the low query from 0.02-0.05, the min references from the bottom 2%.
DEFAULT_BANDS = (0.02, (0.95, 0.98))


@dataclasses.dataclass(frozen=True)
class Tasks:
    """Sampled tasks, image indices into the dataset, for ``U`` units and ``T`` tasks each.

    Attributes:
      max_refs, min_refs: ``[U, T, k]`` maximally / minimally activating references.
      q_hi, q_lo: ``[U, T]`` the truly higher / lower activating query of each task.

    Example:
      >>> import numpy as np
      >>> from lucidax.probes import sample_tasks
      >>> tasks = sample_tasks(np.random.default_rng(0).random((500, 3)), n_tasks=20, k=9)
      >>> tasks.max_refs.shape, tasks.q_hi.shape
      ((3, 20, 9), (3, 20))
    """

    max_refs: np.ndarray
    min_refs: np.ndarray
    q_hi: np.ndarray
    q_lo: np.ndarray

    @property
    def n_tasks(self) -> int:
        return int(self.q_hi.shape[1])


@dataclasses.dataclass(frozen=True, eq=False)
class InterpretabilityResult:
    """Per-unit scores (arrays ``[U]``, aligned with ``units``).

    Attributes:
      units: unit ids (column indices, or the ids given).
      natural: fraction of tasks answered correctly with natural references.
      natural_ci: ``[U, 2]`` Wilson 95% interval of ``natural``.
      synthetic, synthetic_ci: the same with synthetic max references (None if not asked).
      n_tasks, k: tasks per unit and references per side.
      bands: ``(ref_frac, (q_low, q_high))``.
      n_images: dataset size.
      separate_groups: whether each task's references came from other groups (e.g. source
        photos) than its queries (see :func:`sample_tasks`).

    Example:
      >>> from lucidax.probes import interpretability_scores
      >>> import numpy as np
      >>> rng = np.random.default_rng(0)
      >>> colour = rng.random(400)                     # a visible property of each image
      >>> observer = np.stack([colour, 1 - colour, rng.random(400) * 0.1], axis=1)
      >>> acts = np.stack([colour, rng.random(400)], axis=1)  # unit 0 sees it, unit 1 is noise
      >>> result = interpretability_scores(acts, observer, n_tasks=200)
      >>> result.natural.shape, result.natural_ci.shape, bool(result.natural[0] > 0.9)
      ((2,), (2, 2), True)
    """

    units: np.ndarray
    natural: np.ndarray
    natural_ci: np.ndarray
    synthetic: np.ndarray | None
    synthetic_ci: np.ndarray | None
    n_tasks: int
    k: int
    bands: tuple[float, tuple[float, float]]
    n_images: int
    separate_groups: bool = False

    @property
    def gap(self) -> np.ndarray | None:
        """``natural - synthetic`` per unit (None without synthetic scores)."""
        return None if self.synthetic is None else self.natural - self.synthetic

    def rows(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per unit."""
        out = []
        for i, u in enumerate(self.units):
            row: dict[str, Any] = {
                "unit": int(u), "natural": float(self.natural[i]),
                "natural_lo": float(self.natural_ci[i, 0]),
                "natural_hi": float(self.natural_ci[i, 1])}
            if self.synthetic is not None:
                row.update(synthetic=float(self.synthetic[i]),
                           synthetic_lo=float(self.synthetic_ci[i, 0]),
                           synthetic_hi=float(self.synthetic_ci[i, 1]),
                           gap=float(self.natural[i] - self.synthetic[i]))
            out.append(row)
        return out

    def summary(self) -> dict[str, Any]:
        """Medians over the units, and the settings."""
        s: dict[str, Any] = {"units": len(self.units), "n_tasks": self.n_tasks, "k": self.k,
                             "n_images": self.n_images, "ref_frac": self.bands[0],
                             "separate_groups": self.separate_groups,
                             "query_band": list(self.bands[1]),
                             "median_natural": float(np.median(self.natural))}
        if self.synthetic is not None:
            s["median_synthetic"] = float(np.median(self.synthetic))
            s["median_gap"] = float(np.median(self.natural - self.synthetic))
        return s


def _check_bands(bands: Any) -> tuple[float, tuple[float, float]]:
    try:
        ref, (lo, hi) = bands
        ref, lo, hi = float(ref), float(lo), float(hi)
    except (TypeError, ValueError):
        raise ValueError(f"bands must be (ref_frac, (q_low, q_high)), e.g. {DEFAULT_BANDS}; "
                         f"got {bands!r}") from None
    if not (0.0 < ref < 0.5 and 0.5 <= lo < hi <= 1.0 - ref + 1e-9):
        raise ValueError(f"bands: need 0 < ref_frac < 0.5 and 0.5 <= q_low < q_high <= "
                         f"1 - ref_frac; got {bands!r}")
    return ref, (lo, hi)


def _check_count(v: Any, name: str, lo: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}; got {v!r}")
    return int(v)


def _pools(acts: np.ndarray, k: int, bands) -> tuple[np.ndarray, ...]:
    """``[U, P]`` index pools: top references, high queries, low queries, bottom references."""
    u, n = acts.shape
    ref, (lo, hi) = bands
    n_ref = max(k, int(math.ceil(ref * n)))
    a, b = int(math.floor(lo * n)), int(math.ceil(hi * n))  # ranks, ascending
    width = max(b - a, 1)
    b = min(b, n - n_ref)  # a small dataset: the band slides down, below the references
    a = max(b - width, (n + 1) // 2)
    if n < 2 * n_ref + 2 or b <= a:
        raise ValueError(
            f"too few images ({n}) for {k} references a side plus query bands {bands[1]}: "
            f"need at least {2 * max(k, 1) + 2} and enough for the bands (give more images or "
            f"a smaller k)")
    # stable ranking; ties broken by a per-unit random permutation would change results
    # between numpy versions, so by index: a constant unit has no meaningful order anyway
    order = np.argsort(acts, axis=1, kind="stable")  # ascending
    top = order[:, n - n_ref:]
    bottom = order[:, :n_ref]
    q_hi = order[:, a:b]
    q_lo = order[:, n - b: n - a]
    return top, q_hi, q_lo, bottom


def sample_tasks(acts: Any, *, n_tasks: int = 500, k: int = 9, bands: Any = DEFAULT_BANDS,
                 seed: int = 0, groups: Any = None, separate_groups: bool = True) -> Tasks:
    """Sample ``n_tasks`` tasks per unit from activations ``acts`` (``[N]`` one unit, or
    ``[N, U]``): ``k`` max / min references drawn without replacement from the top / bottom
    ``ref_frac`` of the images (at least ``k`` images), one query from each band.

    Args:
      acts: ``[N]`` or ``[N, U]`` activations, one per image (and unit).
      n_tasks: tasks per unit.
      k: references per side.
      bands: ``(ref_frac, (lo, hi))``: references from the top / bottom ``ref_frac`` of the
        images, the higher query from the ``lo``-``hi`` quantile band and the lower one from
        the mirrored band (:data:`DEFAULT_BANDS`: top / bottom 2%, queries from 0.95-0.98
        and 0.02-0.05, as in Zimmermann et al.).
      seed: the draws.
      groups: ``[N]`` a group id per image (e.g. the source photo of ``builtin:photos``
        crops), or None. With ``separate_groups``, each task's references come from groups
        other than its two queries': the queries are drawn first, then the references from
        the ``ref_frac`` most (least) activating images *outside* the queries' groups. Crops
        of one photo share more than the unit's feature (colours, texture, the object), so
        without it an observer that only recognises the photo answers tasks whose high query
        shares a photo with the top references.
      separate_groups: use ``groups`` (False: ignore them, as without groups).

    Returns:
      :class:`Tasks` of image indices.

    Raises:
      ValueError: bad shapes, too few images, or (with groups) fewer than ``k`` images
        outside some task's query groups.

    Example:
      >>> import numpy as np
      >>> from lucidax.probes import sample_tasks
      >>> acts = np.arange(1000.0)                     # image i activates the unit i
      >>> tasks = sample_tasks(acts, n_tasks=5, k=9)
      >>> bool(tasks.max_refs.min() >= 980), bool(950 <= tasks.q_hi.min() < 980)
      (True, True)
    """
    a = np.asarray(acts, np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"acts must be [N] or [N, U]; got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError("acts contain NaN or infinite values")
    n_tasks, k = _check_count(n_tasks, "n_tasks"), _check_count(k, "k")
    bands = _check_bands(bands)
    top, qh, ql, bottom = _pools(a.T, k, bands)
    rng = np.random.default_rng(seed)
    units = top.shape[0]
    g = None
    if groups is not None and separate_groups:
        g = np.asarray(groups).reshape(-1)
        if g.shape[0] != a.shape[0]:
            raise ValueError(f"groups has {g.shape[0]} ids for {a.shape[0]} images")

    def refs(pool: np.ndarray) -> np.ndarray:  # k distinct of the pool per task: argsort noise
        noise = rng.random((units, n_tasks, pool.shape[1]))
        pick = np.argsort(noise, axis=2)[:, :, :k]
        return np.take_along_axis(pool[:, None, :], pick, axis=2)

    def one(pool: np.ndarray) -> np.ndarray:
        pick = rng.integers(0, pool.shape[1], (units, n_tasks))
        return np.take_along_axis(pool, pick, axis=1)

    if g is None:
        return Tasks(refs(top), refs(bottom), one(qh), one(ql))
    q_hi, q_lo = one(qh), one(ql)  # the queries first, then references outside their groups
    order = np.argsort(a.T, axis=1, kind="stable")  # ascending, as in _pools
    n_ref = top.shape[1]
    return Tasks(_group_refs(order[:, ::-1], g, q_hi, q_lo, n_ref, k, rng),
                 _group_refs(order, g, q_hi, q_lo, n_ref, k, rng), q_hi, q_lo)


def _group_refs(order: np.ndarray, g: np.ndarray, qa: np.ndarray, qb: np.ndarray, n_ref: int,
                k: int, rng: np.random.Generator) -> np.ndarray:
    """``[U, T, k]`` references: per task, ``k`` of the first ``n_ref`` images of ``order``
    (``[U, N]``, best first) whose group differs from both queries' groups."""
    units, t = qa.shape
    out = np.empty((units, t, k), np.int64)
    for u in range(units):
        gs = g[order[u]]  # [N] groups in rank order
        ok = (gs[None, :] != g[qa[u]][:, None]) & (gs[None, :] != g[qb[u]][:, None])  # [T, N]
        m = min(n_ref, int(ok.sum(axis=1).min()))
        if m < k:
            raise ValueError(f"groups: fewer than k={k} images outside the groups of some "
                             f"task's queries (give images from more groups, a smaller k, "
                             f"or separate_groups=False)")
        sel = ok & (np.cumsum(ok, axis=1) <= m)  # the first m eligible images of each task
        cols = np.nonzero(sel)[1].reshape(t, m)
        pick = np.argsort(rng.random((t, m)), axis=1)[:, :k]
        out[u] = order[u][np.take_along_axis(cols, pick, axis=1)]
    return out


def _normalized(x: Any, what: str) -> np.ndarray:
    f = np.asarray(x, np.float32)
    if f.ndim != 2:
        raise ValueError(f"{what} must be [N, D]; got shape {f.shape}")
    if not np.all(np.isfinite(f)):
        raise ValueError(f"{what} contain NaN or infinite values")
    norm = np.linalg.norm(f, axis=1, keepdims=True)
    return f / np.maximum(norm, 1e-12)


def observer_choices(features: Any, tasks: Tasks, refs_override: Any = None) -> np.ndarray:
    """The observer's answers: ``[U, T]`` 1.0 where it picked the truly higher query, 0.0
    where it picked the other, 0.5 on a tie.

    Args:
      features: ``[N, D]`` observer features of the dataset (cosine similarity: L2-normalized
        here), or a function ``sim(i [..., ], j [..., ]) -> [...]`` of two equally shaped
        index arrays giving the observer's similarity of images ``i`` and ``j``.
      tasks: from :func:`sample_tasks`.
      refs_override: per unit, features ``[R, D]`` (a list of ``U`` arrays, or ``[U, R, D]``)
        that replace the max references of every task (synthetic references); needs
        ``features`` to be an array.

    Example:
      >>> import numpy as np
      >>> from lucidax.probes import observer_choices, sample_tasks
      >>> import numpy as np
      >>> rng = np.random.default_rng(0)
      >>> colour = rng.random(400)                     # a visible property of each image
      >>> observer = np.stack([colour, 1 - colour, rng.random(400) * 0.1], axis=1)
      >>> acts = np.stack([colour, rng.random(400)], axis=1)  # unit 0 sees it, unit 1 is noise
      >>> answers = observer_choices(observer, sample_tasks(acts, n_tasks=100))
      >>> answers.shape, bool(answers[0].mean() > answers[1].mean())
      ((2, 100), True)
    """
    hi, lo = tasks.q_hi, tasks.q_lo
    if callable(features):
        if refs_override is not None:
            raise ValueError("refs_override needs observer features, not a similarity function")
        sim = features

        def mean_sim(q, refs):
            return np.asarray(sim(np.broadcast_to(q[..., None], refs.shape), refs)).mean(-1)

        d_hi = mean_sim(hi, tasks.max_refs) - mean_sim(hi, tasks.min_refs)
        d_lo = mean_sim(lo, tasks.max_refs) - mean_sim(lo, tasks.min_refs)
    else:
        f = _normalized(features, "observer features")
        syn = None
        if refs_override is not None:
            if len(refs_override) != hi.shape[0]:
                raise ValueError(f"refs_override has {len(refs_override)} units; the tasks "
                                 f"have {hi.shape[0]}")
            per = [_normalized(r, "synthetic reference features").mean(axis=0)
                   for r in refs_override]
            if any(p.shape != (f.shape[1],) for p in per):
                raise ValueError(f"synthetic reference features must have the observer's "
                                 f"{f.shape[1]} dimensions")
            syn = np.stack(per)  # [U, D]
        # mean cosine to a reference set = query . mean of the normalized references; units
        # in chunks so the gathered references [u, T, k, D] stay under ~64 MB
        u_all, t, k = tasks.max_refs.shape
        step = max(1, (64 << 20) // max(1, t * k * f.shape[1] * 4))
        d_hi, d_lo = np.empty(hi.shape, np.float64), np.empty(hi.shape, np.float64)
        for a in range(0, u_all, step):
            sl = slice(a, a + step)
            m_min = f[tasks.min_refs[sl]].mean(axis=2)  # [u, T, D]
            m_max = (f[tasks.max_refs[sl]].mean(axis=2) if syn is None
                     else np.broadcast_to(syn[sl, None, :], m_min.shape))
            w = m_max - m_min
            d_hi[sl] = np.einsum("utd,utd->ut", f[hi[sl]], w)
            d_lo[sl] = np.einsum("utd,utd->ut", f[lo[sl]], w)
    diff = d_hi - d_lo
    tie = np.abs(diff) <= 1e-7 * (np.abs(d_hi) + np.abs(d_lo) + 1e-12)
    return np.where(tie, 0.5, (diff > 0).astype(np.float64))


def _scores(correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = correct.shape[1]
    succ = correct.sum(axis=1)
    return succ / n, np.array([wilson_interval(float(s), n) for s in succ]).reshape(-1, 2)


def interpretability_scores(
    unit_acts: Any,
    observer_feats: Any,
    *,
    n_tasks: int = 500,
    k: int = 9,
    bands: Any = DEFAULT_BANDS,
    seed: int = 0,
    synthetic_refs: Sequence[Any] | None = None,
    units: Sequence[int] | None = None,
    groups: Any = None,
    separate_groups: bool = True,
) -> InterpretabilityResult:
    """Natural (and synthetic) interpretability scores of every unit.

    Args:
      unit_acts: ``[N, U]`` one activation per image and unit (e.g. the spatial mean).
      observer_feats: ``[N, D]`` the observer's features of the same images (its cosine
        similarity is the observer's), or a similarity function (see
        :func:`observer_choices`).
      n_tasks, k, bands, seed: see :func:`sample_tasks`.
      synthetic_refs: per unit ``[R, D]`` observer features of the unit's renders: also the
        synthetic score (same tasks, max references replaced).
      units: ids to report (default ``0..U-1``).
      groups, separate_groups: ``[N]`` group ids of the images (e.g. source photos): with
        ``separate_groups`` a task's references come from groups other than its queries'
        (see :func:`sample_tasks`).

    Example:
      >>> from lucidax.probes import interpretability_scores
      >>> import numpy as np
      >>> rng = np.random.default_rng(0)
      >>> colour = rng.random(400)                     # a visible property of each image
      >>> observer = np.stack([colour, 1 - colour, rng.random(400) * 0.1], axis=1)
      >>> acts = np.stack([colour, rng.random(400)], axis=1)  # unit 0 sees it, unit 1 is noise
      >>> result = interpretability_scores(acts, observer, n_tasks=300)
      >>> bool(result.natural[0] > 0.9), result.natural_ci.shape   # unit 0: near 1
      (True, (2, 2))
    """
    a = np.asarray(unit_acts)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[1] == 0:
        raise ValueError(f"unit_acts must be [N, U] with U >= 1; got shape {a.shape}")
    if not callable(observer_feats):
        n_obs = np.shape(observer_feats)[0] if np.ndim(observer_feats) else 0
        if n_obs != a.shape[0]:
            raise ValueError(f"unit_acts has {a.shape[0]} images, observer features "
                             f"{n_obs}: they must describe the same images")
    ids = np.arange(a.shape[1]) if units is None else np.asarray(units)
    if len(ids) != a.shape[1]:
        raise ValueError(f"units has {len(ids)} ids for {a.shape[1]} columns")
    tasks = sample_tasks(a, n_tasks=n_tasks, k=k, bands=bands, seed=seed, groups=groups,
                         separate_groups=separate_groups)
    nat, nat_ci = _scores(observer_choices(observer_feats, tasks))
    syn = syn_ci = None
    if synthetic_refs is not None:
        syn, syn_ci = _scores(observer_choices(observer_feats, tasks, synthetic_refs))
    return InterpretabilityResult(ids, nat, nat_ci, syn, syn_ci, tasks.n_tasks, int(k),
                                  _check_bands(bands), int(a.shape[0]),
                                  groups is not None and bool(separate_groups))
