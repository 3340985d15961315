"""Linear probes: multinomial logistic regression and ridge regression with vectorized CV.

The logistic probe minimizes, for each (fold, lambda) problem,

    mean_i CE(softmax(x_i W + b), y_i) + lambda / 2 * ||W||^2

on features standardized with that fold's training statistics (the intercept is not
penalized). This is scikit-learn's ``LogisticRegression(C=C)`` objective divided by ``C * n``,
so ``C = 1 / (lambda * n)`` where ``n`` is the number of training samples of the fit.

The whole cross-validation is one compiled program. The lambdas run from strong to weak in a
``lax.scan`` (the regularization path, as scikit-learn's ``LogisticRegressionCV``): the
folds of one lambda are solved together, warm-started from the previous lambda's solutions.
The L-BFGS direction (``optax.scale_by_lbfgs``) and the line search (Armijo, backtracking by
safeguarded quadratic interpolation) are ``jax.vmap``-ed over the folds, which share the one
data matrix, so each objective evaluation is a single matrix product ``X @ [W_1 ... W_F]``
and its transpose instead of ``F`` thin ones (the group objective is
``vmap(value_and_grad(_objective))`` written out by hand, checked against autodiff in the
tests). On CPUs with AMX bfloat16 units the forward product is "bf16x3" (three bfloat16
products, float32 accumulation; see ``_solver._rows_times``). Folds are 0/1 sample weights over
the training split, and each fold's own standardization is folded into the weights
(``(x - mu_f) / sd_f @ W == x @ (W / sd_f) - (mu_f / sd_f) @ W``), so nothing is copied per
fold. A problem stops when its gradient infinity-norm is below ``tol`` (scikit-learn's
``gtol`` convention) or at ``max_iter``; ``ProbeResult.converged`` says whether all did. The
pooled CV scores and the choice of lambda run in the same program; the refit on the whole
train split (warm-started from the chosen lambda's fold solutions) is a second, small program,
compiled in a thread while the first one compiles and runs.

Why not ``optax.lbfgs`` with its zoom line search under ``vmap``: that line search branches
with ``lax.cond``; under ``vmap`` a batched predicate turns the branches into a ``select``
whose operands are broadcast over the batch, which copies the shared data matrix once per
problem (measured ~30x slower). The Armijo backtracking search here is written with
batch-wide ``where``s instead; for these strongly convex objectives (lambda > 0) every step
has positive curvature, so the L-BFGS update stays well defined.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import math
import warnings
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from ._solver import (
    _bf16x3_default,
    _bucket,
    _compile_refit,
    _cv_program,
    _moments,
    _solve,
    _SolverConfig,
    _standardize,
)

#: the L2 grid searched by cross-validation: 1e-4 ... 1e2, 7 values (scikit-learn
#: ``C = 1 / (lambda * n_train)``)
DEFAULT_LAMBDAS: tuple[float, ...] = tuple(float(v) for v in np.logspace(-4, 2, 7))
_Z95 = 1.959963984540054


class ProbeConvergenceWarning(RuntimeWarning):
    """The solver stopped at ``max_iter`` (or stalled) before reaching ``tol``.

    A warning, not an error: the result is still returned (with ``converged=False``); raise
    ``max_iter`` or loosen ``tol`` if it matters.

    Example:
      >>> import warnings
      >>> import numpy as np
      >>> from lucidax.probes import ProbeConvergenceWarning, fit_logistic
      >>> x = np.random.default_rng(0).normal(size=(60, 4))
      >>> with warnings.catch_warnings(record=True) as caught:
      ...     warnings.simplefilter("always")
      ...     fit = fit_logistic(x, np.arange(60) % 2, 1e-4, max_iter=1)
      >>> any(issubclass(w.category, ProbeConvergenceWarning) for w in caught)
      True
    """


# ----------------------------------------------------------------------------------------------
# results
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class ProbeResult:
    """Held-out accuracy of a multinomial logistic probe, with its CV and solver facts.

    Attributes:
      accuracy: accuracy on the held-out test split.
      ci_low, ci_high: 95% Wilson score interval of ``accuracy``.
      lambda_: L2 strength chosen by cross-validation (objective convention in the module
        docstring; scikit-learn ``C = 1 / (lambda_ * n_train)``).
      lambdas: the grid searched (sorted ascending, duplicates dropped).
      cv_scores: pooled cross-validated accuracy for each lambda (every training sample is
        scored once, by the fold that held it out).
      cv_log_loss: pooled cross-validated mean cross-entropy for each lambda.
      scoring: what chose ``lambda_`` (``"log_loss"`` or ``"accuracy"``).
      n_train, n_test, n_classes, n_features: sizes.
      chance: majority-class rate on the test split (the accuracy of always guessing it).
      train_accuracy: accuracy of the refit on the training split.
      converged: every CV problem and the refit reached ``tol``.
      n_iter: most L-BFGS iterations any problem took.
      grad_norm: largest final gradient infinity-norm among the problems.
      weights: ``[n_features, n_classes]`` in the original (unstandardized) feature space.
      bias: ``[n_classes]``; ``features @ weights + bias`` are the logits.
      classes: the label value of each logit column.
      folds, seed, test_size: the split configuration.
      layer, target: optional names (filled in by ``probe_layers``).

    Example:
      >>> import numpy as np
      >>> from lucidax.probes import fit_probe
      >>> rng = np.random.default_rng(0)
      >>> labels = np.repeat([0, 1], 50)
      >>> result = fit_probe(rng.normal(size=(100, 4)) + labels[:, None], labels)
      >>> bool(result.ci_low <= result.accuracy <= result.ci_high), result.chance
      (True, 0.5)
      >>> sorted(result.to_dict())[:3]
      ['accuracy', 'chance', 'ci_high']
    """

    accuracy: float
    ci_low: float
    ci_high: float
    lambda_: float
    lambdas: tuple[float, ...]
    cv_scores: tuple[float, ...]
    cv_log_loss: tuple[float, ...]
    scoring: str
    n_train: int
    n_test: int
    n_classes: int
    n_features: int
    chance: float
    train_accuracy: float
    converged: bool
    n_iter: int
    grad_norm: float
    weights: np.ndarray
    bias: np.ndarray
    classes: tuple[Any, ...]
    folds: int
    seed: int
    test_size: float
    layer: str | None = None
    target: str | None = None

    def decision_function(self, features: Any) -> np.ndarray:
        """Logits ``[N, n_classes]`` for raw (unstandardized) features ``[N, n_features]``."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(
                f"features must be [N, {self.n_features}] like the training features; got "
                f"shape {x.shape}"
            )
        return x @ self.weights + self.bias

    def predict(self, features: Any) -> np.ndarray:
        """Predicted label values for raw features ``[N, n_features]``."""
        idx = np.argmax(self.decision_function(features), axis=1)
        return np.asarray(self.classes)[idx]

    def to_dict(self, *, weights: bool = False) -> dict[str, Any]:
        """JSON-ready summary (weights left out unless asked for)."""
        return _result_dict(self, weights)


