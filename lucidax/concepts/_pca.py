"""Streaming PCA of activation rows (private).

One pass over the row chunks accumulates the sum and the Gram matrix of the rows shifted by
the first chunk's mean (float32 per chunk on the device, summed in float64 on the host: the
shift keeps the float32 Gram free of the cancellation a raw ``A^T A`` would suffer); the
covariance's top-``k`` eigenvectors (``numpy.linalg.eigh``) are the components.

With several devices (``devices``; default all local ones) each chunk -- padded to a multiple
of the device count, the padding masked out -- is row-sharded over a 1-D mesh and the shift
replicated: each device forms the sum and Gram matrix of its own rows and XLA all-reduces
them, so the host receives one replicated ``[C]`` and ``[C, C]`` per chunk as with one device.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._files import check_int
from ._factorization import Factorization
from ._rows import as_rows, check_k, row_devices

__all__ = ["pca"]


@jax.jit
def _moments(a, mask, shift):
    d = (a - shift) * mask[:, None]
    return d.sum(0), d.T @ d


def pca(rows: Any, k: int, *, batch_rows: int = 65536, devices: Any = None,
        progress: bool = False) -> Factorization:
    """Principal components of activation rows, in one streamed pass.

    Args:
      rows: activations ``[n, C]`` or ``[N, h, w, C]`` (a ``np.memmap`` is streamed).
      k: number of components (``1 <= k <= C``).
      batch_rows: rows per chunk (one compiled program for every chunk).
      devices: the devices to shard each chunk's rows over (None: all local devices;
        ``[jax.devices()[0]]`` forces one); ``config["devices"]`` records their number.
      progress: show a tqdm progress bar over the chunks.

    Returns:
      a :class:`Factorization` (``method="pca"``): ``W [k, C]`` the top-``k`` eigenvectors
      of the covariance (orthonormal rows; each sign fixed so that its largest-magnitude
      entry is positive), ``extra["mean"]`` ``[C]`` the row mean and
      ``extra["eigenvalues"]`` ``[k]`` the covariance eigenvalues of the components; codes
      are projections of the centred rows. ``error`` is ``||A - mean - U W||_F / ||A||_F``
      (from the eigenvalues, no second pass); ``l0 = k`` (codes are dense).

    Raises:
      ValueError: ``k`` out of ``1..C``, or ``batch_rows`` not a positive integer.

    Example:
      >>> import numpy as np
      >>> from lucidax.concepts import pca
      >>> rows = np.random.default_rng(0).random((256, 16), dtype=np.float32)
      >>> fact = pca(rows, 3)
      >>> fact.W.shape, fact.extra["mean"].shape, fact.extra["eigenvalues"].shape
      ((3, 16), (16,), (3,))
      >>> bool(np.allclose(fact.W @ fact.W.T, np.eye(3), atol=1e-5))  # orthonormal rows
      True
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    r = as_rows(rows, method="pca")
    check_k(k, r, method="pca", at_most_c=True)
    check_int(batch_rows, "batch_rows")
    place = row_devices(devices)
    shift = None
    total = np.zeros(r.c)
    gram = np.zeros((r.c, r.c))
    for ch in tqdm(r.chunks(batch_rows, multiple=place.count),
                   total=r.n_chunks(batch_rows, place.count), desc="pca", disable=not progress):
        if shift is None:
            shift = ch.data[:ch.n].astype(np.float64).mean(0)
            shift32 = place.replicate(jnp.asarray(shift, jnp.float32))
        s, g = _moments(place.rows(ch.data), place.rows(ch.mask), shift32)
        total += np.asarray(s, np.float64)
        gram += np.asarray(g, np.float64)
    shift = np.asarray(shift32, np.float64)
    dm = total / r.n
    mean = shift + dm
    scatter = gram - r.n * np.outer(dm, dm)
    evals, evecs = np.linalg.eigh(scatter)
    order = np.argsort(evals)[::-1][:k]
    W = evecs[:, order].T
    big = np.argmax(np.abs(W), axis=1)
    W = W * np.sign(W[np.arange(k), big])[:, None]
    resid = max(float(np.trace(scatter) - evals[order].sum()), 0.0)
    error = float(np.sqrt(resid / r.sq_norm)) if r.sq_norm > 0 else 0.0
    return Factorization(
        method="pca", W=W.astype(np.float32), error=error, l0=float(k), sparsity=0.0,
        iterations=1, seconds=time.perf_counter() - t0, history=(error,),
        extra={"mean": mean.astype(np.float32),
               "eigenvalues": (evals[order] / max(r.n - 1, 1)).astype(np.float32)},
        config={"k": int(k), "batch_rows": batch_rows, "rows": r.n, "channels": r.c,
                "devices": place.count})
