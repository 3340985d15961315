"""Several processes, one gallery: joining ``jax.distributed``, a shared run id, and process
0 gathering the other processes' manifest shards."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Any

import numpy as np

from ._config import GalleryConfig, GalleryConfigError
from ._manifest import merge_entries, read_manifest, shard_name

__all__ = ["init_distributed"]


ENV_COORDINATOR = "LUCIDAX_COORDINATOR"


ENV_NUM_PROCESSES = "LUCIDAX_NUM_PROCESSES"


ENV_PROCESS_ID = "LUCIDAX_PROCESS_ID"


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
    return merge_entries(*(got[p] for p in range(nproc)))

