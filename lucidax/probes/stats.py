"""Small, dependency-free statistics for TCAV: Student's t distribution, two-sample t-tests
and multiple-comparison adjustments (scipy is not a core dependency).

* :func:`t_sf` / :func:`t_cdf`: the t distribution with (possibly fractional) ``df`` degrees
  of freedom, through the regularized incomplete beta function
  ``P(|T| > t) = I_{df / (df + t^2)}(df / 2, 1 / 2)``, evaluated in float64 with the
  continued fraction of Numerical Recipes (modified Lentz), accurate to ~1e-14.
* :func:`ttest_ind`: two-sided two-sample t-test, Welch (default) or Student (pooled
  variance, ``equal_var=True``: ``scipy.stats.ttest_ind``'s default and the TCAV paper's).
* :func:`adjust_pvalues`: Holm (step-down, family-wise error), Benjamini-Hochberg (step-up,
  false discovery rate), Bonferroni, or none.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from lucidax.models.base import suggest

__all__ = [
    "CORRECTIONS",
    "TTest",
    "adjust_pvalues",
    "betainc",
    "t_cdf",
    "t_sf",
    "ttest_ind",
]

CORRECTIONS = ("holm", "bh", "bonferroni", "none")
_ALIASES = {"fdr_bh": "bh", "benjamini-hochberg": "bh", "bonf": "bonferroni", None: "none"}


# ----------------------------------------------------------------------------------------------
# distributions
# ----------------------------------------------------------------------------------------------
def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta function ``I_x(a, b)`` for ``a, b > 0``, ``x`` in [0, 1]."""
    a, b, x = float(a), float(b), float(x)
    if not (a > 0 and b > 0):
        raise ValueError(f"betainc needs a > 0 and b > 0; got a={a}, b={b}")
    if math.isnan(x):
        return math.nan
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def _t_sf_one(t: float, df: float) -> float:
    if math.isnan(t) or math.isnan(df):
        return math.nan
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    if math.isinf(df):  # the normal limit
        return 0.5 * math.erfc(t / math.sqrt(2.0))
    tail = 0.5 * betainc(0.5 * df, 0.5, df / (df + t * t))  # P(T > |t|)
    return tail if t >= 0 else 1.0 - tail


def t_sf(t: Any, df: Any) -> Any:
    """Survival function ``P(T > t)`` of Student's t with ``df > 0`` degrees of freedom
    (``df`` may be fractional, e.g. Welch's; ``inf`` gives the normal). Broadcasts."""
    tt, dd = np.broadcast_arrays(np.asarray(t, np.float64), np.asarray(df, np.float64))
    if np.any(dd <= 0):
        raise ValueError(f"df must be > 0; got {np.asarray(df).tolist()}")
    out = np.asarray([_t_sf_one(float(a), float(b)) for a, b in zip(tt.ravel(), dd.ravel(),
                                                                      strict=True)])
    out = out.reshape(tt.shape)
    return float(out) if out.ndim == 0 else out


def t_cdf(t: Any, df: Any) -> Any:
    """Cumulative distribution ``P(T <= t)`` of Student's t (see :func:`t_sf`)."""
    return t_sf(-np.asarray(t, np.float64), df)


# ----------------------------------------------------------------------------------------------
# the t-test
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class TTest:
    """A two-sided two-sample t-test: ``statistic`` (mean(a) - mean(b) over its standard
    error), ``df`` (Welch-Satterthwaite or ``n_a + n_b - 2``) and ``pvalue``."""

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
    """
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
        pooled = ((nx - 1) * vx + (ny - 1) * vy) / df
        se2 = pooled * (1.0 / nx + 1.0 / ny)
    else:
        qx, qy = vx / nx, vy / ny
        se2 = qx + qy
        denom = (qx * qx / (nx - 1) if qx else 0.0) + (qy * qy / (ny - 1) if qy else 0.0)
        df = se2 * se2 / denom if denom > 0 else float(nx + ny - 2)
    scale = max(abs(mx), abs(my), 1.0)
    if se2 <= (1e-15 * scale) ** 2:
        if abs(diff) <= 1e-12 * scale:
            return TTest(0.0, df, 1.0)
        return TTest(math.copysign(math.inf, diff), df, 0.0)
    stat = diff / math.sqrt(se2)
    p = min(1.0, 2.0 * _t_sf_one(abs(stat), df))
    return TTest(stat, df, p)


# ----------------------------------------------------------------------------------------------
# multiple comparisons
# ----------------------------------------------------------------------------------------------
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
    else:
        order = np.argsort(q, kind="stable")
        ranked = q[order]
        rank = np.arange(1, m + 1)
        if method == "holm":
            stepped = np.maximum.accumulate(np.minimum(1.0, (m - rank + 1) * ranked))
        else:  # bh
            stepped = np.minimum.accumulate(np.minimum(1.0, m / rank * ranked)[::-1])[::-1]
        adj = np.empty(m)
        adj[order] = stepped
    out[ok] = adj
    return out
