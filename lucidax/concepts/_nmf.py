"""Streaming non-negative matrix factorization ``A ~ U W`` (private).

Each outer iteration is one pass over the row chunks of ``A``. With ``W`` fixed, the codes of
each chunk are updated by accelerated HALS (Gillis & Glineur 2012): the costly product
``A_b W^T`` is computed once and reused for ``inner`` cheap sweeps over the columns of
``U_b``; the chunk then adds ``U_b^T A_b`` and ``U_b^T U_b`` to the sufficient statistics.
After the pass, ``W`` gets ``w_inner`` HALS sweeps from those statistics alone. The codes of
all rows live in a host float32 array ``[n, K]``. Because the rows of ``U`` are independent
given ``W`` and the ``W`` update only uses sums over rows, the result does not depend on the
chunking (up to float summation order). The relative error comes from the statistics,
``||A||^2 - 2 tr(W^T U^T A) + tr(U^T U W W^T)``, without another pass.

With several devices (``devices``; default all local ones) the fit is data parallel: each
chunk (its rows padded to a multiple of the device count, the padding masked out) and its
codes are row-sharded over a 1-D mesh, ``W`` and the statistics replicated; the same jitted
chunk step then runs SPMD, each device doing the HALS sweeps of its own rows, and XLA
all-reduces the sums over rows ``U_b^T A_b`` and ``U_b^T U_b``. The ``W`` update (``K x C``)
is replicated. The nndsvda init (a subsample of at most 16,384 rows) runs on one device.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._files import check_int
from ..models import suggest
from ._factorization import Factorization, hals_start, hals_sweeps, key_config, make_key
from ._rows import as_rows, check_k, row_devices

__all__ = ["nmf"]

INITS = ("nndsvda", "random")
_INIT_ROWS = 16384  # nndsvda is computed on a random subsample of this many rows
_DEVICE_CACHE_BYTES = 2 << 30  # keep the chunks as device arrays when A fits in this

TRACES = {"chunk": 0, "w": 0}  # trace counters (tests check that a second call reuses)


def _chunk_step(a, u, mask, W, uta, utu, fresh, sweeps):
    """One chunk: HALS on its codes with ``W`` fixed, add its statistics."""
    TRACES["chunk"] += 1
    awt = a @ W.T
    wwt = W @ W.T
    u = jnp.where(fresh, hals_start(awt, wwt), u)
    u = hals_sweeps(u, awt, wwt, sweeps) * mask[:, None]
    return u, uta + u.T @ a, utu + u.T @ u


_chunk_jit = jax.jit(_chunk_step, donate_argnums=(1, 4, 5))


@functools.partial(jax.jit, static_argnums=(3,))
def _w_step(W, uta, utu, sweeps):
    """``sweeps`` HALS sweeps on ``W`` from ``U^T A``, ``U^T U``."""
    TRACES["w"] += 1
    k = W.shape[0]
    diag = jnp.maximum(jnp.diag(utu), 1e-12)

    def row(j, W):
        r = W[j] + (uta[j] - utu[j] @ W) / diag[j]
        r = jnp.maximum(r, 0.0)
        # a zero row would leave its code column undetermined: keep a tiny floor
        r = jnp.where(jnp.sum(r) > 0, r, 1e-12)
        return W.at[j].set(r)

    W = jax.lax.fori_loop(0, sweeps, lambda _, W: jax.lax.fori_loop(0, k, row, W), W)
    return W, W @ W.T


def _error(W, wwt, uta, utu, sq_norm: float) -> float:
    """Relative error from the statistics, combined in float64 on the host (the three terms
    nearly cancel when the fit is good; elementwise only, no host BLAS call)."""
    W, wwt, uta, utu = (np.asarray(x, np.float64) for x in (W, wwt, uta, utu))
    sq = sq_norm - 2.0 * np.sum(W * uta) + np.sum(utu * wwt)
    return float(np.sqrt(max(sq, 0.0) / sq_norm))


def _orth(y):
    """Orthonormal basis of the columns of ``y [m, l]`` via the eigendecomposition of the
    small Gram matrix (much cheaper than a Householder QR of a tall matrix on CPU)."""
    evals, evecs = jnp.linalg.eigh(y.T @ y)
    return y @ (evecs / jnp.sqrt(jnp.maximum(evals, 1e-12 * evals[-1] + 1e-30)))


@functools.partial(jax.jit, static_argnums=(2, 3))
def _randomized_svd(x, key, k, power):
    """Top-``k`` singular triplets of ``x [m, C]`` (Halko et al. 2011; 10 extra columns,
    ``power`` power iterations, each re-orthonormalized), float32."""
    l = min(k + 10, *x.shape)
    q = _orth(x @ jax.random.normal(key, (x.shape[1], l), x.dtype))
    for _ in range(power):
        q = _orth(x @ _orth(x.T @ q))
    b = q.T @ x  # [l, C]: its SVD from the eigendecomposition of b b^T
    evals, ub = jnp.linalg.eigh(b @ b.T)
    evals, ub = evals[::-1][:k], ub[:, ::-1][:, :k]
    s = jnp.sqrt(jnp.maximum(evals, 0.0))
    vt = (ub.T @ b) / jnp.maximum(s, 1e-12)[:, None]
    return q @ ub, s, vt


def _nndsvda(sample: np.ndarray, k: int, mean_value: float, key: jax.Array) -> np.ndarray:
    """NNDSVD (Boutsidis & Gallopoulos 2008) of ``sample`` for ``W [k, C]`` from a randomized
    SVD, zeros filled with the mean of ``A`` (the "a" variant, as scikit-learn's
    ``init="nndsvda"``)."""
    Uleft, s, V = (np.asarray(x, np.float64)
                   for x in _randomized_svd(jnp.asarray(sample), key, k, 3))
    up, un = np.maximum(Uleft, 0), np.maximum(-Uleft, 0)  # [m, k]
    vp, vn = np.maximum(V, 0), np.maximum(-V, 0)  # [k, C]
    nup, nun = np.sqrt((up**2).sum(0)), np.sqrt((un**2).sum(0))
    nvp, nvn = np.sqrt((vp**2).sum(1)), np.sqrt((vn**2).sum(1))
    pos = nup * nvp >= nun * nvn
    sigma = np.where(pos, nup * nvp, nun * nvn)
    vv = np.where(pos[:, None], vp / np.maximum(nvp, 1e-12)[:, None],
                  vn / np.maximum(nvn, 1e-12)[:, None])
    W = np.sqrt(s * sigma)[:, None] * vv
    W[0] = np.sqrt(s[0]) * np.abs(V[0])  # the leading pair is (up to sign) non-negative
    W[W < 1e-12] = mean_value
    return W.astype(np.float32)


def nmf(
    rows: Any,
    k: int,
    *,
    key: Any = 0,
    iterations: int = 200,
    tol: float = 1e-4,
    init: str = "nndsvda",
    inner: int = 4,
    w_inner: int = 8,
    encode_iterations: int = 100,
    batch_rows: int = 65536,
    target: float | None = None,
    devices: Any = None,
    progress: bool = True,
) -> Factorization:
    """Non-negative matrix factorization ``A ~ U W`` (``U, W >= 0``), streamed over chunks.

    Args:
      rows: non-negative activations ``[n, C]`` or ``[N, h, w, C]`` (np.ndarray, np.memmap
        -- read chunk by chunk --, jax array). Use a post-ReLU layer.
      k: number of concepts (``1 <= k <= C``).
      key: int seed or jax key (the random init and the nndsvda subsample).
      iterations: most outer iterations (passes over the rows).
      tol: stop when the relative error improves by less than ``tol`` relative to itself in
        one outer iteration: ``(e[t-1] - e[t]) / e[t-1] < tol``.
      init: ``"nndsvda"`` (NNDSVD from a randomized SVD -- 3 power iterations -- of a random
        subsample of at most 16,384 rows, zeros filled with the mean of ``A``, as
        scikit-learn's) or ``"random"`` (``|N(0,1)| *
        sqrt(mean(A) / k)``). The codes start at ``relu(A W^+)`` in the first pass.
      inner: HALS sweeps of each chunk's codes per outer iteration (reusing ``A_b W^T``).
      w_inner: HALS sweeps of ``W`` per outer iteration (from the statistics; cheap).
      encode_iterations: HALS sweeps of ``Factorization.encode``.
      batch_rows: rows per chunk (one compiled program for every chunk).
      target: also stop as soon as the relative error is <= ``target``.
      devices: the devices to shard the rows over (None: all local devices;
        ``[jax.devices()[0]]`` forces one). With several, each chunk is padded to a multiple
        of their number and row-sharded, ``W`` and the statistics replicated (see the
        module docstring); the result equals the one-device fit up to float summation order.
      progress: show a tqdm progress bar over the outer iterations.

    Returns:
      a :class:`Factorization` (``method="nmf"``); ``extra["U"]`` holds the training codes
      ``[n, K]``; ``config["devices"]`` the number of devices used.

    Raises:
      ValueError: negative or all-zero ``rows``, ``k`` out of ``1..C``, an unknown ``init``,
        or a count that is not a positive integer.

    Example:
      >>> import numpy as np
      >>> from lucidax.concepts import nmf
      >>> rows = np.random.default_rng(0).random((256, 16), dtype=np.float32)
      >>> fact = nmf(rows, 4, iterations=50, progress=False)
      >>> fact.W.shape, fact.extra["U"].shape, bool((fact.W >= 0).all())
      ((4, 16), (256, 4), True)
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    r = as_rows(rows, nonnegative=True, method="nmf")
    check_k(k, r, method="nmf", at_most_c=True)
    check_int(iterations, "iterations")
    check_int(inner, "inner")
    check_int(w_inner, "w_inner")
    check_int(encode_iterations, "encode_iterations")
    check_int(batch_rows, "batch_rows")
    if init not in INITS:
        raise ValueError(suggest(init, INITS, what="init"))
    if not (isinstance(tol, (int, float)) and tol >= 0):
        raise ValueError(f"tol must be a number >= 0; got {tol!r}")
    if r.sq_norm == 0:
        raise ValueError("activations are all zero: nothing to factor")
    rng_key = make_key(key)
    k = int(k)
    place = row_devices(devices)

    if init == "nndsvda":
        m = min(r.n, _INIT_ROWS)
        seed = int(jax.random.randint(jax.random.fold_in(rng_key, 0), (), 0, 2**31 - 1))
        idx = (np.arange(r.n) if m == r.n
               else np.random.default_rng(seed).choice(r.n, m, replace=False))
        W0 = _nndsvda(r.take(np.sort(idx)), k, r.mean_value, jax.random.fold_in(rng_key, 2))
    else:
        scale = np.sqrt(r.mean_value / k)
        W0 = np.asarray(jnp.abs(jax.random.normal(jax.random.fold_in(rng_key, 1), (k, r.c)))
                        * scale, np.float32)

    size = r.chunk_size(batch_rows, place.count)
    U = np.zeros((r.n, k), np.float32)
    cache = r.n * r.c * 4 <= _DEVICE_CACHE_BYTES
    dev_chunks: list = []

    def source():
        if dev_chunks:
            yield from dev_chunks
            return
        for ch in r.chunks(batch_rows, multiple=place.count):
            item = (ch.start, ch.n, place.rows(ch.data), place.rows(ch.mask))
            if cache:
                dev_chunks.append(item)
            yield item

    W = place.replicate(W0)
    history: list[float] = []
    bar = tqdm(total=iterations, desc=f"nmf k={k}", disable=not progress)
    it = 0
    for it in range(1, iterations + 1):
        uta, utu, fresh = place.replicate((jnp.zeros((k, r.c), jnp.float32),
                                           jnp.zeros((k, k), jnp.float32), jnp.asarray(it == 1)))
        for start, n, a, mask in source():
            u = U[start:start + size]
            if u.shape[0] < size:
                u = np.concatenate([u, np.zeros((size - u.shape[0], k), np.float32)])
            u, uta, utu = _chunk_jit(a, place.rows(u), mask, W, uta, utu, fresh, inner)
            U[start:start + n] = np.asarray(u)[:n]
        W, wwt = _w_step(W, uta, utu, w_inner)
        err = _error(W, wwt, uta, utu, r.sq_norm)
        history.append(err)
        bar.update(1)
        bar.set_postfix(error=f"{err:.4f}")
        if target is not None and err <= target:
            break
        if len(history) > 1 and (history[-2] - err) / max(history[-2], 1e-30) < tol:
            break
    bar.close()
    W_np = np.asarray(W, np.float32)
    nz = np.count_nonzero(U)
    return Factorization(
        method="nmf", W=W_np, error=history[-1], l0=nz / r.n, sparsity=1.0 - nz / U.size,
        iterations=it, seconds=time.perf_counter() - t0, history=tuple(history),
        extra={"U": U, "encode_iterations": int(encode_iterations)},
        config={"k": k, "key": key_config(key), "iterations": iterations, "tol": tol,
                "init": init, "inner": inner, "w_inner": w_inner, "batch_rows": batch_rows,
                "target": target, "rows": r.n, "channels": r.c, "devices": place.count})
