"""Statistics of TCAV: two-sample t-tests (p-values from :data:`scipy.stats.t`) and
multiple-comparison adjustments.

* :func:`ttest_ind`: two-sided two-sample t-test, Welch (default) or Student (pooled
  variance, ``equal_var=True``: ``scipy.stats.ttest_ind``'s default and the TCAV paper's), with
  a defined answer for constant samples (TCAV scores pinned at 0 or 1 in every run).
* :func:`adjust_pvalues`: Holm (step-down, family-wise error), Benjamini-Hochberg (step-up,
  false discovery rate, :func:`scipy.stats.false_discovery_control`), Bonferroni, or none.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from lucidax.models import suggest

#: multiple-testing corrections of :func:`adjust_pvalues` (``--correction``): Holm (the
#: default, family-wise error), Benjamini-Hochberg (false discovery rate), Bonferroni, none
CORRECTIONS = ("holm", "bh", "bonferroni", "none")
_ALIASES = {"fdr_bh": "bh", "benjamini-hochberg": "bh", "bonf": "bonferroni", None: "none"}


@dataclasses.dataclass(frozen=True)
class TTest:
    """A two-sided two-sample t-test, as :func:`ttest_ind` returns it.

    Attributes:
      statistic: ``(mean(a) - mean(b))`` over its standard error.
      df: degrees of freedom (Welch-Satterthwaite, or ``n_a + n_b - 2`` for Student's test).
      pvalue: two-sided p-value.

    Example:
      >>> from lucidax.probes import ttest_ind
      >>> t = ttest_ind([0.9, 0.8, 0.85, 0.95], [0.5, 0.4, 0.6, 0.55])
      >>> bool(t.statistic > 0), bool(t.pvalue < 0.01), round(t.df, 1)
      (True, True, 5.6)
    """

    statistic: float
    df: float
    pvalue: float


def ttest_ind(a: Any, b: Any, *, equal_var: bool = False) -> TTest:
    """Two-sided test of equal means for independent samples ``a`` and ``b``.

    ``equal_var=False`` (default): Welch's test (no equal-variance assumption; robust when one
    group's scores are pinned near 0 or 1 and the other's are spread). ``equal_var=True``:
    Student's pooled-variance test (``scipy.stats.ttest_ind``'s default, used by the TCAV
    paper). NaNs are dropped.

    Degenerate samples: when both samples are constant the standard error is 0; the p-value
    is then 1.0 if the means are equal (no evidence of a difference; scipy gives NaN) and 0.0
    if they differ. Fewer than 2 values in either sample raises ValueError.

    Args:
      a: ``[n_a]`` sample (e.g. TCAV scores of the concept's CAVs).
      b: ``[n_b]`` sample (e.g. TCAV scores of the random CAVs).
      equal_var: Student's pooled-variance test instead of Welch's.

    Returns:
      A :class:`TTest`.

    Example:
      >>> from lucidax.probes import ttest_ind
      >>> t = ttest_ind([0.7, 0.8, 0.75, 0.9], [0.5, 0.45, 0.6, 0.5], equal_var=True)
      >>> round(t.df), bool(t.pvalue < 0.01)
      (6, True)
    """
    import scipy.stats  # imported on use: ~1 s that every lucidax command would pay

    x = np.asarray(a, np.float64).ravel()
    y = np.asarray(b, np.float64).ravel()
    x, y = x[~np.isnan(x)], y[~np.isnan(y)]
    if len(x) < 2 or len(y) < 2:
        raise ValueError(
            f"ttest_ind needs at least 2 values in each sample; got {len(x)} and {len(y)}"
        )
    nx, ny = len(x), len(y)
    mx, my = float(x.mean()), float(y.mean())
    vx, vy = float(x.var(ddof=1)), float(y.var(ddof=1))
    diff = mx - my
    if equal_var:
        df = float(nx + ny - 2)
        se2 = ((nx - 1) * vx + (ny - 1) * vy) / df * (1.0 / nx + 1.0 / ny)
    else:  # Welch-Satterthwaite
        qx, qy = vx / nx, vy / ny
        se2 = qx + qy
        denom = (qx * qx / (nx - 1) if qx else 0.0) + (qy * qy / (ny - 1) if qy else 0.0)
        df = se2 * se2 / denom if denom > 0 else float(nx + ny - 2)
    scale = max(abs(mx), abs(my), 1.0)
    if se2 <= (1e-15 * scale) ** 2:  # both samples constant
        if abs(diff) <= 1e-12 * scale:
            return TTest(0.0, df, 1.0)
        return TTest(math.copysign(math.inf, diff), df, 0.0)
    stat = diff / math.sqrt(se2)
    # (the statistic is formed here, not by scipy.stats.ttest_ind, which warns of "precision
    # loss" on the nearly constant scores TCAV often gives; the p-value is scipy's t)
    return TTest(stat, df, min(1.0, float(2.0 * scipy.stats.t.sf(abs(stat), df))))


def _check_correction(method: str | None) -> str:
    key = method.lower() if isinstance(method, str) else method
    key = _ALIASES.get(key, key)
    if key not in CORRECTIONS:
        raise ValueError(suggest(str(method), CORRECTIONS, what="correction"))
    return key


def adjust_pvalues(pvalues: Sequence[float] | np.ndarray, method: str = "holm") -> np.ndarray:
    """Adjusted p-values for a family of tests (same order as ``pvalues``).

    * ``"holm"``: Holm's step-down method, controls the family-wise error rate (uniformly more
      powerful than Bonferroni): ``p_adj(i) = max_{j <= i} min(1, (m - j + 1) p_(j))``.
    * ``"bh"``: Benjamini-Hochberg step-up, controls the false discovery rate:
      ``p_adj(i) = min_{j >= i} min(1, m / j * p_(j))``.
    * ``"bonferroni"``: ``min(1, m p)``; ``"none"``: unchanged.

    ``(i)`` ranks ascending p-values; ``m`` counts the finite ones (NaNs stay NaN). Reject the
    hypotheses with ``p_adj <= alpha``. Matches ``statsmodels.stats.multitest.multipletests``.

    Args:
      pvalues: ``[m]`` raw p-values.
      method: ``"holm"``, ``"bh"``, ``"bonferroni"`` or ``"none"`` (:data:`CORRECTIONS`).

    Returns:
      ``[m]`` adjusted p-values (float64).

    Example:
      >>> from lucidax.probes import adjust_pvalues
      >>> adjust_pvalues([0.01, 0.04, 0.03], "holm").round(3).tolist()
      [0.03, 0.06, 0.06]
      >>> adjust_pvalues([0.01, 0.04, 0.03], "bh").round(3).tolist()
      [0.03, 0.04, 0.04]
    """
    method = _check_correction(method)
    p = np.asarray(pvalues, np.float64)
    if p.ndim != 1:
        raise ValueError(f"pvalues must be 1-D; got shape {p.shape}")
    ok = ~np.isnan(p)
    if np.any((p[ok] < 0) | (p[ok] > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    out = np.full_like(p, np.nan)
    q = p[ok]
    m = len(q)
    if m == 0:
        return out
    if method == "none":
        adj = q.copy()
    elif method == "bonferroni":
        adj = np.minimum(1.0, m * q)
    elif method == "bh":
        import scipy.stats

        adj = scipy.stats.false_discovery_control(q, method="bh")
    else:  # holm: not in scipy
        order = np.argsort(q, kind="stable")
        rank = np.arange(1, m + 1)
        adj = np.empty(m)
        adj[order] = np.maximum.accumulate(np.minimum(1.0, (m - rank + 1) * q[order]))
    out[ok] = adj
    return out
