"""The factorization result and the helpers shared by NMF, the TopK SAE and PCA (private).

A factorization writes activations ``A [n, C]`` as codes ``U [n, K]`` times concept
directions ``W [K, C]``. :class:`Factorization` holds ``W`` (plus the method's other arrays),
maps new activations to codes (:meth:`Factorization.encode`, pure and jittable) and back
(:meth:`Factorization.decode`), and saves to one ``.npz``. :func:`codes` encodes every row of
a (possibly memory-mapped) matrix in fixed-size chunks; :func:`factorize` picks the method.

Every fit and :func:`codes` take ``devices`` (None: all local devices; ``[jax.devices()[0]]``
forces one). With several devices the work is data parallel over the rows: each chunk is
padded to a multiple of the device count (the padding rows masked out) and placed
row-sharded, ``NamedSharding(Mesh(devices, ("rows",)), P("rows"))``, while ``W``, the SAE
parameters and the statistics are replicated; the same jitted steps run SPMD (one compiled
program per shapes and mesh) and XLA inserts the all-reduces for the sums over rows. The
result equals the one-device fit up to float summation order; ``config["devices"]`` records
the number used. With one device there is no mesh.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..models import suggest
from ._rows import Rows, as_rows, row_devices

__all__ = ["METHODS", "Factorization", "codes", "factorize", "key_config", "make_key"]

METHODS = ("nmf", "sae", "pca")


def make_key(key: Any) -> jax.Array:
    """A PRNG key from an int seed or a key array."""
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return jax.random.PRNGKey(int(key))
    if hasattr(key, "dtype") and (jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
                                  or np.shape(key) == (2,)):
        return jnp.asarray(key)
    raise ValueError(f"key must be an int seed or a jax.random key; got {key!r}")


def key_config(key: Any) -> Any:
    """JSON-safe form of ``key`` (the int, or the key data as a list)."""
    if isinstance(key, (int, np.integer)):
        return int(key)
    k = jnp.asarray(key)
    if jnp.issubdtype(k.dtype, jax.dtypes.prng_key):
        k = jax.random.key_data(k)
    return np.asarray(k).tolist()


def nmf_encode(W: jax.Array, acts: jax.Array, iterations: int) -> jax.Array:
    """Non-negative least squares codes of ``acts [..., C]`` for fixed ``W [K, C]``:
    start from ``relu(A W^+)`` (``W^+ = W^T (W W^T)^-1``), then ``iterations`` HALS sweeps."""
    shape = acts.shape
    a = acts.reshape(-1, shape[-1]).astype(jnp.float32)
    W = W.astype(jnp.float32)
    awt = a @ W.T
    wwt = W @ W.T
    u = hals_start(awt, wwt)
    u = hals_sweeps(u, awt, wwt, iterations)
    return u.reshape(*shape[:-1], W.shape[0])


def hals_start(awt: jax.Array, wwt: jax.Array) -> jax.Array:
    """``relu(A W^+)`` from ``A W^T`` and ``W W^T`` (a small ridge keeps it defined)."""
    k = wwt.shape[0]
    ridge = 1e-6 * jnp.trace(wwt) / k + 1e-12
    return jax.nn.relu(awt @ jnp.linalg.inv(wwt + ridge * jnp.eye(k, dtype=wwt.dtype)))


def hals_sweeps(u: jax.Array, awt: jax.Array, wwt: jax.Array, sweeps: int | jax.Array
                ) -> jax.Array:
    """``sweeps`` HALS sweeps over the columns of ``u`` for ``min ||A - u W||^2, u >= 0``,
    given ``A W^T`` and ``W W^T`` (the rows of ``u`` are independent). Works on the
    transposes so that each column update is a contiguous row; the column loop is unrolled
    (``K`` is static)."""
    k = wwt.shape[0]
    diag = jnp.maximum(jnp.diag(wwt), 1e-12)
    scaled = wwt / diag[:, None]  # row j: W W^T[j] / ||w_j||^2
    target = (awt / diag).T  # [K, B]

    def sweep(_, ut):
        for j in range(k):
            ut = ut.at[j].set(jnp.maximum(ut[j] + target[j] - scaled[j] @ ut, 0.0))
        return ut

    return jax.lax.fori_loop(0, sweeps, sweep, u.T).T


def sae_encode(params: dict[str, jax.Array], acts: jax.Array, topk: int) -> jax.Array:
    """TopK SAE codes: ``TopK(ReLU((x - b_dec) W_enc + b_enc))``."""
    pre = jax.nn.relu((acts - params["b_dec"]) @ params["W_enc"] + params["b_enc"])
    if topk >= pre.shape[-1]:
        return pre
    vals, idx = jax.lax.top_k(pre, topk)
    kth = vals[..., -1:]
    del idx
    # keep the top-k values (ties at the k-th value all kept: measure-zero for real data)
    return jnp.where(pre >= kth, pre, 0.0)


@dataclasses.dataclass(frozen=True)
class Factorization:
    """``A ~ U W``: concept directions and how to get codes for new activations.

    Attributes:
      method: ``"nmf"``, ``"sae"`` or ``"pca"``.
      W: float32 ``[K, C]`` concept directions (NMF: non-negative; SAE: decoder rows, unit
        norm; PCA: orthonormal components).
      error: relative reconstruction error ``||A - U W||_F / ||A||_F`` over all rows (PCA:
        of ``mean + U W``; SAE: of ``z W + b_dec``).
      l0: mean number of non-zero codes per row.
      sparsity: fraction of zero entries of ``U``.
      iterations: outer iterations (NMF), epochs (SAE), 1 (PCA).
      seconds: wall time of the fit.
      history: relative error after each outer iteration / epoch.
      extra: the method's other arrays and numbers (SAE ``W_enc``, ``b_enc``, ``b_dec``;
        PCA ``mean``, ``eigenvalues``; NMF ``U`` (the training codes), ...).
      config: the settings of the fit (``k``, ``key``, ``iterations``, ``tol``, ...,
        ``devices``: the number of devices the rows were sharded over; see the module
        docstring).

    Example:
      >>> import numpy as np
      >>> from lucidax.concepts import nmf
      >>> rows = np.random.default_rng(0).random((256, 16), dtype=np.float32)
      >>> fact = nmf(rows, 4, iterations=20, progress=False)
      >>> fact.method, fact.W.shape, fact.encode(rows[:3]).shape
      ('nmf', (4, 16), (3, 4))
      >>> fact.decode(fact.encode(rows[:3])).shape, bool(fact.error < 1)
      ((3, 16), True)
    """

    method: str
    W: np.ndarray
    error: float
    l0: float
    sparsity: float
    iterations: int
    seconds: float
    history: tuple[float, ...]
    extra: dict = dataclasses.field(default_factory=dict)
    config: dict = dataclasses.field(default_factory=dict)

    @property
    def k(self) -> int:
        return int(self.W.shape[0])

    def encode(self, acts: Any) -> jax.Array:
        """Codes ``[..., K]`` of activations ``[..., C]`` (jnp, pure, jittable). NMF:
        non-negative least squares with ``W`` fixed (``relu(A W^+)`` then
        ``extra["encode_iterations"]`` HALS sweeps); SAE: its encoder; PCA: the projection of
        the centred activations."""
        acts = jnp.asarray(acts, jnp.float32)
        if acts.shape[-1] != self.W.shape[1]:
            raise ValueError(f"activations have {acts.shape[-1]} channels; this "
                             f"factorization has C={self.W.shape[1]}")
        if self.method == "nmf":
            return nmf_encode(jnp.asarray(self.W), acts,
                              int(self.extra.get("encode_iterations", 100)))
        if self.method == "sae":
            params = {n: jnp.asarray(self.extra[n]) for n in ("W_enc", "b_enc", "b_dec")}
            return sae_encode(params, acts, int(self.config["topk"]))
        return (acts - jnp.asarray(self.extra["mean"])) @ jnp.asarray(self.W).T

    def decode(self, U: Any) -> jax.Array:
        """Activations ``[..., C]`` from codes ``[..., K]`` (adds SAE ``b_dec`` / PCA mean)."""
        out = jnp.asarray(U, jnp.float32) @ jnp.asarray(self.W)
        if self.method == "sae":
            out = out + jnp.asarray(self.extra["b_dec"])
        elif self.method == "pca":
            out = out + jnp.asarray(self.extra["mean"])
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (no big arrays)."""
        small = {k: v for k, v in self.extra.items() if not isinstance(v, np.ndarray)}
        return {"method": self.method, "k": self.k, "channels": int(self.W.shape[1]),
                "error": float(self.error), "l0": float(self.l0),
                "sparsity": float(self.sparsity), "iterations": int(self.iterations),
                "seconds": float(self.seconds), "history": [float(h) for h in self.history],
                "extra": _json_safe(small), "config": _json_safe(self.config)}

    def save(self, path: str | os.PathLike, *, include_codes: bool = False) -> str:
        """Write one ``.npz`` (``W``, the extra arrays, JSON metadata) atomically. The training
        codes ``extra["U"]`` (``[n, K]``) are left out unless ``include_codes``."""
        path = os.fspath(path)
        arrays = {"W": np.asarray(self.W, np.float32)}
        for name, v in self.extra.items():
            if isinstance(v, np.ndarray) and (include_codes or name != "U"):
                arrays[f"extra.{name}"] = v
        meta = self.to_dict()
        meta.pop("k"), meta.pop("channels")
        meta["format"] = "lucidax.concepts.Factorization/1"
        arrays["meta"] = np.array(json.dumps(meta))
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".factorization-", suffix=".npz", dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Factorization:
        """Read a file written by :meth:`save`."""
        with np.load(os.fspath(path), allow_pickle=False) as z:
            if "meta" not in z.files or "W" not in z.files:
                raise ValueError(f"{os.fspath(path)!r} is not a saved Factorization")
            meta = json.loads(str(z["meta"]))
            extra = dict(meta["extra"])
            for name in z.files:
                if name.startswith("extra."):
                    extra[name[len("extra."):]] = np.asarray(z[name])
            return cls(meta["method"], np.asarray(z["W"], np.float32), meta["error"],
                       meta["l0"], meta["sparsity"], meta["iterations"], meta["seconds"],
                       tuple(meta["history"]), extra, meta["config"])


