"""``manifest.json``: settings fingerprint, package versions, weights hash, per-unit status.

A unit's entry has ``status`` "done" or "failed" (non-finite renders); a silent unit (see
:func:`lucidax.visualize.silent_on_data`, :func:`~lucidax.visualize.stuck_renders`) is "done"
with ``silent: true`` and ``silent_reasons`` ("dataset": never activates on the dataset
images, then ``examples`` is empty; "render": its renders never left their start), so
manifests written before the flag resume unchanged (their entries count as not silent).
``rescue`` is "succeeded"/"failed" for a unit that needed a rescue render, else None.
``summary`` (rewritten with every manifest) counts all of them.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from ._io import atomic_write_json, decodable_png, read_json

__all__ = [
    "FORMAT",
    "MANIFEST",
    "merge_entries",
    "package_versions",
    "params_sha256",
    "settings_fingerprint",
    "shard_name",
    "summarize",
    "unit_done",
    "write_manifest",
]

FORMAT = "lucidax-gallery/1"
MANIFEST = "manifest.json"
DONE_STATES = ("done", "failed")


def shard_name(process_id: int, num_processes: int) -> str:
    """Manifest file one process writes (the merged name when there is one process)."""
    return MANIFEST if num_processes == 1 else f"manifest.{process_id}.json"


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("lucidax", "jax", "jaxlib", "flax", "optax", "numpy", "imageio", "matplotlib"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def params_sha256(params: Any) -> str:
    """sha256 over every parameter array (path, dtype, shape, bytes), in sorted path order."""
    import jax

    h = hashlib.sha256()
    leaves = jax.tree_util.tree_leaves_with_path(params)
    for path, leaf in sorted(leaves, key=lambda pl: jax.tree_util.keystr(pl[0])):
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(jax.tree_util.keystr(path).encode())
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def settings_fingerprint(settings: dict[str, Any]) -> str:
    """Stable hash of the settings that decide what a unit's files contain."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def unit_done(out: Path, entry: dict[str, Any] | None,
              listing: dict[str, int] | None = None) -> bool:
    """A unit is finished when its entry says so and its PNG files exist and decode; with
    ``listing`` (``{key: size}`` of an output URL, listed once per resume) when its files are
    there and not empty (a URL's files are published whole: see :mod:`lucidax._storage`)."""
    if not entry or entry.get("status") not in DONE_STATES:
        return False
    for key in ("grid", "loss_png"):
        rel = entry.get(key)
        if not rel:
            return False
        if listing is not None:
            if ".." in rel.split("/") or not listing.get(rel):
                return False
            continue
        p = out / rel
        try:
            p.resolve().relative_to(out.resolve())
        except ValueError:
            return False
        if not decodable_png(p):
            return False
    return True


def _valid(m: Any) -> dict[str, Any] | None:
    """``m`` when it is a manifest of this format, else None."""
    if not isinstance(m, dict) or m.get("format") != FORMAT or not isinstance(m.get("units"), dict):
        return None
    return m


def read_manifest(path: Path) -> dict[str, Any] | None:
    return _valid(read_json(path))


def read_out_manifest(out: str) -> dict[str, Any] | None:
    """``manifest.json`` of an output folder or URL (see :mod:`lucidax._storage`), or None."""
    from lucidax._storage import is_url

    if not is_url(out):
        return read_manifest(Path(out) / MANIFEST)
    import fsspec

    try:
        with fsspec.open(f"{out.rstrip('/')}/{MANIFEST}", "rb") as f:
            m = json.loads(f.read())
    except (OSError, ValueError, ImportError):
        return None
    return _valid(m)


def merge_entries(*manifests: dict[str, Any] | None) -> dict[str, dict[str, dict[str, Any]]]:
    """``units`` of several manifests, later ones winning per unit."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for m in manifests:
        if not m:
            continue
        for layer, units in m.get("units", {}).items():
            if isinstance(units, dict):
                out.setdefault(layer, {}).update(units)
    return out


def summarize(units: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Counts over the unit entries (``"layer/unit"`` lists): failed, silent, and rescues
    (needed, succeeded, failed)."""
    rows = [
        (f"{layer}/{u}", e)
        for layer, us in units.items()
        for u, e in sorted(us.items(), key=lambda kv: int(kv[0]))
        if isinstance(e, dict)
    ]
    rescue = [(k, e.get("rescue")) for k, e in rows if e.get("rescue") in ("succeeded", "failed")]
    return {
        "units": len(rows),
        "failed": [k for k, e in rows if e.get("status") == "failed"],
        "silent": [k for k, e in rows if e.get("silent")],
        "rescue": {
            "needed": [k for k, _ in rescue],
            "succeeded": [k for k, r in rescue if r == "succeeded"],
            "failed": [k for k, r in rescue if r == "failed"],
        },
    }


def write_manifest(
    path: Path, header: dict[str, Any], units: dict[str, dict[str, Any]], *, tag: str, **extra
) -> None:
    ordered = {
        layer: dict(sorted(us.items(), key=lambda kv: int(kv[0]))) for layer, us in units.items()
    }
    body = {**header, **extra, "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "summary": summarize(ordered), "units": ordered}
    atomic_write_json(path, body, tag=tag)