@dataclasses.dataclass(frozen=True, eq=False)
class LogisticFit:
    """One L2 multinomial logistic fit (see :func:`fit_logistic`).

    Attributes:
      weights: ``[n_features, n_classes]`` in the original (unstandardized) feature space.
      bias: ``[n_classes]``.
      classes: the label values, in the order of the columns.
      lambda_: the L2 strength it was fitted with.
      converged: whether the solver reached its tolerance.
      n_iter: solver iterations.
      grad_norm: final gradient norm.

    Example:
      >>> from lucidax.probes import fit_logistic
      >>> import numpy as np
      >>> rng = np.random.default_rng(0)
      >>> labels = np.repeat([0, 1, 2], 40)
      >>> features = rng.normal(size=(120, 8)) + 2.0 * np.eye(8)[labels]
      >>> fit = fit_logistic(features, labels, 1e-3)
      >>> fit.weights.shape, fit.predict_proba(features[:2]).shape
      ((8, 3), (2, 3))
    """

    weights: np.ndarray  # [n_features, n_classes], original feature space
    bias: np.ndarray  # [n_classes]
    classes: tuple[Any, ...]
    lambda_: float
    converged: bool
    n_iter: int
    grad_norm: float

    def decision_function(self, features: Any) -> np.ndarray:
        return np.asarray(features, dtype=np.float64) @ self.weights + self.bias

    def predict_proba(self, features: Any) -> np.ndarray:
        z = self.decision_function(features)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, features: Any) -> np.ndarray:
        return np.asarray(self.classes)[np.argmax(self.decision_function(features), axis=1)]


