"""The row source of the factorizations (private): a layer's activations as rows ``[n, C]``.

:func:`as_rows` accepts an array-like ``[n, C]`` (``np.ndarray``, ``np.memmap``, jax array)
or ``[N, h, w, C]`` (spatial positions become rows; a memmap is reshaped as a view, never
copied), checks it in one streaming pass (non-empty, finite; non-negative for NMF) and
returns a :class:`Rows`. :meth:`Rows.chunks` then yields host chunks of a fixed number of
rows -- the last one padded (zeros) with a validity mask -- so one compiled program handles
every chunk, and a memmap is read one chunk at a time, never whole.

:func:`row_devices` gives the factorizations their data parallelism: with several devices
(default: all local devices) each chunk's rows are a multiple of the device count (the
padding rows masked like those of the last chunk) and placed row-sharded --
``NamedSharding(Mesh(devices, ("rows",)), P("rows"))`` -- while the parameters and
statistics are replicated; the jitted steps then run SPMD and XLA inserts the all-reduces
for the sums over rows. With one device nothing is sharded (no mesh).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from .._batching import pad_batch, valid_mask
from .._files import check_int

__all__ = ["Chunk", "RowDevices", "Rows", "as_rows", "row_devices"]

_CHECK_ROWS = 65536  # rows per validation step (bounded memory for memmaps)


@dataclasses.dataclass(frozen=True)
class Chunk:
    """One fixed-shape chunk: ``data`` float32 ``[size, C]`` (rows ``start:start + n`` of the
    source, zero-padded), ``mask`` bool ``[size]`` (True for the ``n`` real rows)."""

    start: int
    n: int
    data: np.ndarray
    mask: np.ndarray


@dataclasses.dataclass(frozen=True)
class Rows:
    """A validated row matrix ``[n, C]`` (a view of the caller's array, not a copy).

    Attributes:
      data: the rows (``np.ndarray`` / ``np.memmap``, any float dtype).
      n, c: number of rows and of channels.
      sq_norm: ``||A||_F^2`` (float64), computed in the validation pass.
      mean_value: mean entry of ``A``.
      min_value: smallest entry of ``A``.
    """

    data: np.ndarray
    n: int
    c: int
    sq_norm: float
    mean_value: float
    min_value: float

    def chunk_size(self, batch_rows: int, multiple: int = 1) -> int:
        """Rows per chunk: ``batch_rows``, or ``n`` when everything fits in one chunk, rounded
        up to a multiple of ``multiple`` (the device count: the extra rows are padding)."""
        size = min(int(batch_rows), self.n)
        return -(-size // multiple) * multiple

    def chunks(self, batch_rows: int, *, order: np.ndarray | None = None,
               multiple: int = 1) -> Iterator[Chunk]:
        """Host chunks of ``chunk_size(batch_rows, multiple)`` rows, float32, in row order (or
        the chunk order ``order``, a permutation of chunk indices). The last one (and with
        ``multiple > 1`` possibly the only one) is zero-padded."""
        size = self.chunk_size(batch_rows, multiple)
        n_chunks = -(-self.n // size)
        for i in (range(n_chunks) if order is None else order):
            start = int(i) * size
            block = np.asarray(self.data[start:start + size], np.float32)
            n = block.shape[0]
            yield Chunk(start, n, pad_batch(block, size, fill="zeros"), valid_mask(n, size))

    def n_chunks(self, batch_rows: int, multiple: int = 1) -> int:
        return -(-self.n // self.chunk_size(batch_rows, multiple))

    def take(self, index: np.ndarray) -> np.ndarray:
        """float32 rows at ``index`` (sorted internally for memmap locality)."""
        index = np.asarray(index)
        order = np.argsort(index, kind="stable")
        out = np.empty((len(index), self.c), np.float32)
        out[order] = np.asarray(self.data[index[order]], np.float32)
        return out

    def subset(self, index: np.ndarray) -> Rows:
        """The rows at ``index`` (a copy, float32) as a new :class:`Rows`."""
        return as_rows(self.take(np.sort(np.asarray(index))))


@dataclasses.dataclass(frozen=True)
class RowDevices:
    """Where the factorizations run: ``count`` devices; ``mesh`` a 1-D mesh (axis ``"rows"``)
    when there are several, else None (one device: plain arrays, nothing sharded)."""

    count: int
    mesh: Mesh | None
    device: Any = None  # the one device asked for explicitly (None: the default device)

    def rows(self, x: Any) -> jax.Array:
        """``x`` (leading axis: rows, a multiple of ``count``) on the device(s), row-sharded."""
        if self.mesh is not None:
            return jax.device_put(x, NamedSharding(self.mesh, P("rows")))
        return jnp.asarray(x) if self.device is None else jax.device_put(x, self.device)

    def replicate(self, tree: Any) -> Any:
        """Every leaf of ``tree`` on the device(s), replicated over the mesh."""
        if self.mesh is not None:
            return jax.device_put(tree, NamedSharding(self.mesh, P()))
        if self.device is None:
            return jax.tree_util.tree_map(jnp.asarray, tree)
        return jax.device_put(tree, self.device)


def row_devices(devices: Sequence[Any] | None) -> RowDevices:
    """The devices for a factorization: ``None`` all local devices, else the given list
    (``[jax.devices()[0]]`` forces one device)."""
    if devices is None:
        devs = list(jax.local_devices())
    else:
        if isinstance(devices, jax.Device):
            devices = [devices]
        try:
            devs = list(devices)
        except TypeError:
            raise ValueError(f"devices must be None or a list of jax devices; got "
                             f"{devices!r}") from None
        if not devs:
            raise ValueError("devices: empty list")
        if not all(isinstance(d, jax.Device) for d in devs):
            raise ValueError(f"devices must be jax devices (e.g. jax.devices()[:2]); got "
                             f"{devs!r}")
        if len(set(devs)) != len(devs):
            raise ValueError(f"devices: repeated device in {devs!r}")
    if len(devs) == 1:
        return RowDevices(1, None, None if devices is None else devs[0])
    return RowDevices(len(devs), Mesh(np.asarray(devs), ("rows",)))


def _to_host(x: Any) -> np.ndarray:
    if isinstance(x, np.ndarray):  # includes np.memmap: keep it lazy
        return x
    if hasattr(x, "__array__") or isinstance(x, (list, tuple)):
        return np.asarray(x)
    raise ValueError(f"activations must be an array-like [n, C] or [N, h, w, C]; got "
                     f"{type(x).__name__}")


def as_rows(acts: Any, *, nonnegative: bool = False, method: str = "nmf") -> Rows:
    """Validate ``acts`` (``[n, C]`` or ``[N, h, w, C]``; see the module docstring) and wrap
    it as :class:`Rows` (a :class:`Rows` is returned as is, re-checked for sign when
    ``nonnegative``). Raises ValueError for a wrong shape, an empty or non-finite array, or
    (``nonnegative``) a negative entry."""
    if isinstance(acts, Rows):
        rows = acts
    else:
        arr = _to_host(acts)
        if arr.ndim == 4:
            arr = arr.reshape(-1, arr.shape[-1])  # a view for contiguous arrays / memmaps
        if arr.ndim != 2:
            raise ValueError(f"activations must be [n, C] rows or [N, h, w, C] maps; got "
                             f"shape {tuple(arr.shape)}")
        if arr.shape[0] == 0 or arr.shape[1] == 0:
            raise ValueError(f"activations are empty: shape {tuple(arr.shape)}")
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
                or arr.dtype == bool):
            raise ValueError(f"activations must be numeric; got dtype {arr.dtype}")
        sq, total, lo, bad = 0.0, 0.0, np.inf, 0
        for start in range(0, arr.shape[0], _CHECK_ROWS):
            block = np.asarray(arr[start:start + _CHECK_ROWS], np.float32)
            row_sq = np.einsum("ij,ij->i", block, block)  # NaN / inf propagate into it
            if not np.isfinite(row_sq).all():
                finite = np.isfinite(block)
                if not finite.all():
                    bad += int(block.size - finite.sum())
                    continue
                row_sq = np.einsum("ij,ij->i", block.astype(np.float64),
                                   block.astype(np.float64))  # float32 overflow only
            sq += float(row_sq.sum(dtype=np.float64))
            total += float(block.sum(axis=1).sum(dtype=np.float64))
            lo = min(lo, float(block.min()))
        if bad:
            raise ValueError(f"activations contain {bad} non-finite values (NaN or inf); "
                             "clean or drop those rows first")
        n, c = arr.shape
        rows = Rows(arr, int(n), int(c), sq, total / (n * c), lo)
    if nonnegative and rows.min_value < 0:
        raise ValueError(
            f"{method} needs non-negative activations, but the smallest value is "
            f"{rows.min_value:.4g}: use a post-ReLU layer (or method='sae' / 'pca', which "
            "accept signed activations)")
    return rows


def check_k(k: Any, rows: Rows, *, method: str, at_most_c: bool) -> None:
    """``k`` must be an int >= 1 (and <= C when ``at_most_c``)."""
    check_int(k, "k", minimum=1)
    if at_most_c and k > rows.c:
        raise ValueError(f"k must be <= the number of channels C={rows.c} for {method}; got "
                         f"k={k}")
    if k > rows.n:
        raise ValueError(f"k must be <= the number of rows n={rows.n}; got k={k}")