def _json_safe(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, (np.ndarray, jax.Array)):
        return np.asarray(x).tolist()
    return x


def codes(fact: Factorization, rows: Any, *, batch_rows: int = 65536, devices: Any = None,
          progress: bool = False) -> np.ndarray:
    """float32 codes ``[n, K]`` of every row of ``rows``, encoded with ``fact.encode`` in
    fixed-size chunks by one compiled program.

    Args:
      fact: the :class:`Factorization` whose ``encode`` gives the codes.
      rows: activations ``[n, C]`` or ``[N, h, w, C]`` (flattened to ``[N * h * w, C]``); a
        ``np.memmap`` (e.g. the cache of :func:`layer_activations`) is streamed, never loaded
        whole.
      batch_rows: rows per chunk (one compiled program for every chunk).
      devices: the devices to shard each chunk's rows over (None: all local devices;
        ``[jax.devices()[0]]`` forces one).
      progress: show a tqdm progress bar over the chunks.

    Returns:
      float32 ``[n, K]`` codes (``n = N * h * w`` for a 4-D ``rows``): reshape them to
      ``[N, h, w, K]`` for :func:`top_examples`.

    Raises:
      ValueError: ``rows`` do not have the factorization's ``C`` channels, or ``batch_rows``
        is not a positive integer.

    Example:
      >>> import numpy as np
      >>> from lucidax.concepts import codes, nmf
      >>> rows = np.random.default_rng(0).random((4, 8, 8, 16), dtype=np.float32)
      >>> fact = nmf(rows, 4, iterations=20, progress=False)
      >>> codes(fact, rows).reshape(4, 8, 8, fact.k).shape
      (4, 8, 8, 4)
    """
    from tqdm.auto import tqdm

    from .._files import check_int

    check_int(batch_rows, "batch_rows")
    r = as_rows(rows)
    if r.c != fact.W.shape[1]:
        raise ValueError(f"rows have {r.c} channels; this factorization has "
                         f"C={fact.W.shape[1]}")
    place = row_devices(devices)
    enc = jax.jit(fact.encode)
    out = np.empty((r.n, fact.k), np.float32)
    for ch in tqdm(r.chunks(batch_rows, multiple=place.count),
                   total=r.n_chunks(batch_rows, place.count), desc="codes",
                   disable=not progress):
        data = ch.data if place.mesh is None and place.device is None else place.rows(ch.data)
        out[ch.start:ch.start + ch.n] = np.asarray(enc(data))[:ch.n]
    return out


