"""The batched L2 logistic solver shared by the linear probes and the CAVs.

``_lbfgs_batch`` solves P problems that share one data matrix at once: the L-BFGS direction
(``optax.scale_by_lbfgs``) and an Armijo line search (backtracking by safeguarded quadratic
interpolation) are ``vmap``-ed over the problems, so that each objective evaluation is one
matrix product ``X @ [W_1 ... W_P]`` and its transpose (see the design notes of
:mod:`lucidax.probes._linear`). Compiled programs: ``_solve`` (independent problems from zero,
:func:`lucidax.probes.fit_logistic`), ``_cv_program`` / ``_refit_program`` (the
cross-validation along the regularization path and the refit, :func:`lucidax.probes.fit_probe`)
and ``_solve_many`` (problems each with its own data, :func:`lucidax.probes.fit_cavs`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.special import logsumexp


def _moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column mean and std (float64); zero-variance columns get std 1."""
    mu = x.mean(axis=0, dtype=np.float64)
    sd = x.std(axis=0, dtype=np.float64)
    sd = np.where(sd > 1e-12 * np.maximum(1.0, np.abs(mu)), sd, 1.0)
    return mu, sd


def _bucket(d: int) -> int:
    """Padded feature count: few distinct compiled shapes across a layer sweep."""
    if d <= 256:
        return max(8, 1 << (d - 1).bit_length())
    return -(-d // 256) * 256

# ----------------------------------------------------------------------------------------------
# the batched solver
# ----------------------------------------------------------------------------------------------
def _objective(params, x, y, w, lam, mu, sd):
    """One problem's objective; ``x``/``y`` are shared, the rest is per problem."""
    weights, bias = params
    a = weights / sd[:, None]
    c = bias - (mu / sd) @ weights
    z = x @ a + c
    ce = logsumexp(z, axis=1) - jnp.sum(z * y, axis=1)
    return jnp.sum(w * ce) + 0.5 * lam * jnp.sum(weights * weights)


def _inf_norm(tree) -> jax.Array:
    return jnp.max(jnp.stack([jnp.max(jnp.abs(t)) for t in jax.tree.leaves(tree)]))


def _split_bf16(a: jax.Array) -> tuple[jax.Array, jax.Array]:
    hi = a.astype(jnp.bfloat16)
    return hi, (a - hi.astype(a.dtype)).astype(jnp.bfloat16)


def _rows_times(x, a: jax.Array) -> jax.Array:
    """``x @ a``. ``x`` is an array, or ``(x, x_hi, x_lo)`` with ``x ~= x_hi + x_lo`` in
    bfloat16: the product is then formed from three bfloat16 products with float32
    accumulation (``x_hi a_hi + x_hi a_lo + x_lo a_hi``, "bf16x3": relative error ~1e-5 instead
    of float32's ~1e-6), several times faster than a float32 product on CPUs with bfloat16
    matrix units (AMX)."""
    if not isinstance(x, tuple):
        return x @ a
    _, xh, xl = x
    ah, al = _split_bf16(a)
    dot = functools.partial(jnp.dot, preferred_element_type=jnp.float32)
    return dot(xh, ah) + (dot(xh, al) + dot(xl, ah))


def _full(x) -> jax.Array:
    return x[0] if isinstance(x, tuple) else x


@functools.cache
def _bf16x3_default() -> bool:
    """bf16x3 forward products when they pay off: on CPUs with AMX bfloat16 units (where XLA's
    bfloat16 products run ~5x faster than float32 ones). ``LUCIDAX_PROBE_MATMUL=float32`` or
    ``=bf16x3`` overrides."""
    choice = os.environ.get("LUCIDAX_PROBE_MATMUL", "auto").lower()
    if choice in ("float32", "bf16x3"):
        return choice == "bf16x3"
    if jax.default_backend() != "cpu":
        return False
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as f:
            return " amx_bf16" in f.read(1 << 16)
    except OSError:
        return False


def _group_value_grad(params, x, y, w, lam, mu, sd):
    """``jax.vmap(jax.value_and_grad(_objective))`` over a group of problems sharing ``x``,
    written out by hand so that the forward and backward passes are exactly one matrix
    product each (``x @ [A_1 ... A_P]`` and its transpose), ~25% faster than autodiff's
    layout on CPU. Tested against autodiff of ``_objective``.
    """
    weights, bias = params  # [P, d, K], [P, K]
    p_count, d, k = weights.shape
    a = weights / sd[:, :, None]
    c = bias - jnp.einsum("pd,pdk->pk", mu / sd, weights)
    z = _rows_times(x, jnp.transpose(a, (1, 0, 2)).reshape(d, p_count * k))
    z = z.reshape(-1, p_count, k)
    z = z + c[None]
    lse = logsumexp(z, axis=2)  # [n, P]
    ce = lse - jnp.einsum("npk,nk->np", z, y)
    value = jnp.sum(w.T * ce, axis=0) + 0.5 * lam * jnp.sum(weights * weights, axis=(1, 2))
    resid = (jnp.exp(z - lse[..., None]) - y[:, None, :]) * w.T[..., None]  # [n, P, K]
    g_a = (resid.reshape(-1, p_count * k).T @ _full(x)).reshape(p_count, k, d).transpose(0, 2, 1)
    g_b = resid.sum(axis=0)
    g_w = g_a / sd[:, :, None] - (mu / sd)[:, :, None] * g_b[:, None, :]
    return value, (g_w + lam[:, None, None] * weights, g_b)


def _lbfgs_batch(x, y, w, lam, mu, sd, params0, max_iter, tol, *, memory, max_ls):
    """Solve P problems sharing ``x`` at once (traced inside a jitted program).

    ``w`` [P, n]: sample weights summing to 1 per problem; ``lam`` [P]; ``mu``/``sd`` [P, d]:
    each problem's standardization relative to ``x``; ``params0``: (weights [P, d, K],
    bias [P, K]) to start from (warm starts).

    Every iteration takes one L-BFGS step for all unconverged problems together (``vmap``-ed
    direction and Armijo line search; one matrix product ``x @ [A_1 ... A_P]`` and one
    transposed product per objective evaluation for all P problems); converged problems
    stay put.

    Returns (weights [P, d, K], bias [P, K], n_iter [P], grad_norm [P], evaluations).
    """
    p_count, dtype = w.shape[0], _full(x).dtype
    lbfgs = optax.scale_by_lbfgs(memory_size=memory)
    direction_fn = jax.vmap(lbfgs.update)
    gnorm_fn = jax.vmap(_inf_norm)
    vdot_fn = jax.vmap(optax.tree.vdot)

    def pick(mask, a, b):
        return jax.tree.map(
            lambda u, v: jnp.where(mask.reshape((-1,) + (1,) * (u.ndim - 1)), u, v), a, b
        )

    def step(carry):
        params, f, g, state, active, iters, it, evals = carry
        direction, new_state = direction_fn(g, state, params)
        direction = jax.tree.map(jnp.negative, direction)
        slope = vdot_fn(g, direction)
        # a non-descent direction (numerical trouble) falls back to steepest descent
        bad = ~(slope < 0)
        direction = pick(bad, jax.tree.map(jnp.negative, g), direction)
        slope = jnp.where(bad, -vdot_fn(g, g), slope)

        # Armijo backtracking, tolerant to float32 rounding near the optimum
        def ls_cond(ls):
            *_, done, j = ls
            return (j < max_ls) & jnp.any(~done)

        def ls_body(ls):
            t, p_new, f_new, g_new, done, j = ls
            trial = jax.tree.map(
                lambda p, dd: p + t.reshape((-1,) + (1,) * (p.ndim - 1)) * dd, params, direction
            )
            f_t, g_t = _group_value_grad(trial, x, y, w, lam, mu, sd)
            slack = 1e-6 * (jnp.abs(f) + 1.0)
            ok = jnp.isfinite(f_t) & (f_t <= f + 1e-4 * t * slope + slack) & ~done
            p_new = pick(ok, trial, p_new)
            f_new = jnp.where(ok, f_t, f_new)
            g_new = pick(ok, g_t, g_new)
            done = done | ok
            # safeguarded quadratic interpolation of f along the direction (a big overshoot,
            # e.g. the first step of a strongly regularized problem, costs 2 evaluations
            # instead of a long run of halvings)
            curv = f_t - f - slope * t
            t_q = -slope * t * t / (2.0 * jnp.where(curv > 0, curv, 1.0))
            t_next = jnp.where(jnp.isfinite(f_t) & (curv > 0),
                               jnp.clip(t_q, 0.01 * t, 0.5 * t), 0.5 * t)
            t = jnp.where(done, t, t_next)
            return t, p_new, f_new, g_new, done, j + 1

        ls0 = (jnp.ones(p_count, dtype), params, f, g, ~active, 0)
        _, p_new, f_new, g_new, accepted, j = jax.lax.while_loop(ls_cond, ls_body, ls0)
        moved = active & accepted
        params = pick(moved, p_new, params)
        f = jnp.where(moved, f_new, f)
        g = pick(moved, g_new, g)
        state = pick(moved, new_state, state)
        iters = iters + moved.astype(jnp.int32)
        active = moved & (gnorm_fn(g) > tol)  # a failed line search stops that problem
        return params, f, g, state, active, iters, it + 1, evals + j

    def cond(carry):
        return (carry[6] < max_iter) & jnp.any(carry[4])

    params = jax.tree.map(lambda a: a.astype(dtype), params0)
    f, g = _group_value_grad(params, x, y, w, lam, mu, sd)
    carry = (params, f, g, jax.vmap(lbfgs.init)(params), gnorm_fn(g) > tol,
             jnp.zeros(p_count, jnp.int32), 0, 1)
    params, _, g, _, _, iters, _, evals = jax.lax.while_loop(cond, step, carry)
    return params[0], params[1], iters, gnorm_fn(g), evals


@functools.partial(jax.jit, static_argnames=("memory", "max_ls"))
def _solve(x, y, w, lam, mu, sd, b0, max_iter, tol, *, memory, max_ls):
    """Independent problems from zero weights (``fit_logistic``)."""
    params0 = (jnp.zeros((w.shape[0], x.shape[1], y.shape[1]), x.dtype), b0)
    return _lbfgs_batch(x, y, w, lam, mu, sd, params0, max_iter, tol, memory=memory,
                        max_ls=max_ls)


@jax.jit
def _standardize(x, n):
    """Column mean/std of the first ``n`` rows of ``x`` (zero-padded rows and columns;
    zero-variance columns get std 1) and ``x`` standardized with them (padding stays 0).
    Two-pass float32 on the device."""
    rows = (jnp.arange(x.shape[0]) < n).astype(x.dtype)[:, None]
    mu = jnp.sum(x * rows, axis=0) / n
    var = jnp.sum(jnp.square((x - mu) * rows), axis=0) / n
    sd = jnp.where(var > 1e-24 * jnp.maximum(1.0, mu * mu), jnp.sqrt(var), 1.0)
    return (x - mu) / sd * rows, mu, sd


@functools.partial(jax.jit, static_argnames=("memory", "max_ls", "bf16x3"))
def _cv_program(x, y, codes, w, val, lams, b0, max_iter, tol, by_loss, *, memory, max_ls,
                bf16x3):
    """The cross-validation in one compiled program.

    ``x`` [n, d]: standardized training features (zero-padded); ``w`` [F, n]: each fold's
    training weights (summing to 1); ``val`` [F, n]: 0/1 validation masks; ``lams`` [L]
    **descending**. For each lambda, strong to weak (``lax.scan``), the F fold problems are
    solved together, warm-started from the previous lambda's solutions (the regularization
    path, as scikit-learn's LogisticRegressionCV does); each fold is standardized with its
    own training statistics (relative to ``x``). Then pooled validation scores, the choice of
    lambda and the refit's warm start (the chosen lambda's fold solutions, mapped to the
    global standardization, averaged). ``by_loss``: choose lambda by pooled log-loss (True)
    or accuracy (False). ``bf16x3``: the solver's forward products in bf16x3 (see
    :func:`_rows_times`).
    """
    folds, d, k = w.shape[0], x.shape[1], y.shape[1]
    xs = (x, *_split_bf16(x)) if bf16x3 else x
    mu = w @ x  # fold means (w rows sum to 1)
    var = jnp.maximum(w @ jnp.square(x) - jnp.square(mu), 0.0)
    sd = jnp.where(var > 1e-12, jnp.sqrt(var), 1.0)

    def scores(wt_p, b_p, mu_p, sd_p, val_p):
        a = wt_p / sd_p[:, None]
        z = x @ a + (b_p - (mu_p / sd_p) @ wt_p)
        ce = logsumexp(z, axis=1) - jnp.take_along_axis(z, codes[:, None], axis=1)[:, 0]
        hit = (jnp.argmax(z, axis=1) == codes).astype(jnp.float32)
        return jnp.sum(val_p * hit), jnp.sum(val_p * ce)

    def per_lambda(params, lam):
        lam_p = jnp.full((folds,), lam, x.dtype)
        wt, b, iters, gn, evals = _lbfgs_batch(xs, y, w, lam_p, mu, sd, params, max_iter, tol,
                                               memory=memory, max_ls=max_ls)
        correct, loss = jax.vmap(scores)(wt, b, mu, sd, val)
        return (wt, b), (wt, b, correct.sum(), loss.sum(), iters, gn, evals)

    params0 = (jnp.zeros((folds, d, k), x.dtype), b0)
    _, (wts, bs, correct, loss, iters, gn, evals) = jax.lax.scan(per_lambda, params0, lams)
    # ties go to the larger lambda: the first in this descending order
    best = jnp.where(by_loss, jnp.argmin(loss), jnp.argmax(correct))
    a_f = wts[best] / sd[:, :, None]
    c_f = bs[best] - jnp.einsum("fd,fdk->fk", mu / sd, wts[best])
    init = (a_f.mean(axis=0)[None], c_f.mean(axis=0)[None])
    return correct, loss, best, lams[best], init, iters, gn, evals


@functools.partial(jax.jit, static_argnames=("memory", "max_ls", "bf16x3"))
def _refit_program(x, y, w_all, lam, init, max_iter, tol, *, memory, max_ls, bf16x3):
    """The refit on all of ``w_all`` (one problem, warm-started from ``init``) and its
    predictions on ``x``."""
    d = x.shape[1]
    xs = (x, *_split_bf16(x)) if bf16x3 else x
    rw, rb, r_iters, r_gn, r_evals = _lbfgs_batch(
        xs, y, w_all[None], lam[None], jnp.zeros((1, d), x.dtype), jnp.ones((1, d), x.dtype),
        init, max_iter, tol, memory=memory, max_ls=max_ls)
    pred = jnp.argmax(x @ rw[0] + rb[0], axis=1)
    return rw[0], rb[0], r_iters[0], r_gn[0], r_evals, pred


_REFITS: dict[Any, Any] = {}  # compiled _refit_program executables by (shapes, static args)


def _compile_refit(args: tuple, statics: dict[str, Any]):
    """The compiled refit for these argument shapes (cached). Meant to run in a thread while
    the cross-validation program compiles and runs: XLA compiles without holding the GIL."""
    key = (tuple((tuple(a.shape), str(a.dtype)) for a in jax.tree.leaves(args)),
           tuple(sorted(statics.items())))
    exe = _REFITS.get(key)
    if exe is None:
        abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), args)
        exe = _refit_program.lower(*abstract, **statics).compile()
        if len(_REFITS) > 32:
            _REFITS.clear()
        _REFITS[key] = exe
    return exe

@dataclasses.dataclass(frozen=True)
class _SolverConfig:
    max_iter: int = 500
    tol: float = 1e-4
    memory: int = 10
    max_ls: int = 30

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
