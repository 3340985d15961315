"""Several processes, one gallery: joining ``jax.distributed``, a shared run id, handing out
the batches, and process 0 gathering the other processes' manifest shards.

Handing out work (uneven layers: a deep layer's batch costs many times an early one's):
every process knows the same list of unfinished batches, most costly first
(:func:`~lucidax.gallery._plan.lpt_order`), and *claims* them one at a time -- a process
that is free takes the next unclaimed batch, so none idles while another has a queue, and
the processes finish within about one (the cheapest, last) batch of each other. A claim is
atomic:

* ``kv`` (the default with ``jax.distributed``): an atomic counter in the coordinator's
  key-value store (``key_value_increment``, one round trip per batch); process 0 also
  publishes the list so every process follows the same one. Works wherever the output lives
  (a local staging folder per process, object storage).
* ``files``: a create-if-absent claim file per batch (``os.open(O_CREAT | O_EXCL)``) under
  ``<out>/.claims/<run id>/`` -- needs the output folder shared by every process (NFS, one
  machine); used when the store is not reachable.
* ``static``: no shared state, LPT shares (:func:`~lucidax.gallery._plan.lpt_assign`).

``$LUCIDAX_GALLERY_QUEUE`` (``auto`` | ``kv`` | ``files`` | ``static``) picks one; ``auto``
is ``kv`` when the store's client is there, else ``files``. Which process renders a batch
changes nothing in it: its random key depends only on (seed, layer, unit)."""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._config import GalleryConfig, GalleryConfigError
from ._manifest import merge_entries, read_manifest, shard_name

__all__ = ["claim_batches", "init_distributed", "queue_kind"]


ENV_COORDINATOR = "LUCIDAX_COORDINATOR"


ENV_NUM_PROCESSES = "LUCIDAX_NUM_PROCESSES"


ENV_PROCESS_ID = "LUCIDAX_PROCESS_ID"


ENV_QUEUE = "LUCIDAX_GALLERY_QUEUE"


CLAIMS = ".claims"


def _env_int(name: str) -> int | None:
    v = os.environ.get(name)
    if v is None or v == "":
        return None
    try:
        return int(v)
    except ValueError:
        raise GalleryConfigError(f"Environment variable {name}={v!r} is not an integer") from None


def init_distributed(config: GalleryConfig) -> tuple[int, int]:
    """Join the ``jax.distributed`` job described by ``config`` (or the ``LUCIDAX_*``
    environment variables); returns ``(process_id, num_processes)``.

    :func:`build_gallery` calls it when ``config.distributed``; call it yourself first when
    you build a model (or run any JAX computation) before ``build_gallery``, since JAX must
    join the job before its first computation. Does nothing if JAX already joined one.

    Args:
      config: a :class:`GalleryConfig`; its ``coordinator_address``, ``num_processes`` and
        ``process_id`` (each None: read from ``$LUCIDAX_COORDINATOR``,
        ``$LUCIDAX_NUM_PROCESSES``, ``$LUCIDAX_PROCESS_ID``) describe the job.

    Returns:
      ``(process_id, num_processes)`` of this process in the job.

    Raises:
      GalleryConfigError: a setting missing (neither in ``config`` nor in the environment),
        or ``process_id`` outside ``[0, num_processes)``.

    Example:
      In each process (here process 0 of 2)::

        config = GalleryConfig(model="starter", distributed=True, num_processes=2,
                               process_id=0, coordinator_address="10.0.0.1:1234")
        pid, n = init_distributed(config)  # before any JAX computation
        report = build_gallery(config)

      A setting out of range is refused before JAX is touched:

      >>> from lucidax.gallery import GalleryConfig, init_distributed
      >>> init_distributed(GalleryConfig(model="starter", distributed=True, num_processes=2,
      ...                                process_id=5, coordinator_address="localhost:1234"))
      Traceback (most recent call last):
      ...
      lucidax.gallery._config.GalleryConfigError: process_id must be in [0, 2), got 5
    """
    import jax

    addr = config.coordinator_address or os.environ.get(ENV_COORDINATOR)
    n = config.num_processes if config.num_processes is not None else _env_int(ENV_NUM_PROCESSES)
    pid = config.process_id if config.process_id is not None else _env_int(ENV_PROCESS_ID)
    if jax.distributed.is_initialized():
        return jax.process_index(), jax.process_count()
    missing = [
        what
        for what, v in (
            (f"coordinator_address (or ${ENV_COORDINATOR})", addr),
            (f"num_processes (or ${ENV_NUM_PROCESSES})", n),
            (f"process_id (or ${ENV_PROCESS_ID})", pid),
        )
        if v is None
    ]
    if missing:
        raise GalleryConfigError(
            "distributed=True needs " + ", ".join(missing) + " (e.g. coordinator "
            "'10.0.0.1:1234', 2 processes, ids 0 and 1)"
        )
    if not 0 <= pid < n:
        raise GalleryConfigError(f"process_id must be in [0, {n}), got {pid}")
    # CPU collectives need gloo; the setting is ignored by GPU/TPU backends.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=addr, num_processes=n, process_id=pid)
    return jax.process_index(), jax.process_count()


