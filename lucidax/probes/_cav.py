"""Concept activation vectors: many small L2 logistic classifiers solved at once, or their
closed-form mean-difference counterpart (FastCAV)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._solver import _bucket, _moments, _solve_many, _SolverConfig

_BLOCK_BYTES = 256 << 20  # largest feature block of one CAV solve
CAV_METHODS = ("logistic", "mean")  # how fit_cavs finds a CAV (the --cav choices)

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
      converged: ``[P]`` whether each fit reached the solver tolerance (always True for
        ``method="mean"``: a closed form).
      lambda_: the L2 strength (the convention of :func:`lucidax.probes.fit_logistic`); NaN
        for ``method="mean"`` (no regularization).
      method: ``"logistic"`` or ``"mean"`` (:func:`fit_cavs`).

    Example:
      >>> import numpy as np
      >>> from lucidax.probes import fit_cavs
      >>> rng = np.random.default_rng(0)
      >>> concept = rng.normal(size=(2, 30, 16)) + 3.0 * np.eye(16)[0]   # 2 problems
      >>> random = rng.normal(size=(2, 30, 16))
      >>> cavs = fit_cavs(concept, random)
      >>> cavs.directions.shape, bool(cavs.directions[0, 0] > 0.5)
      ((2, 16), True)
    """

    directions: np.ndarray
    accuracy: np.ndarray
    converged: np.ndarray
    lambda_: float
    method: str = "logistic"


def _check_method(method: Any) -> str:
    if method not in CAV_METHODS:
        raise ValueError(f"unknown CAV method {method!r}; valid: {', '.join(CAV_METHODS)}")
    return str(method)

def _as_problems(sets: Any, what: str) -> list[np.ndarray]:
    if isinstance(sets, np.ndarray) and sets.ndim == 3:
        return list(sets)
    out = [np.asarray(s) for s in sets]
    for s in out:
        if s.ndim != 2:
            raise ValueError(f"every {what} set must be [n, D] features; got shape {s.shape}")
    return out


@jax.jit
def _mean_many(x, w_pos, test, label):
    """FastCAV for a block of problems, each with its own data: ``x`` ``[B, n, D]`` features
    centred by the problem's training mean ``a_bar``, ``w_pos`` ``[B, n]`` the averaging
    weights of the training positives, ``test``/``label`` ``[B, n]`` the held-out rows and
    their labels. Returns the unnormalized CAVs ``[B, D]`` (``mean_pos - a_bar``) and the
    held-out accuracy ``[B]`` of ``sign(v . (a - a_bar))``."""
    v = jnp.einsum("bn,bnd->bd", w_pos, x)
    z = jnp.einsum("bnd,bd->bn", x, v)
    correct = ((z > 0) == label) & test
    acc = jnp.sum(correct, axis=1) / jnp.maximum(jnp.sum(test, axis=1), 1)
    return v, acc


