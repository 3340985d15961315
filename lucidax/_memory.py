"""A memory guard: refuse, with a clear message, a job that cannot fit in memory.

Without it ``lucidax render --size 100000`` dies with a NumPy ``_ArrayMemoryError`` traceback
after writing files, and ``lucidax invert --size 100000`` is killed by the kernel's OOM killer
(exit 137, no message) a minute later. The commands estimate what they need *before* any
allocation or file write (:func:`estimate_render`, :func:`estimate_inversion`,
:func:`estimate_extraction`), compare it with :func:`available_bytes` and raise
:class:`InsufficientMemoryError` (a ``ValueError``: the CLI prints it as one line) when it
clearly does not fit. The estimates are rough but conservative (calibrated against the peak
RSS of real renders on the CPU backend); a job whose availability is unknown is never refused,
and ``memory_check=False`` (``--no-memory-check``) skips the check.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

__all__ = [
    "InsufficientMemoryError",
    "available_bytes",
    "check_memory",
    "estimate_extraction",
    "estimate_inversion",
    "estimate_render",
    "format_bytes",
    "parse_cgroup_v1",
    "parse_cgroup_v2",
    "parse_meminfo",
]

GiB = 1024**3
MiB = 1024**2
#: A job is refused when its estimate exceeds this share of the available memory.
HEADROOM = 0.9
#: Forward activations are multiplied by this for a render's backward pass (the activations
#: kept for the gradient, the gradient buffers and XLA's temporaries). Calibrated on the CPU
#: backend against peak RSS (starter and efficientnet_lite0, see the commit message).
BACKWARD_FACTOR = 3.0
#: Bytes of buffers per float of the image batch of a render: parameters, Adam's two moments,
#: the gradient, the FFT spectrum (complex) and its inverse, the image, the transformed image
#: and its gradient (about 10 float32 copies).
IMAGE_COPIES = 10
#: The compiled program, the model's parameters and their copies: a fixed allowance.
OVERHEAD = 256 * MiB

_NO_LIMIT = 2**60  # cgroup v1 writes a huge number for "no limit"


class InsufficientMemoryError(ValueError):
    """A job's estimated memory need exceeds the available memory (the message says both and
    how to proceed)."""


def format_bytes(n: float) -> str:
    """``37.3 GiB`` (or ``412 MiB`` below 0.1 GiB)."""
    return f"{n / GiB:,.1f} GiB" if n >= 0.1 * GiB else f"{max(n, 0) / MiB:.0f} MiB"


# ---------------------------------------------------------------------------------------------
# what is available
# ---------------------------------------------------------------------------------------------
def parse_meminfo(text: str) -> int | None:
    """Bytes of ``MemAvailable`` in the text of ``/proc/meminfo`` (None when absent)."""
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            parts = line.split()
            try:
                value = int(parts[1])
            except (IndexError, ValueError):
                return None
            unit = parts[2].lower() if len(parts) > 2 else "b"
            return value * {"kb": 1024, "mb": MiB, "gb": GiB}.get(unit, 1)
    return None


def _int_or_none(text: str | None) -> int | None:
    if text is None:
        return None
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        return None


def parse_cgroup_v2(max_text: str | None, current_text: str | None) -> int | None:
    """``memory.max - memory.current`` of a cgroup v2 (None for ``max``, i.e. no limit, or
    unreadable values)."""
    limit, used = _int_or_none(max_text), _int_or_none(current_text)
    if limit is None or used is None:
        return None
    return max(limit - used, 0)


def parse_cgroup_v1(limit_text: str | None, usage_text: str | None) -> int | None:
    """``memory.limit_in_bytes - memory.usage_in_bytes`` of a cgroup v1 (None when unlimited:
    v1 writes a huge number, or unreadable values)."""
    limit, used = _int_or_none(limit_text), _int_or_none(usage_text)
    if limit is None or used is None or limit >= _NO_LIMIT:
        return None
    return max(limit - used, 0)


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _host_available() -> int | None:
    """Host memory available to this process: the smallest of MemAvailable, the cgroup's
    remaining allowance and psutil's figure (when psutil is installed); None if unknown."""
    values = []
    meminfo = _read("/proc/meminfo")
    if meminfo is not None:
        values.append(parse_meminfo(meminfo))
    cg = "/sys/fs/cgroup"
    if os.path.exists(os.path.join(cg, "memory.max")):
        values.append(parse_cgroup_v2(_read(os.path.join(cg, "memory.max")),
                                      _read(os.path.join(cg, "memory.current"))))
    else:
        values.append(parse_cgroup_v1(_read(os.path.join(cg, "memory", "memory.limit_in_bytes")),
                                      _read(os.path.join(cg, "memory",
                                                         "memory.usage_in_bytes"))))
    if meminfo is None:
        try:
            import psutil  # optional: not a dependency

            values.append(int(psutil.virtual_memory().available))
        except Exception:  # noqa: BLE001 - missing or unsupported: unknown
            pass
    known = [v for v in values if v is not None]
    return min(known) if known else None


