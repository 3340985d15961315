"""Concept matching across fits and the stability of a factorization over seeds (private).

:func:`match_concepts` pairs the concepts of two fits one-to-one (Hungarian matching on the
cosine similarity of their directions); :func:`stability` fits several seeds and reports how
well their concepts agree -- concepts that come back under another seed (and another sample
of rows) are more trustworthy than ones that do not.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..models import suggest
from ._factorization import METHODS, factorize
from ._rows import as_rows

__all__ = ["Stability", "match_concepts", "stability"]


def match_concepts(W1: Any, W2: Any, *, absolute: bool = False
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Match the concepts (rows) of ``W2 [K2, C]`` to those of ``W1 [K1, C]``.

    The matching is one-to-one and maximizes the sum of the cosine similarities (Hungarian
    algorithm, ``scipy.optimize.linear_sum_assignment``).

    Args:
      W1: concept directions ``[K1, C]`` (e.g. ``Factorization.W`` of one seed).
      W2: concept directions ``[K2, C]`` with the same ``C``.
      absolute: match on ``|cos|`` (PCA components have no sign).

    Returns:
      ``(order, similarity)``: int64 ``order [K1]`` and float64 ``similarity [K1]``;
      ``W2[order[i]]`` is matched to ``W1[i]`` with cosine similarity ``similarity[i]``.
      With ``K2 < K1`` the unmatched rows of ``W1`` get order -1 and similarity 0.

    Raises:
      ValueError: ``W1`` and ``W2`` are not 2-D with the same number of columns.

    Example:
      >>> import numpy as np
      >>> from lucidax.concepts import match_concepts
      >>> W1 = np.eye(3, 8)
      >>> order, similarity = match_concepts(W1, W1[[2, 0, 1]])
      >>> order.tolist(), similarity.round(3).tolist()
      ([1, 2, 0], [1.0, 1.0, 1.0])
    """
    a, b = np.asarray(W1, np.float64), np.asarray(W2, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"W1 and W2 must be [K, C] with the same C; got shapes "
                         f"{a.shape} and {b.shape}")
    an = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-30)
    bn = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-30)
    sim = an @ bn.T
    score = np.abs(sim) if absolute else sim
    rows, cols = linear_sum_assignment(-score)
    order = np.full(a.shape[0], -1, np.int64)
    similarity = np.zeros(a.shape[0])
    order[rows] = cols
    similarity[rows] = score[rows, cols]
    return order, similarity


@dataclasses.dataclass(frozen=True)
class Stability:
    """Agreement of the concepts of fits with different seeds (what :func:`stability`
    returns).

    Attributes:
      method: the factorization method, ``"nmf"``, ``"sae"`` or ``"pca"``.
      k: number of concepts of each fit.
      seeds: the seeds, as ints.
      resample: fraction of rows each seed was fitted on (None: all rows).
      mean: mean matched cosine over all seed pairs and concepts.
      pairs: ``{(seed_i, seed_j): mean matched cosine}`` for every pair.
      per_concept: ``[K]`` mean over the other seeds of the matched cosine of each concept of
        the first seed's fit.
      errors: relative reconstruction error of each seed's fit.

    Example:
      >>> import numpy as np
      >>> from lucidax.concepts import stability
      >>> rows = np.random.default_rng(0).random((256, 16), dtype=np.float32)
      >>> st = stability(rows, 4, method="nmf", seeds=(0, 1), iterations=10)
      >>> st.per_concept.shape, list(st.pairs), len(st.errors), bool(0 <= st.mean <= 1)
      ((4,), [(0, 1)], 2, True)
    """

    method: str
    k: int
    seeds: tuple
    resample: float | None
    mean: float
    pairs: dict
    per_concept: np.ndarray
    errors: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "k": self.k, "seeds": list(self.seeds),
                "resample": self.resample, "mean": float(self.mean),
                "pairs": [{"seeds": list(p), "mean": float(v)} for p, v in self.pairs.items()],
                "per_concept": [float(v) for v in self.per_concept],
                "errors": [float(e) for e in self.errors]}


def stability(rows: Any, k: int, *, method: str = "nmf", seeds: Any = (0, 1, 2),
              resample: float | None = None, **kw: Any) -> Stability:
    """Fit ``method`` with each of ``seeds`` and compare the concepts (:func:`match_concepts`).

    Args:
      rows: activations ``[n, C]`` / ``[N, h, w, C]``.
      k: number of concepts.
      method: ``"nmf"``, ``"sae"`` or ``"pca"``.
      seeds: at least two int seeds.
      resample: fraction in (0, 1]: each seed is fitted on its own seeded random subset of
        that share of the rows. Without it PCA is deterministic and trivially stable (1.0),
        and only the init of NMF / SAE varies.
      **kw: passed to the method (``iterations``, ``topk``, ...; ``progress`` defaults off).

    Returns:
      a :class:`Stability`: the mean matched cosine over all pairs of seeds, per pair and
      per concept of the first seed's fit (PCA is matched on ``|cos|``).

    Raises:
      ValueError: an unknown ``method``, fewer than two distinct ``seeds``, or ``resample``
        outside (0, 1].

    Example:
      >>> import numpy as np
      >>> from lucidax.concepts import stability
      >>> rows = np.random.default_rng(0).random((256, 16), dtype=np.float32)
      >>> st = stability(rows, 4, method="pca", seeds=(0, 1, 2), resample=0.5)
      >>> len(st.pairs), st.per_concept.shape, bool(0 <= st.mean <= 1)
      (3, (4,), True)
    """
    if method not in METHODS:
        raise ValueError(suggest(method, METHODS, what="method"))
    seeds = tuple(int(s) for s in seeds)
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be at least two distinct ints; got {seeds}")
    if resample is not None and not (isinstance(resample, (int, float))
                                     and 0 < resample <= 1):
        raise ValueError(f"resample must be None or a fraction in (0, 1]; got {resample!r}")
    r = as_rows(rows, nonnegative=(method == "nmf"), method=method)
    kw.setdefault("progress", False)
    fits = []
    for s in seeds:
        data = r
        if resample is not None and resample < 1:
            m = max(int(round(resample * r.n)), k)
            idx = np.random.default_rng([s, 0x5EED]).choice(r.n, m, replace=False)
            data = r.subset(idx)
        fits.append(factorize(data, k, method=method, key=s, **kw) if method != "pca"
                    else factorize(data, k, method="pca", **kw))
    absolute = method == "pca"
    pairs, first = {}, []
    for i, j in itertools.combinations(range(len(seeds)), 2):
        _, sim = match_concepts(fits[i].W, fits[j].W, absolute=absolute)
        pairs[(seeds[i], seeds[j])] = float(sim.mean())
        if i == 0:
            first.append(sim)
    return Stability(method, int(k), seeds, resample, float(np.mean(list(pairs.values()))),
                     pairs, np.mean(first, axis=0), tuple(f.error for f in fits))