def _blocks(p_count: int, n_pad: int, d_pad: int):
    """Problem indices of each block of at most ``_BLOCK_BYTES`` of features; the last block
    is padded (by repeating its last problem) so that every block has one compiled shape."""
    per_block = max(1, min(p_count, _BLOCK_BYTES // (n_pad * d_pad * 4)))
    for s in range(0, p_count, per_block):
        k = min(p_count, s + per_block) - s
        take = np.arange(s, s + k)
        if k < per_block:
            take = np.r_[take, np.full(per_block - k, take[-1])]
        yield take, k


def fit_cavs(
    positives: Any,
    negatives: Any,
    *,
    method: str = "logistic",
    lam: float = 0.01,
    test_size: float = 1 / 3,
    seed: int = 0,
    max_iter: int = 300,
    tol: float = 1e-4,
    width: int | None = None,
) -> CAVs:
    """Fit ``P`` CAVs at once: problem ``i`` separates ``positives[i]`` ``[n_i, D]`` (label 1)
    from ``negatives[i]`` ``[m_i, D]`` (label 0).

    ``method="logistic"`` (default): each problem is an L2 logistic regression (2-class
    softmax, the objective of :func:`lucidax.probes.fit_logistic`; default ``lam=0.01`` is
    scikit-learn's ``C=1`` at 100 examples) on features standardized with its own training
    statistics; the CAV is the unit normal of its decision boundary mapped back to the
    original feature space.

    ``method="mean"``: FastCAV (Schmalwasser, Penzel, Denzler and Niebling, *FastCAV:
    Efficient Computation of Concept Activation Vectors for Explaining Deep Neural
    Networks*, ICML 2025, arXiv:2505.17883; a drop-in for Captum's TCAV is proposed in
    pytorch/captum#1619): activations are centred by the global mean ``a_bar`` of the
    (training) concept and random examples, and the CAV is the mean of the centred concept
    activations, normalized: ``v = mean_pos - a_bar``, ``v / ||v||``, classifying
    ``sign(v . (a - a_bar))``. Since ``mean_pos - a_bar = m / (n + m) (mean_pos -
    mean_neg)`` (``n`` concept and ``m`` random examples), the unit CAV is the direction of
    the difference of the class means, in the original feature space (no standardization,
    no ``lam``). It is the max-margin / logistic normal when both classes are isotropic with
    the same spread (the paper's equivalence assumptions) and costs one pass over the
    features. ``lam``, ``max_iter`` and ``tol`` are unused.

    Either way a stratified ``test_size`` share of each problem is held out to report its
    accuracy (as in the TCAV paper; the CAV comes from the training share), the directions
    are unit vectors pointing towards the positives (so :func:`tcav_scores` and the
    statistics are the same for both), and all problems run in one compiled program
    (``vmap``-ed over problems, each with its own data), in blocks of at most 256 MB of
    features. ``width`` pads the feature dimension (so that layers of different widths share
    one compiled program).

    Args:
      positives: ``[P, n, D]`` (or a list of ``P`` arrays ``[n_i, D]``) concept features.
      negatives: ``[P, m, D]`` (or a list of ``[m_i, D]``) random features.
      method: ``"logistic"`` or ``"mean"`` (above).
      lam, max_iter, tol: the logistic fits' L2 strength and solver limits.
      test_size: held-out share of each problem (0: none, accuracy NaN).
      seed: the held-out split's seed.
      width: pad ``D`` to this width (None: ``D``).

    Returns:
      A :class:`CAVs` with ``P`` unit directions.

    Example:
      >>> import numpy as np
      >>> from lucidax.probes import fit_cavs
      >>> rng = np.random.default_rng(0)
      >>> concept = rng.normal(size=(2, 30, 16)) + 3.0 * np.eye(16)[0]   # 2 problems
      >>> random = rng.normal(size=(2, 30, 16))
      >>> fast = fit_cavs(concept, random, method="mean")
      >>> fast.method, fast.directions.shape, bool(np.all(fast.accuracy > 0.8))
      ('mean', (2, 16), True)
    """
    method = _check_method(method)
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
    if method == "logistic" and not (math.isfinite(lam) and lam > 0):
        raise ValueError(f"lam must be a positive number; got {lam!r}")
    cfg = _SolverConfig(max_iter=int(max_iter), tol=float(tol))
    p_count = len(pos)
    n_max = max(len(a) + len(b) for a, b in zip(pos, neg, strict=True))
    n_pad = -(-n_max // 8) * 8
    d_pad = max(_bucket(d), width or 0)
    rng = np.random.default_rng(seed)
    mean = method == "mean"

    x = np.zeros((p_count, n_pad, d_pad), np.float32)
    y = np.zeros((p_count, n_pad, 2), np.float32)
    w = np.zeros((p_count, n_pad), np.float32)
    test = np.zeros((p_count, n_pad), bool)
    b0 = np.zeros((p_count, 2), np.float32)
    sds = np.ones((p_count, d))
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
        n = len(lab)
        y[i, np.arange(n), lab] = 1.0
        test[i, :n] = hold
        if mean:  # centred by the global training mean a_bar; weights average the positives
            x[i, :n, :d] = feats - feats[~hold].mean(axis=0)
            sel = (lab == 1) & ~hold
            w[i, :n] = sel / sel.sum()
            continue
        mu, sd = _moments(feats[~hold])
        sds[i] = sd
        x[i, :n, :d] = (feats - mu) / sd
        w[i, :n] = (~hold) / max(1, int((~hold).sum()))
        prior = np.bincount(lab[~hold], minlength=2) + 0.5
        b0[i] = np.log(prior / prior.sum()) - np.log(prior / prior.sum()).mean()

    if mean:
        vs, accs = [], []
        for take, k in _blocks(p_count, n_pad, d_pad):
            v, acc = _mean_many(jnp.asarray(x[take]), jnp.asarray(w[take]),
                                jnp.asarray(test[take]), jnp.asarray(y[take, :, 1] > 0))
            vs.append(np.asarray(v)[:k])
            accs.append(np.asarray(acc)[:k])
        dirs = np.concatenate(vs)[:, :d].astype(np.float64)
        acc = np.concatenate(accs).astype(np.float64) if test_size > 0 \
            else np.full(p_count, np.nan)
        converged = np.ones(p_count, bool)
        lam_out = float("nan")
    else:
        ws, bs, gs = [], [], []
        for take, k in _blocks(p_count, n_pad, d_pad):
            out = _solve_many(
                jnp.asarray(x[take]), jnp.asarray(y[take]), jnp.asarray(w[take]),
                jnp.asarray(lam, jnp.float32), jnp.asarray(b0[take]),
                jnp.asarray(cfg.max_iter, jnp.int32), jnp.asarray(cfg.tol, jnp.float32),
                memory=cfg.memory, max_ls=cfg.max_ls)
            wt, bb, gn = (np.asarray(o)[:k] for o in out)
            ws.append(wt)
            bs.append(bb)
            gs.append(gn)
        wt, bb, gn = np.concatenate(ws), np.concatenate(bs), np.concatenate(gs)
        normal_std = (wt[:, :d, 1] - wt[:, :d, 0]).astype(np.float64)  # standardized space
        dirs = normal_std / sds  # the same boundary in the original feature space
        if test_size > 0:
            z = np.einsum("pnd,pd->pn", x[:, :, :d].astype(np.float64), normal_std) \
                + (bb[:, 1] - bb[:, 0])[:, None]
            correct = ((z > 0) == (y[:, :, 1] > 0)) & test
            acc = correct.sum(axis=1) / np.maximum(test.sum(axis=1), 1)
        else:
            acc = np.full(p_count, np.nan)
        converged = gn <= cfg.tol
        lam_out = float(lam)
    norms = np.linalg.norm(dirs, axis=1, keepdims=True)
    dirs = np.where(norms > 0, dirs / np.maximum(norms, 1e-300), 0.0)
    return CAVs(directions=dirs, accuracy=acc.astype(np.float64), converged=converged,
                lambda_=lam_out, method=method)


def tcav_scores(gradients: Any, cavs: Any) -> np.ndarray:
    """TCAV scores: for every CAV (``[P, D]`` or a :class:`CAVs`), the fraction of inputs
    whose directional derivative ``gradients[i] . v`` is positive (``gradients`` ``[N, D]``).

    Args:
      gradients: ``[N, D]`` gradients of the class logit in the CAVs' feature space
        (:func:`layer_gradients`).
      cavs: ``[P, D]`` directions or a :class:`CAVs`.

    Returns:
      ``[P]`` scores in [0, 1].

    Example:
      >>> import numpy as np
      >>> from lucidax.probes import tcav_scores
      >>> gradients = np.array([[1.0, 0.0], [0.5, -1.0], [-1.0, 0.2]])
      >>> tcav_scores(gradients, np.array([[1.0, 0.0], [0.0, 1.0]])).round(3).tolist()
      [0.667, 0.333]
    """
    v = cavs.directions if isinstance(cavs, CAVs) else np.asarray(cavs, np.float64)
    v = np.atleast_2d(v)
    g = np.asarray(gradients, np.float64)
    if g.ndim != 2 or g.shape[1] != v.shape[1]:
        raise ValueError(f"gradients must be [N, {v.shape[1]}]; got shape {g.shape}")
    return np.mean(g @ v.T > 0, axis=0)