def available_bytes() -> int | None:
    """Memory the next job can use, in bytes, or None when unknown.

    CPU backend: the host's (``MemAvailable`` of ``/proc/meminfo``, lowered to what the
    cgroup allows, ``memory.max - memory.current`` or the cgroup v1 equivalent; psutil when
    there is no ``/proc/meminfo`` and it is installed). GPU/TPU: ``bytes_limit -
    bytes_in_use`` of the first device's ``memory_stats()`` when it reports them.
    """
    try:
        import jax

        dev = jax.devices()[0]
    except Exception:  # noqa: BLE001 - no backend: fall back to the host
        return _host_available()
    if dev.platform == "cpu":
        return _host_available()
    try:
        stats = dev.memory_stats() or {}
    except Exception:  # noqa: BLE001 - not supported by this backend
        return None
    if "bytes_limit" in stats:
        return max(int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0)), 0)
    return None


# ---------------------------------------------------------------------------------------------
# what a job needs
# ---------------------------------------------------------------------------------------------
def _layer_shapes(model: Any, layers: Sequence[str], side: int
                  ) -> dict[str, tuple[int, ...]] | None:
    """``{layer: shape without batch}`` of every layer of ``model`` up to the deepest of
    ``layers`` (pre-ReLU twins included) for a square input of ``side`` px; None when the
    shapes cannot be computed. One abstract trace: nothing is allocated."""
    import jax
    import jax.numpy as jnp

    if not layers:
        return {}
    try:
        deepest = max(model.layer_names.index(n) for n in layers)
        names = tuple(model.layer_names[: deepest + 1])
        x = jax.ShapeDtypeStruct((1, side, side, model.input_spec.channels), jnp.float32)
        out = jax.eval_shape(lambda p, im: model.apply(p, im, names), model.params, x)
    except Exception:  # noqa: BLE001 - a size the model rejects fails later with its own message
        return None
    return {name: tuple(int(d) for d in a.shape[1:]) for name, a in out.items()}


def _layer_floats(model: Any, layers: Sequence[str], side: int) -> dict[str, int] | None:
    """``{layer: floats per image}`` (see :func:`_layer_shapes`)."""
    import math

    shapes = _layer_shapes(model, layers, side)
    return None if shapes is None else {k: math.prod(v) for k, v in shapes.items()}


def _activation_floats(model: Any, layers: Sequence[str], side: int) -> int | None:
    """Sum of :func:`_layer_floats` (None when unknown)."""
    floats = _layer_floats(model, layers, side)
    return None if floats is None else sum(floats.values())


def _params_bytes(model: Any) -> int:
    import jax
    import numpy as np

    return int(sum(np.size(a) * 4 for a in jax.tree_util.tree_leaves(model.params)))


def estimate_render(model: Any, layers: str | Sequence[str], *, batch: int, size: int,
                    model_side: int | None = None, transforms: bool = True) -> int | None:
    """Bytes a render of ``batch`` images of ``size`` px maximizing ``layers`` needs (rough,
    conservative; None when the model's shapes cannot be computed).

    Counts: the image side, ``IMAGE_COPIES`` float32 copies of ``batch x size^2 x C`` (image
    parameters incl. the FFT spectrum, Adam's two moments, the gradient, the image and its
    transformed copy); the forward activations of every layer up to the deepest of
    ``layers`` (``batch x H x W x C x 4`` bytes each, at the side the model sees: ``size +
    12`` with the standard transforms, at least ``model_side``) times ``BACKWARD_FACTOR`` for
    the backward pass; 4 copies of the model's parameters and a fixed ``OVERHEAD``.
    ``model_side`` None: the model's input side; 0: never resized.
    """
    layers = (layers,) if isinstance(layers, str) else tuple(layers)
    c = model.input_spec.channels
    seen = size + (12 if transforms else 0)
    target = model.input_spec.side if model_side is None else model_side
    if target:
        seen = max(seen, int(target))
    acts = _activation_floats(model, layers, seen)
    if acts is None:
        return None
    image = IMAGE_COPIES * batch * size * size * c * 4
    return int(image + BACKWARD_FACTOR * batch * acts * 4 + 4 * _params_bytes(model) + OVERHEAD)