@dataclasses.dataclass(frozen=True, eq=False)
class RidgeResult:
    """Held-out R^2 of a ridge (L2 least-squares) probe for continuous targets.

    Objective: ``mean_i ||y_i - x_i W - b||^2 / 2 + lambda / 2 * ||W||^2`` on standardized
    features (scikit-learn ``Ridge(alpha=lambda * n_train)``). ``r2`` is averaged uniformly
    over targets, measured against the training mean (so predicting it scores 0).

    Attributes:
      r2: held-out R^2 (mean over targets).
      mse: held-out mean squared error.
      lambda_: the L2 strength chosen by cross-validation; ``lambdas`` the grid searched and
        ``cv_scores`` the pooled CV R^2 of each.
      n_train, n_test, n_features, n_targets: sizes.
      weights: ``[n_features, n_targets]`` in the original feature space (``[n_features]``
        for ``[N]`` targets); ``bias`` ``[n_targets]`` (a scalar for ``[N]`` targets).
      folds, seed, test_size: the settings used.
      layer, target: names recorded for reports (None when not given).

    Example:
      >>> import numpy as np
      >>> from lucidax.probes import fit_ridge
      >>> x = np.random.default_rng(0).normal(size=(200, 6))
      >>> result = fit_ridge(x, x[:, 0] - 2 * x[:, 1], target="mix")
      >>> bool(result.r2 > 0.99), result.weights.shape
      (True, (6,))
    """

    r2: float
    mse: float
    lambda_: float
    lambdas: tuple[float, ...]
    cv_scores: tuple[float, ...]
    n_train: int
    n_test: int
    n_features: int
    n_targets: int
    weights: np.ndarray  # [n_features, n_targets], original feature space
    bias: np.ndarray  # [n_targets]
    folds: int
    seed: int
    test_size: float
    layer: str | None = None
    target: str | None = None

    def predict(self, features: Any) -> np.ndarray:
        return np.asarray(features, dtype=np.float64) @ self.weights + self.bias

    def to_dict(self, *, weights: bool = False) -> dict[str, Any]:
        """JSON-ready summary (weights left out unless asked for)."""
        return _result_dict(self, weights)


