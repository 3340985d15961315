"""Concept activation vectors: many small L2 logistic classifiers solved at once."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax.numpy as jnp
import numpy as np

from ._solver import _bucket, _moments, _solve_many, _SolverConfig

_BLOCK_BYTES = 256 << 20  # largest feature block of one CAV solve

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
      lambda_: the L2 strength (the convention of :func:`lucidax.probes.fit_logistic`).
    """

    directions: np.ndarray
    accuracy: np.ndarray
    converged: np.ndarray
    lambda_: float

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