def estimate_inversion(model: Any, layers: str | Sequence[str], *, n_images: int,
                       size: int, per_layer: bool = False) -> int | None:
    """Bytes an inversion (or caricature) of ``n_images`` images of ``size`` px from each of
    ``layers`` needs (rough, conservative; None when unknown).

    Counts: the render (:func:`estimate_render`, no transforms, never resized): one of every
    ``image x layer`` row up to the deepest layer, or with ``per_layer`` the largest of the
    one-render-per-layer renders of ``n_images`` rows; the target activations of every layer
    (``n x H x W x C x 4`` per layer, once more per row in the objective) and the results'
    activations for the metrics; the originals, the results and the grid PNG (9 float32
    copies of the ``n x (L + 1)`` images: its 2x enlargement alone is 4) and the float64
    PSNR/SSIM buffers (12 float64 copies of the results).
    """
    layers = (layers,) if isinstance(layers, str) else tuple(layers)
    rows = n_images * len(layers)
    if per_layer:
        renders = [estimate_render(model, (name,), batch=n_images, size=size, model_side=0,
                                   transforms=False) for name in layers]
        render = None if None in renders else max(renders)
    else:
        render = estimate_render(model, layers, batch=rows, size=size, model_side=0,
                                 transforms=False)
    floats = _layer_floats(model, layers, size)
    if render is None or floats is None:
        return None
    own = sum(floats[name] for name in layers)  # floats per image of the requested layers
    targets = (n_images * own + (n_images * own if per_layer else rows * own) + rows * own) * 4
    c = model.input_spec.channels
    pixels = n_images * (len(layers) + 1) * size * size * c
    return int(render + targets + 9 * pixels * 4 + 12 * rows * size * size * c * 8)


def estimate_extraction(model: Any, layers: str | Sequence[str], *, batch: int, side: int,
                        n: int | None = None, grid: int | None = 1) -> int | None:
    """Bytes a feature extraction needs (rough, conservative; None when unknown).

    Counts: a batch of input images (3 float32 copies: as read, resized, on the device);
    the forward activations of ``batch`` images through every layer up to the deepest of
    ``layers`` (no backward pass, so no ``BACKWARD_FACTOR``); and the stored features of
    ``n`` images, 4 bytes each, twice (the stored matrix and the copy its consumer makes):
    per conv layer ``grid^2 x C`` (``grid`` 1: a spatial mean/max/position; None: not
    reduced, ``H x W x C``), per dense layer its ``C``.
    """
    import math

    layers = (layers,) if isinstance(layers, str) else tuple(layers)
    shapes = _layer_shapes(model, layers, side)
    if shapes is None:
        return None
    acts = sum(math.prod(s) for s in shapes.values())
    images = 3 * batch * side * side * model.input_spec.channels * 4
    stored = 0
    if n:
        for name in layers:
            shape = shapes[name]
            if len(shape) == 3 and grid is not None:
                shape = (grid * grid * shape[-1],)
            stored += math.prod(shape)
        stored *= 2 * n * 4
    return int(images + batch * acts * 4 + stored + 2 * _params_bytes(model) + OVERHEAD)


# ---------------------------------------------------------------------------------------------
# the check
# ---------------------------------------------------------------------------------------------
def check_memory(needed_bytes: int | None, what: str, *, allowed: bool = True,
                 hint: str = "lower --size/--batch-size",
                 available: int | None = None) -> None:
    """Raise :class:`InsufficientMemoryError` when ``needed_bytes`` is more than
    ``HEADROOM`` of the available memory.

    Args:
      needed_bytes: the estimate (None: unknown, never refused).
      what: what the job does, e.g. ``"rendering 16 units at 100000 px"``.
      allowed: False (``--no-memory-check``, ``memory_check=False``) skips the check.
      hint: how to need less, for the message.
      available: bytes available (None: :func:`available_bytes`; unknown: never refused).
    """
    if not allowed or needed_bytes is None:
        return
    if available is None:
        available = available_bytes()
    if available is None or needed_bytes <= HEADROOM * available:
        return
    raise InsufficientMemoryError(
        f"{what} needs about {format_bytes(needed_bytes)}, {format_bytes(available)} is "
        f"available; {hint}, or pass --no-memory-check to try anyway (memory_check=False "
        f"in Python)")