def factorize(rows: Any, k: int, *, method: str = "nmf", key: Any = 0, **kw: Any
              ) -> Factorization:
    """Factor ``rows`` into ``k`` concepts with the method named by ``method``.

    Args:
      rows: activations ``[n, C]`` or ``[N, h, w, C]`` (a ``np.memmap`` is streamed).
      k: number of concepts.
      method: ``"nmf"`` (:func:`nmf`: non-negative rows, a post-ReLU layer), ``"sae"``
        (:func:`topk_sae`) or ``"pca"`` (:func:`pca`).
      key: int seed or jax key of the fit (unused by PCA, which is deterministic).
      **kw: passed to that function (``iterations``, ``topk``, ``devices``, ``progress``...).

    Returns:
      the :class:`Factorization` of that function.

    Raises:
      ValueError: an unknown ``method`` (the message suggests the closest one), or what the
        method itself refuses (e.g. negative rows for NMF).

    Example:
      >>> import numpy as np
      >>> from lucidax.concepts import factorize
      >>> rows = np.random.default_rng(0).random((256, 16), dtype=np.float32)
      >>> fact = factorize(rows, 3, method="pca")
      >>> fact.method, fact.W.shape
      ('pca', (3, 16))
    """
    if method == "nmf":
        from ._nmf import nmf

        return nmf(rows, k, key=key, **kw)
    if method == "sae":
        from ._sae import topk_sae

        return topk_sae(rows, k, key=key, **kw)
    if method == "pca":
        from ._pca import pca

        return pca(rows, k, **kw)
    raise ValueError(suggest(method, METHODS, what="method"))


def rows_arg(rows: Any, *, nonnegative: bool = False, method: str = "nmf") -> Rows:
    return as_rows(rows, nonnegative=nonnegative, method=method)