def _result_dict(result: Any, weights: bool) -> dict[str, Any]:
    """The fields of a result dataclass as JSON-ready values, ``weights`` and ``bias`` only
    when ``weights``."""
    return {f.name: _jsonable(getattr(result, f.name)) for f in dataclasses.fields(result)
            if weights or f.name not in ("weights", "bias")}


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, tuple | list):
        return [_jsonable(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


# ----------------------------------------------------------------------------------------------
# statistics helpers
# ----------------------------------------------------------------------------------------------
def wilson_interval(successes: int, n: int, *, z: float = _Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% by default).

    Args:
      successes: number of successes (e.g. correct predictions).
      n: number of trials; ``n <= 0`` gives ``(0.0, 1.0)``.
      z: the normal quantile (1.96 for 95%).

    Returns:
      ``(low, high)`` bounds of the proportion ``successes / n``.

    Example:
      >>> from lucidax.probes import wilson_interval
      >>> [round(v, 3) for v in wilson_interval(45, 50)]
      [0.786, 0.957]
    """
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1.0 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if successes <= 0 else max(0.0, center - half)
    hi = 1.0 if successes >= n else min(1.0, center + half)
    return (lo, hi)


def _encode(labels: Any, n: int | None = None) -> tuple[np.ndarray, tuple[Any, ...]]:
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D (one label per sample); got shape {y.shape}")
    if n is not None and len(y) != n:
        raise ValueError(
            f"features and labels have different lengths: {n} feature rows vs {len(y)} labels"
        )
    if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        raise ValueError("labels contain NaN or infinite values")
    classes, codes = np.unique(y, return_inverse=True)
    return codes.astype(np.int32), tuple(c.item() if hasattr(c, "item") else c for c in classes)


def stratified_split(
    labels: Any, test_size: float = 0.25, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified train/test split: ``(train_idx, test_idx)``, each sorted.

    Each class contributes ``max(1, round(test_size * n_class))`` samples to the test split.

    Args:
      labels: ``[N]`` label values (any hashable values).
      test_size: fraction of each class in the test split, in (0, 1).
      seed: the shuffle's seed.

    Example:
      >>> import numpy as np
      >>> from lucidax.probes import stratified_split
      >>> train, test = stratified_split(np.repeat([0, 1], [80, 20]), 0.25)
      >>> len(train), len(test), int((test >= 80).sum())
      (75, 25, 5)
    """
    if not 0.0 < float(test_size) < 1.0:
        raise ValueError(f"test_size must be in (0, 1); got {test_size}")
    codes, classes = _encode(labels)
    rng = np.random.default_rng(seed)
    test: list[np.ndarray] = []
    for c in range(len(classes)):
        idx = np.flatnonzero(codes == c)
        rng.shuffle(idx)
        k = max(1, int(round(test_size * len(idx)))) if len(idx) > 1 else 0
        test.append(idx[:k])
    test_idx = np.sort(np.concatenate(test)) if test else np.zeros(0, np.int64)
    train_mask = np.ones(len(codes), bool)
    train_mask[test_idx] = False
    return np.flatnonzero(train_mask), test_idx


def stratified_folds(labels: Any, folds: int = 5, *, seed: int = 0) -> np.ndarray:
    """Deterministic stratified k-fold assignment: fold id in ``[0, folds)`` per sample.

    Args:
      labels: ``[N]`` label values.
      folds: number of folds.
      seed: the shuffle's seed.

    Returns:
      ``[N]`` int32 fold ids; each class is spread evenly over the folds.

    Example:
      >>> import numpy as np
      >>> from lucidax.probes import stratified_folds
      >>> fold = stratified_folds(np.repeat([0, 1], 10), folds=5)
      >>> np.bincount(fold).tolist()
      [4, 4, 4, 4, 4]
    """
    codes, classes = _encode(labels)
    rng = np.random.default_rng(seed)
    fold = np.empty(len(codes), np.int32)
    offset = 0
    for c in range(len(classes)):
        idx = np.flatnonzero(codes == c)
        rng.shuffle(idx)
        fold[idx] = (offset + np.arange(len(idx))) % folds
        offset = (offset + len(idx)) % folds  # keeps fold sizes balanced across classes
    return fold


def _check_features(features: Any, n_labels: int | None = None) -> np.ndarray:
    x = np.asarray(features)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(
            f"features must be a 2-D array [N, D]; got shape {x.shape} (reduce spatial "
            "activations first, e.g. extract(..., reduce='mean'))"
        )
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise TypeError(f"features must be real numbers; got dtype {x.dtype}")
    if n_labels is not None and x.shape[0] != n_labels:
        raise ValueError(
            f"features and labels have different lengths: {x.shape[0]} feature rows vs "
            f"{n_labels} labels"
        )
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"features are empty (shape {x.shape})")
    bad = ~np.isfinite(x).all(axis=1) if x.dtype.kind == "f" else np.zeros(len(x), bool)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(
            f"features contain NaN or infinite values in {len(rows)} of {len(x)} rows "
            f"(first: {rows[:5].tolist()}); drop or impute them first"
        )
    return x

_LAST_STATS: dict[str, int] = {}  # diagnostics of the last solve (for benchmarks)

def _device_rows(x: np.ndarray, codes: np.ndarray, k: int):
    """Training rows for the solver: ``x`` padded to a multiple of 128 rows (zero weight) and
    ``_solver._bucket`` columns, so that similar sizes share one compiled program, and
    standardized on the device. Returns (x standardized [n_pad, d_pad] on the device,
    mean [d] and std [d] (float64), one-hot y [n_pad, K], codes [n_pad])."""
    n, d = x.shape
    n_pad = -(-n // 128) * 128
    x_pad = np.zeros((n_pad, _bucket(d)), np.float32)
    x_pad[:n, :d] = x
    y = np.zeros((n_pad, k), np.float32)
    y[np.arange(n), codes] = 1.0
    c = np.zeros(n_pad, np.int32)
    c[:n] = codes
    xs, mu, sd = _standardize(jnp.asarray(x_pad), n)
    return xs, np.asarray(mu, np.float64)[:d], np.asarray(sd, np.float64)[:d], y, c


def _weights(masks: np.ndarray, n_pad: int) -> np.ndarray:
    w = np.zeros((masks.shape[0], n_pad), np.float32)
    w[:, : masks.shape[1]] = masks / masks.sum(axis=1, keepdims=True)
    return w


def _check_lambdas(lambdas: Any) -> tuple[float, ...]:
    lams = tuple(float(v) for v in np.atleast_1d(np.asarray(lambdas, dtype=np.float64)))
    if not lams:
        raise ValueError("lambdas must not be empty")
    if any(not math.isfinite(v) or v <= 0 for v in lams):
        raise ValueError(f"every lambda must be a positive finite number; got {lams}")
    return lams


def _check_solver(max_iter: int, tol: float) -> _SolverConfig:
    if isinstance(max_iter, bool) or not isinstance(max_iter, int | np.integer) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer; got {max_iter!r}")
    if not (isinstance(tol, int | float) and math.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a positive number; got {tol!r}")
    return _SolverConfig(max_iter=int(max_iter), tol=float(tol))


def _check_folds(folds: int) -> int:
    if isinstance(folds, bool) or not isinstance(folds, int | np.integer) or folds < 2:
        raise ValueError(f"folds must be an integer >= 2; got {folds!r}")
    return int(folds)


def _log_prior(codes: np.ndarray, k: int, weights: np.ndarray | None = None) -> np.ndarray:
    counts = np.bincount(codes, weights=weights, minlength=k).astype(np.float64) + 0.5
    p = counts / counts.sum()
    return np.log(p) - np.log(p).mean()


def fit_logistic(
    features: Any,
    labels: Any,
    lam: float,
    *,
    max_iter: int = 500,
    tol: float = 1e-4,
) -> LogisticFit:
    """One L2 multinomial logistic regression on all of ``features`` (standardized).

    ``lam`` follows the module convention: scikit-learn ``C = 1 / (lam * n)``.

    Args:
      features: ``[N, D]`` features.
      labels: ``[N]`` label values (at least 2 classes).
      lam: L2 strength.
      max_iter: solver iterations at most (a :class:`ProbeConvergenceWarning` when reached).
      tol: gradient-norm tolerance.

    Returns:
      A :class:`LogisticFit`.

    Example:
      >>> from lucidax.probes import fit_logistic
      >>> import numpy as np
      >>> rng = np.random.default_rng(0)
      >>> labels = np.repeat([0, 1, 2], 40)
      >>> features = rng.normal(size=(120, 8)) + 2.0 * np.eye(8)[labels]
      >>> fit = fit_logistic(features, labels, 1e-3)
      >>> fit.classes, float((fit.predict(features) == labels).mean()) > 0.8
      ((0, 1, 2), True)
    """
    codes, classes = _encode(labels)
    x = _check_features(features, len(codes))
    (lam,) = _check_lambdas([lam])
    cfg = _check_solver(max_iter, tol)
    if len(classes) < 2:
        raise ValueError(f"need at least 2 classes to fit a classifier; got {len(classes)}")
    n, d = x.shape
    k = len(classes)
    xs, mu, sd, y_pad, _ = _device_rows(x, codes, k)
    d_pad = xs.shape[1]
    out = _solve(
        xs, jnp.asarray(y_pad), jnp.asarray(_weights(np.ones((1, n)), len(y_pad))),
        jnp.asarray([lam], jnp.float32), jnp.zeros((1, d_pad), jnp.float32),
        jnp.ones((1, d_pad), jnp.float32), jnp.asarray(_log_prior(codes, k)[None], jnp.float32),
        jnp.asarray(cfg.max_iter, jnp.int32), jnp.asarray(cfg.tol, jnp.float32),
        memory=cfg.memory, max_ls=cfg.max_ls,
    )
    wt, b, iters, gn, _ = (np.asarray(o) for o in out)
    w_std = wt[0, :d].astype(np.float64)
    weights = w_std / sd[:, None]
    bias = b[0].astype(np.float64) - (mu / sd) @ w_std
    converged = bool(gn[0] <= tol)
    if not converged:
        warnings.warn(
            f"logistic fit did not converge in {int(iters[0])} iterations (gradient norm "
            f"{float(gn[0]):.2e} > tol {tol:g}); raise max_iter or lambda",
            ProbeConvergenceWarning,
            stacklevel=2,
        )
    return LogisticFit(
        weights=weights,
        bias=bias,
        classes=classes,
        lambda_=lam,
        converged=converged,
        n_iter=int(iters[0]),
        grad_norm=float(gn[0]),
    )


def fit_probe(
    features: Any,
    labels: Any,
    *,
    test_size: float = 0.25,
    folds: int = 5,
    lambdas: Sequence[float] = DEFAULT_LAMBDAS,
    seed: int = 0,
    max_iter: int = 500,
    tol: float = 1e-4,
    scoring: str = "log_loss",
    layer: str | None = None,
    target: str | None = None,
) -> ProbeResult:
    """Held-out accuracy of an L2 multinomial logistic probe, lambda chosen by stratified CV.

    1. Stratified train/test split (``test_size``, ``seed``).
    2. Stratified ``folds``-fold CV on the train split over ``lambdas``: each lambda's folds
       are solved at once, the lambdas along the regularization path (see the module
       docstring), each fold on features standardized with its own training statistics.
       The lambda with the lowest pooled CV log-loss wins (``scoring="log_loss"``, the
       default: a proper scoring rule, smooth in lambda) or the best pooled CV accuracy
       (``scoring="accuracy"``, ties go to the larger lambda).
    3. Refit on the whole train split (standardized with train statistics) with that lambda;
       report test accuracy with a 95% Wilson interval and the majority-class ``chance`` rate.

    Args:
      features: ``[N, D]`` features (e.g. one layer of :func:`extract`).
      labels: ``[N]`` label values.
      test_size, folds, lambdas, seed: the split, the CV and the L2 grid (above).
      max_iter, tol: the solver's limits (a :class:`ProbeConvergenceWarning` when reached).
      scoring: ``"log_loss"`` or ``"accuracy"`` (above).
      layer, target: names recorded in the result (for reports).

    Returns:
      A :class:`ProbeResult`.

    Raises:
      ValueError: fewer than 2 classes, a class with fewer training samples than ``folds``,
        NaN/inf features, mismatched lengths, bad ``test_size``/``folds``/``lambdas``.

    Example:
      >>> from lucidax.probes import fit_probe
      >>> import numpy as np
      >>> rng = np.random.default_rng(0)
      >>> labels = np.repeat([0, 1, 2], 40)
      >>> features = rng.normal(size=(120, 8)) + 2.0 * np.eye(8)[labels]
      >>> result = fit_probe(features, labels, layer="demo", target="class")
      >>> bool(result.accuracy > 0.8), result.n_test, result.weights.shape
      (True, 30, (8, 3))
    """
    codes_all, classes = _encode(labels)
    x_all = _check_features(features, len(codes_all))
    folds = _check_folds(folds)
    if scoring not in ("log_loss", "accuracy"):
        raise ValueError(f"Unknown scoring {scoring!r}. Valid scorings: log_loss, accuracy")
    lams = tuple(sorted(set(_check_lambdas(lambdas))))
    cfg = _check_solver(max_iter, tol)
    k = len(classes)
    if k < 2:
        raise ValueError(
            f"need at least 2 classes to fit a probe; every label is {classes[0]!r}"
            if k == 1
            else "need at least 2 classes to fit a probe; got no labels"
        )
    counts = np.bincount(codes_all, minlength=k)
    train_idx, test_idx = stratified_split(codes_all, test_size, seed=seed)
    train_counts = np.bincount(codes_all[train_idx], minlength=k)
    small = [(classes[c], int(counts[c]), int(train_counts[c])) for c in range(k)
             if train_counts[c] < folds]
    if small:
        desc = ", ".join(f"{c!r} ({n} samples, {t} after the test split)" for c, n, t in small)
        raise ValueError(
            f"every class needs at least folds={folds} training samples for stratified CV; "
            f"too few for class(es) {desc}. Use fewer folds, more data, or drop those classes."
        )

    y_train, y_test = codes_all[train_idx], codes_all[test_idx]
    n, d = len(train_idx), x_all.shape[1]
    # global (train split) standardization on the device; each fold's statistics are
    # computed (relative to it) inside the solver program
    xs, mu_g, sd_g, y_pad, c_pad = _device_rows(x_all[train_idx], y_train, k)
    n_pad, d_pad = xs.shape
    fold_id = stratified_folds(y_train, folds, seed=seed + 1)
    masks = np.stack([fold_id != f for f in range(folds)])
    priors = np.stack([_log_prior(y_train[masks[f]], k) for f in range(folds)])
    val = np.zeros((folds, n_pad), np.float32)
    val[:, :n] = ~masks
    f32 = functools.partial(jnp.asarray, dtype=jnp.float32)
    lams_desc = lams[::-1]
    y_dev, w_all = jnp.asarray(y_pad), jnp.asarray(_weights(np.ones((1, n)), n_pad)[0])
    solver = dict(memory=cfg.memory, max_ls=cfg.max_ls, bf16x3=_bf16x3_default())
    max_iter_a = jnp.asarray(cfg.max_iter, jnp.int32)
    tol_a = jnp.asarray(cfg.tol, jnp.float32)
    k_init = jnp.zeros((1, d_pad, k), jnp.float32), jnp.zeros((1, k), jnp.float32)
    refit_args = (xs, y_dev, w_all, jnp.float32(0), k_init, max_iter_a, tol_a)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        # compile the refit while the cross-validation compiles and runs
        refit_exe = pool.submit(_compile_refit, refit_args, solver)
        correct, loss, best, lam_best, init, iters, gn, evals = _cv_program(
            xs, y_dev, jnp.asarray(c_pad), jnp.asarray(_weights(masks, n_pad)),
            jnp.asarray(val), f32(lams_desc), f32(priors), max_iter_a, tol_a,
            jnp.asarray(scoring == "log_loss"), **solver,
        )
        rw, rb, r_iter, r_gn, r_evals, train_pred = refit_exe.result()(
            xs, y_dev, w_all, lam_best, init, max_iter_a, tol_a)
    train_pred = np.asarray(train_pred)[:n]
    correct, loss, best, rw, rb, iters, gn, r_iter, r_gn, evals, r_evals = (
        np.asarray(o) for o in (correct, loss, best, rw, rb, iters, gn, r_iter, r_gn, evals,
                                r_evals))
    iters, gn = iters.reshape(-1), gn.reshape(-1)
    _LAST_STATS.update(evaluations=int(evals.sum()), refit_evaluations=int(r_evals),
                       evaluations_per_lambda=[int(e) for e in evals[::-1]],
                       n_iter=int(iters.max()), refit_iter=int(r_iter), problems=len(iters))
    cv_scores, cv_log_loss = correct[::-1] / n, loss[::-1] / n  # ascending lambdas again
    best = len(lams) - 1 - int(best)
    lam = lams[best]

    w_std = rw[:d].astype(np.float64)
    weights = w_std / sd_g[:, None]
    bias = rb.astype(np.float64) - (mu_g / sd_g) @ w_std
    test_pred = np.argmax(np.asarray(x_all[test_idx], np.float64) @ weights + bias, axis=1)
    n_test = len(y_test)
    hits = int(np.sum(test_pred == y_test))
    lo, hi = wilson_interval(hits, n_test)
    chance = float(np.bincount(y_test, minlength=k).max() / n_test)

    all_gn = np.append(gn, r_gn)
    converged = bool(np.all(all_gn <= tol))
    n_iter = int(max(iters.max(), r_iter))
    if not converged:
        bad = int(np.sum(all_gn > tol))
        warnings.warn(
            f"probe{f' for {layer!r}' if layer else ''}: {bad} of {len(all_gn)} fits did not "
            f"reach tol={tol:g} in max_iter={max_iter} (largest gradient norm "
            f"{float(all_gn.max()):.2e}); results may be slightly off",
            ProbeConvergenceWarning,
            stacklevel=2,
        )
    return ProbeResult(
        accuracy=hits / n_test,
        ci_low=lo,
        ci_high=hi,
        lambda_=lam,
        lambdas=lams,
        cv_scores=tuple(float(s) for s in cv_scores),
        cv_log_loss=tuple(float(s) for s in cv_log_loss),
        scoring=scoring,
        n_train=n,
        n_test=n_test,
        n_classes=k,
        n_features=d,
        chance=chance,
        train_accuracy=float(np.mean(train_pred == y_train)),
        converged=converged,
        n_iter=n_iter,
        grad_norm=float(all_gn.max()),
        weights=weights,
        bias=bias,
        classes=classes,
        folds=folds,
        seed=seed,
        test_size=float(test_size),
        layer=layer,
        target=target,
    )


# ----------------------------------------------------------------------------------------------
# ridge
# ----------------------------------------------------------------------------------------------
def _ridge_path(x: np.ndarray, y: np.ndarray, lams: np.ndarray) -> tuple[np.ndarray, ...]:
    """Closed-form ridge for every lambda at once (x, y centered; x standardized).

    Returns weights [L, d, T]. Uses the primal (d x d) or dual (n x n) eigendecomposition,
    whichever is smaller, then broadcasts over lambdas.
    """
    n, d = x.shape
    if d <= n:
        s, v = np.linalg.eigh(x.T @ x / n)
        rhs = v.T @ (x.T @ y / n)  # [d, T]
        return np.einsum("ij,lj,jt->lit", v, 1.0 / (np.maximum(s, 0)[None] + lams[:, None]), rhs)
    s, u = np.linalg.eigh(x @ x.T / n)
    rhs = u.T @ y / n  # [n, T]
    alpha = np.einsum("ij,lj,jt->lit", u, 1.0 / (np.maximum(s, 0)[None] + lams[:, None]), rhs)
    return np.einsum("id,lit->ldt", x, alpha)


def fit_ridge(
    features: Any,
    targets: Any,
    *,
    test_size: float = 0.25,
    folds: int = 5,
    lambdas: Sequence[float] = DEFAULT_LAMBDAS,
    seed: int = 0,
    layer: str | None = None,
    target: str | None = None,
) -> RidgeResult:
    """Held-out R^2 of a ridge probe for continuous ``targets`` ([N] or [N, T]).

    Random (unstratified) train/test split and k-fold CV from ``seed``; every lambda of a fold
    is solved from one eigendecomposition (closed form, float64); standardization uses each
    fold's training statistics. The lambda with the best pooled CV R^2 wins (ties: larger).

    Args:
      features: ``[N, D]`` features.
      targets: ``[N]`` or ``[N, T]`` continuous targets.
      test_size: fraction held out for the reported R^2.
      folds: CV folds on the train split.
      lambdas: the L2 grid.
      seed: the split's and the folds' seed.
      layer, target: names recorded in the result (for reports).

    Returns:
      A :class:`RidgeResult`.

    Example:
      >>> import numpy as np
      >>> from lucidax.probes import fit_ridge
      >>> x = np.random.default_rng(0).normal(size=(200, 6))
      >>> y = np.stack([x[:, 0], x[:, 1] + x[:, 2]], axis=1)
      >>> result = fit_ridge(x, y)
      >>> result.n_targets, bool(result.r2 > 0.99)
      (2, True)
    """
    y_all = np.asarray(targets, dtype=np.float64)
    if y_all.ndim not in (1, 2):
        raise ValueError(f"targets must be [N] or [N, T]; got shape {y_all.shape}")
    squeeze = y_all.ndim == 1
    y_all = y_all[:, None] if squeeze else y_all
    if not np.all(np.isfinite(y_all)):
        raise ValueError("targets contain NaN or infinite values")
    x_all = _check_features(features, len(y_all))
    folds = _check_folds(folds)
    lams = np.asarray(_check_lambdas(lambdas))
    if not 0.0 < float(test_size) < 1.0:
        raise ValueError(f"test_size must be in (0, 1); got {test_size}")
    n_all = len(y_all)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n_all)
    n_test = max(1, int(round(test_size * n_all)))
    test_idx, train_idx = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    if len(train_idx) < 2 * folds:
        raise ValueError(
            f"too few samples for {folds}-fold CV: {len(train_idx)} in the train split "
            f"(need at least {2 * folds})"
        )
    x_tr = np.asarray(x_all[train_idx], dtype=np.float64)
    y_tr = y_all[train_idx]
    x_te = np.asarray(x_all[test_idx], dtype=np.float64)
    y_te = y_all[test_idx]
    n, d = x_tr.shape
    fold_id = np.random.default_rng(seed + 1).permutation(n) % folds

    sse = np.zeros(len(lams))
    sst = 0.0
    for f in range(folds):
        tr, va = fold_id != f, fold_id == f
        mu, sd = _moments(x_tr[tr])
        ym = y_tr[tr].mean(axis=0)
        ws = _ridge_path((x_tr[tr] - mu) / sd, y_tr[tr] - ym, lams)  # [L, d, T]
        pred = np.einsum("id,ldt->lit", (x_tr[va] - mu) / sd, ws) + ym
        sse += ((pred - y_tr[va][None]) ** 2).sum(axis=(1, 2))
        sst += float(((y_tr[va] - ym) ** 2).sum())
    cv_scores = 1.0 - sse / max(sst, 1e-300)
    best = max(range(len(lams)), key=lambda i: (cv_scores[i], lams[i]))
    lam = float(lams[best])

    mu, sd = _moments(x_tr)
    ym = y_tr.mean(axis=0)
    w_std = _ridge_path((x_tr - mu) / sd, y_tr - ym, np.asarray([lam]))[0]
    weights = w_std / sd[:, None]
    bias = ym - (mu / sd) @ w_std
    pred = x_te @ weights + bias
    ss_res = ((pred - y_te) ** 2).sum(axis=0)
    ss_tot = ((y_te - ym) ** 2).sum(axis=0)
    r2 = float(np.mean(1.0 - ss_res / np.maximum(ss_tot, 1e-300)))
    return RidgeResult(
        r2=r2,
        mse=float(np.mean((pred - y_te) ** 2)),
        lambda_=lam,
        lambdas=tuple(float(v) for v in lams),
        cv_scores=tuple(float(s) for s in cv_scores),
        n_train=n,
        n_test=len(test_idx),
        n_features=d,
        n_targets=y_all.shape[1],
        weights=weights[:, 0] if squeeze else weights,
        bias=bias[0] if squeeze else bias,
        folds=folds,
        seed=seed,
        test_size=float(test_size),
        layer=layer,
        target=target,
    )