def _shared_run_id(num_processes: int) -> str:
    """A random id all processes agree on (process 0's, broadcast); also a start barrier."""
    value = secrets.randbits(62)
    if num_processes > 1:
        from jax.experimental import multihost_utils

        value = int(np.asarray(multihost_utils.broadcast_one_to_all(np.int64(value))))
    return f"{value:016x}"


def _kv_client():
    """The coordinator's key-value client of ``jax.distributed`` (None when not joined or
    this jax has no atomic increment)."""
    try:
        from jax._src.distributed import global_state
    except ImportError:
        return None
    client = getattr(global_state, "client", None)
    if client is None or not hasattr(client, "key_value_increment"):
        return None
    return client


def queue_kind(nproc: int) -> str:
    """How batches are handed out: ``"single"``, ``"kv"``, ``"files"`` or ``"static"``."""
    if nproc == 1:
        return "single"
    kind = os.environ.get(ENV_QUEUE, "auto").strip().lower() or "auto"
    if kind not in ("auto", "kv", "files", "static"):
        raise GalleryConfigError(f"${ENV_QUEUE} must be auto, kv, files or static, got {kind!r}")
    if kind in ("auto", "kv"):
        if _kv_client() is not None:
            return "kv"
        if kind == "kv":
            raise GalleryConfigError(f"${ENV_QUEUE}=kv, but jax.distributed's key-value store "
                                     "is not available")
        return "files"
    return kind


def claim_batches(order: Sequence[Any], out: Path, run_id: str, pid: int, nproc: int, *,
                  costs: dict[int, float] | None = None, kind: str | None = None,
                  plan: Sequence[Any] | None = None, timeout: float = 600.0) -> Iterator[Any]:
    """The batches of ``order`` (most costly first) this process renders, claimed one at a
    time as it asks for the next (see the module doc); every batch goes to exactly one
    process. ``order`` should be the same list on every process; with ``kv`` process 0's
    list wins (its batches looked up in ``plan``, the whole global plan)."""
    kind = kind or queue_kind(nproc)
    if kind == "single":
        yield from order
    elif kind == "static":
        from ._plan import lpt_assign

        yield from lpt_assign(order, costs or {}, nproc)[pid]
    elif kind == "kv":
        client = _kv_client()
        if client is None:
            raise RuntimeError("jax.distributed's key-value store is not available")
        prefix = f"lucidax/gallery/{run_id}"
        mine = ",".join(str(b.index) for b in order)
        if pid == 0:
            client.key_value_set(f"{prefix}/order", mine)
            published = mine
        else:
            published = client.blocking_key_value_get(f"{prefix}/order", int(timeout * 1000))
        if published != mine:  # process 0's list decides (each batch still goes to one)
            import warnings

            by_index = {b.index: b for b in (plan or order)}
            want = [int(i) for i in published.split(",") if i]
            missing = [i for i in want if i not in by_index]
            if missing:
                raise RuntimeError(
                    f"process {pid} cannot follow process 0's batches {missing[:10]}: the "
                    "processes were given different galleries")
            warnings.warn(
                f"process {pid} found other unfinished batches than process 0 (they see "
                "different files in the output folder); following process 0's list",
                stacklevel=2)
            order = [by_index[i] for i in want]
        while True:
            k = int(client.key_value_increment(f"{prefix}/next", 1)) - 1
            if k >= len(order):
                return
            yield order[k]
    elif kind == "files":
        folder = out / CLAIMS / run_id
        folder.mkdir(parents=True, exist_ok=True)
        for b in order:
            try:
                fd = os.open(folder / str(b.index), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                continue
            os.write(fd, str(pid).encode())
            os.close(fd)
            yield b
    else:
        raise ValueError(f"unknown queue kind {kind!r}")


def _gather_shards(
    out: Path, nproc: int, run_id: str, timeout: float, mine: dict, pid: int, pull=None
) -> dict[str, dict[str, Any]]:
    """``pull([name])`` (an output URL's :meth:`lucidax._storage.Storage.pull`) first copies
    each missing shard from the URL into ``out``."""
    deadline = time.monotonic() + timeout
    got: dict[int, dict[str, Any]] = {pid: {"units": mine}}
    while True:
        for p in range(nproc):
            if p in got:
                continue
            if pull is not None:
                pull([shard_name(p, nproc)])
            m = read_manifest(out / shard_name(p, nproc))
            if m is not None and m.get("run_id") == run_id and m.get("complete"):
                got[p] = m
        missing = [p for p in range(nproc) if p not in got]
        if not missing:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"Processes {missing} did not finish their share within {timeout:.0f}s (no "
                f"complete {', '.join(shard_name(p, nproc) for p in missing)} in {out}). Their "
                f"finished units are kept; re-run every process to complete the gallery."
            )
        time.sleep(0.25)
    # every process finished claiming: the claim files (of this and of killed runs) can go
    shutil.rmtree(out / CLAIMS, ignore_errors=True)
    return merge_entries(*(got[p] for p in range(nproc)))

