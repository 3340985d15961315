"""Turning a flat checkpoint (``{key: array}``) into a model's parameter pytree.

Two layouts are understood:

* lucidax's own: keys are ``/``-joined paths of the parameter pytree (what
  :func:`lucidax.models.save_params` writes), arrays already in JAX layout (HWIO kernels).
* a foreign one (PyTorch ``state_dict``): each architecture provides a *key map* from its
  parameter paths to the foreign keys and a conversion kind (``conv``: OIHW -> HWIO,
  ``linear``: (out, in) -> (in, out), ``plain``: unchanged).

Every mismatch is collected and reported at once: missing keys, unexpected keys and shape
mismatches (with both shapes), so that a user can fix a checkpoint in one go.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from ._base import flatten_params, unflatten_params

__all__ = ["CheckpointMismatchError", "KeyMap", "convert_state_dict", "params_from_flat"]

# param path ("a/b/kernel") -> (foreign key, kind)
KeyMap = Mapping[str, tuple[str, str]]

_KINDS = ("conv", "linear", "plain")


class CheckpointMismatchError(ValueError):
    """The checkpoint does not fit the architecture; the message names every offending key.

    Raised by :func:`load` (and the gallery, probes... that load weights): missing keys,
    unexpected keys and shape mismatches (both shapes) are all listed at once.

    Example:
      >>> import numpy as np
      >>> import lucidax.models as lm
      >>> np.savez("wrong.npz", **{"conv1/kernel": np.zeros((3, 3, 3, 8))})
      >>> lm.load("starter", weights="wrong.npz")
      Traceback (most recent call last):
      ...
      lucidax.models._convert.CheckpointMismatchError: Checkpoint does not match model 'starter' ...
    """


def _convert(kind: str, value: np.ndarray) -> np.ndarray:
    if kind == "conv":
        if value.ndim != 4:
            raise ValueError(f"expected a 4-d OIHW conv weight, got shape {value.shape}")
        return np.transpose(value, (2, 3, 1, 0))
    if kind == "linear":
        if value.ndim != 2:
            raise ValueError(f"expected a 2-d (out, in) linear weight, got shape {value.shape}")
        return np.transpose(value, (1, 0))
    if kind == "plain":
        return value
    raise ValueError(f"unknown conversion kind {kind!r}; valid kinds: {', '.join(_KINDS)}")


def _report(
    what: str,
    missing: list[str],
    unexpected: list[str],
    mismatched: list[str],
) -> None:
    if not (missing or unexpected or mismatched):
        return
    lines = [f"Checkpoint does not match {what}:"]
    if missing:
        lines.append(f"  missing keys ({len(missing)}): " + ", ".join(missing))
    if unexpected:
        lines.append(f"  unexpected keys ({len(unexpected)}): " + ", ".join(unexpected))
    if mismatched:
        lines.append(f"  shape mismatches ({len(mismatched)}):")
        lines.extend("    " + m for m in mismatched)
    raise CheckpointMismatchError("\n".join(lines))


def _as_float32(value: Any) -> np.ndarray:
    arr = np.asarray(value)
    # bfloat16/float8 (ml_dtypes) have dtype.kind "V": ask numpy's type hierarchy via jnp.
    if jnp.issubdtype(arr.dtype, jnp.floating) and arr.dtype != np.float32:
        arr = arr.astype(np.float32)
    return arr


def params_from_flat(
    flat: Mapping[str, Any], template: Any, *, what: str = "the model"
) -> dict[str, Any]:
    """lucidax layout (``/``-joined keys) -> params, checked against ``template``."""
    expected = flatten_params(template)
    missing = [k for k in expected if k not in flat]
    unexpected = [k for k in flat if k not in expected]
    mismatched = [
        f"{k}: checkpoint {tuple(np.shape(flat[k]))} vs model {tuple(np.shape(v))}"
        for k, v in expected.items()
        if k in flat and tuple(np.shape(flat[k])) != tuple(np.shape(v))
    ]
    _report(what, missing, unexpected, mismatched)
    return unflatten_params({k: _as_float32(flat[k]) for k in expected})


def convert_state_dict(
    state_dict: Mapping[str, Any],
    template: Any,
    key_map: KeyMap,
    *,
    what: str = "the model",
    ignore: tuple[str, ...] = ("num_batches_tracked",),
) -> dict[str, Any]:
    """Foreign ``state_dict`` -> params via ``key_map``, checked against ``template``.

    Keys ending with any suffix in ``ignore`` (e.g. BatchNorm's ``num_batches_tracked``) are
    dropped silently. Shapes are compared after layout conversion and reported in the
    checkpoint's own layout.
    """
    expected = flatten_params(template)
    if set(key_map) != set(expected):
        raise RuntimeError(  # a bug in an architecture's key map, not a user error
            "key map does not cover the parameters exactly: "
            f"{sorted(set(expected) ^ set(key_map))}"
        )
    foreign_used = {key for key, _ in key_map.values()}
    missing = [f"{key} (for {path})" for path, (key, _) in key_map.items() if key not in state_dict]
    unexpected = [
        k for k in state_dict if k not in foreign_used and not k.endswith(tuple(ignore))
    ]
    mismatched: list[str] = []
    converted: dict[str, np.ndarray] = {}
    for path, (key, kind) in key_map.items():
        if key not in state_dict:
            continue
        raw = _as_float32(state_dict[key])
        want = tuple(np.shape(expected[path]))
        try:
            value = _convert(kind, raw)
        except ValueError as e:
            mismatched.append(f"{key}: {e}")
            continue
        if tuple(value.shape) != want:
            # Show the model's expectation in the checkpoint's layout as well.
            back = {"conv": (3, 2, 0, 1), "linear": (1, 0)}.get(kind)
            want_foreign = tuple(want[i] for i in back) if back and len(back) == len(want) else want
            mismatched.append(f"{key}: checkpoint {tuple(raw.shape)} vs model {want_foreign}")
            continue
        converted[path] = value
    _report(what, missing, unexpected, mismatched)
    return unflatten_params(converted)


def looks_like(flat: Mapping[str, Any], template: Any) -> bool:
    """True when ``flat`` uses lucidax's own layout for ``template`` (most keys match)."""
    expected = set(flatten_params(template))
    if not flat:
        return False
    hits = sum(1 for k in flat if k in expected)
    return hits >= max(1, len(flat) // 2)
