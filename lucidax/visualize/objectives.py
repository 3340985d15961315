"""Objectives: what feature visualization maximizes.

An :class:`Objective` maps the activation dict of a batch to one value per image (``[B]``,
to be **maximized**). It knows which layers it reads (``objective.layers``), so the render
loop runs the model only up to the deepest of them. The special layer ``"input"`` is the
un-transformed parameterized image ``[B, h, w, C]`` (added by the render loop), which image
regularizers (:func:`l1`, :func:`total_variation`, :func:`blur_input_each_step`) read.

Objectives combine linearly::

    obj = channel("mixed4a", 97) - 0.05 * total_variation() + 0.5 * neuron("mixed4b", 3)
    total = sum([channel("mixed4a", u) for u in (1, 2)])

**Batched objectives.** Every ``unit`` (channel, neuron, class) may be an int or a sequence of
``B`` ints: image ``i`` then reads ``unit[i]``. ``channel("mixed4a", range(508))`` renders all
508 channels of ``mixed4a`` in ONE forward/backward pass (a one-hot contraction per image).
Directions may likewise be one vector ``[C]`` or one per image ``[B, C]``.

**Crops.** The activations of a batch may hold ``n`` transformed copies (crops) of each image,
image ``b``'s copies contiguous (rows ``b*n .. b*n+n-1``; see ``transforms.random_crops``).
The number of images ``B`` is then taken from ``acts["input"]`` and every per-image value is
the mean over that image's copies.

**Compilation.** An Objective is a JAX pytree: unit indices, directions and weights are its
array leaves (traced), the kind of each term, its layer and static options are the structure.
So ``channel("mixed4a", 3)`` and ``channel("mixed4a", 4)`` share one compiled render program;
only a different *structure* (another layer, another kind of term) compiles again.

Objectives are validated against a model with :meth:`Objective.validate` (unknown layer,
unit index out of range, direction of the wrong length), before anything is compiled.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lucidax._batching import pad_batch
from lucidax.models import Model, normalize_layers, suggest

__all__ = [
    "INPUT",
    "Objective",
    "activation_dot",
    "activation_match",
    "alignment",
    "blur_input_each_step",
    "channel",
    "channel_interpolate",
    "class_logit",
    "class_probability",
    "deepdream",
    "direction",
    "direction_neuron",
    "diversity",
    "l1",
    "layer",
    "neuron",
    "total_variation",
]

#: The layer name under which the render loop passes the (un-transformed) image.
INPUT = "input"

Acts = Mapping[str, jax.Array]


# ---------------------------------------------------------------------------------------------
# metadata used for validation (never traced)
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Meta:
    """What :meth:`Objective.validate` and the render loop need to know, outside of jit."""

    batch: int | None = None  # number of images the per-image arrays ask for
    unit_ids: tuple[int, ...] | None = None  # units of the first unit-bearing term
    unit_checks: tuple[tuple[str, tuple[int, ...]], ...] = ()  # (layer, units read)
    vec_checks: tuple[tuple[str, int], ...] = ()  # (layer, direction length)
    couples_batch: bool = False  # an image's value depends on the other images
    per_image: tuple[str, ...] = ()  # leaf only: data keys with a leading batch axis


def _merge_meta(metas: Sequence[_Meta]) -> _Meta:
    batches = {m.batch for m in metas if m.batch is not None}
    if len(batches) > 1:
        raise ValueError(
            f"Cannot combine objectives asking for different batch sizes {sorted(batches)}: "
            f"per-image units/directions must all have the same length."
        )
    unit_ids = next((m.unit_ids for m in metas if m.unit_ids is not None and
                     len(m.unit_ids) > 1), None)
    if unit_ids is None:
        unit_ids = next((m.unit_ids for m in metas if m.unit_ids is not None), None)
    return _Meta(
        batch=batches.pop() if batches else None,
        unit_ids=unit_ids,
        unit_checks=tuple(c for m in metas for c in m.unit_checks),
        vec_checks=tuple(c for m in metas for c in m.vec_checks),
        couples_batch=any(m.couples_batch for m in metas),
    )


# ---------------------------------------------------------------------------------------------
# the Objective type
# ---------------------------------------------------------------------------------------------
@jax.tree_util.register_pytree_node_class
class Objective:
    """A per-image objective ``acts -> [B]`` (maximized) over the layers it reads.

    Build objectives with the constructors of this module (:func:`channel`, :func:`neuron`,
    ...) and the algebra ``+``, ``-``, unary ``-``, ``* scalar``, ``/ scalar`` and ``sum``;
    wrap your own function with ``Objective(fn, layers=(...), name=...)`` where
    ``fn(acts) -> [B]`` (a user function is part of the compiled structure: pass the same
    function object again to reuse the compiled program).

    Attributes:
      layers: the layer names read (``"input"`` is the image itself).
      name: a readable description.
      batch: the number of images the per-image arguments ask for, or None.
      unit_ids: the units of the (first) unit-bearing term, as a tuple, or None.
      max_unit: ``{layer: largest unit index read}``.
      couples_batch: True when one image's value depends on the other images of the batch
        (:func:`diversity`, :func:`alignment`, :func:`channel_interpolate`).

    Example:
      >>> from lucidax import visualize as viz
      >>> mean_conv2 = viz.Objective(lambda acts: acts["conv2"].mean(axis=(1, 2, 3)),
      ...                            layers="conv2", name="mean(conv2)")
      >>> (mean_conv2 + viz.channel("conv3", 1)).layers
      ('conv2', 'conv3')
    """

    __slots__ = ("_impl", "_data", "_static", "layers", "name", "_meta")

    def __init__(
        self,
        fn: Callable[[Acts], jax.Array],
        *,
        layers: str | Sequence[str],
        name: str | None = None,
    ):
        if not callable(fn):
            raise TypeError(f"Objective(fn, ...) needs a callable fn(acts) -> [B]; got {fn!r}")
        layers = (layers,) if isinstance(layers, str) else tuple(layers)
        if not layers or not all(isinstance(x, str) for x in layers):
            raise ValueError(f"layers must be a non-empty sequence of layer names; got {layers!r}")
        self._set(_custom_impl, {}, (fn,), layers, name or getattr(fn, "__name__", "custom"),
                  _Meta())

    def _set(self, impl, data, static, layers, name, meta) -> None:
        object.__setattr__(self, "_impl", impl)
        object.__setattr__(self, "_data", data)
        object.__setattr__(self, "_static", static)
        object.__setattr__(self, "layers", tuple(dict.fromkeys(layers)))
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "_meta", meta)

    @classmethod
    def _node(cls, impl, data, static, layers, name, meta=None) -> Objective:
        obj = object.__new__(cls)
        obj._set(impl, data, static, layers, name, meta if meta is not None else _Meta())
        return obj

    def __setattr__(self, name, value):
        raise dataclasses.FrozenInstanceError(f"Objective is immutable (cannot set {name!r})")

    def __reduce__(self):  # picklable (for process pools) despite being immutable
        return (_rebuild, (self._impl, self._data, self._static, self.layers, self.name,
                           self._meta))

    # -- pytree: arrays are leaves, the kind of term / layers / static options the structure --
    def tree_flatten(self):
        return (self._data,), (self._impl, self._static, self.layers)

    @classmethod
    def tree_unflatten(cls, aux, children):
        impl, static, layers = aux
        return cls._node(impl, children[0], static, layers, "<traced objective>")

    # -- evaluation --------------------------------------------------------------------------
    def __call__(self, acts: Acts) -> jax.Array:
        """Per-image values ``[B]`` for an activation dict (see the module docstring)."""
        missing = [name for name in self.layers if name not in acts]
        if missing:
            raise KeyError(
                f"Objective {self.name!r} reads layers {missing} that are not in the "
                f"activations (have: {', '.join(acts)})."
            )
        return self._impl(acts, self._data, self._static)

    @property
    def fn(self) -> Callable[[Acts], jax.Array]:
        """The objective as a plain function ``acts -> [B]``."""
        return self.__call__

    # -- metadata ----------------------------------------------------------------------------
    @property
    def batch(self) -> int | None:
        return self._meta.batch

    @property
    def unit_ids(self) -> tuple[int, ...] | None:
        return self._meta.unit_ids

    @property
    def couples_batch(self) -> bool:
        return self._meta.couples_batch

    @property
    def model_layers(self) -> tuple[str, ...]:
        """The layers read from the model (``layers`` without ``"input"``)."""
        return tuple(name for name in self.layers if name != INPUT)

    @property
    def max_unit(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for lyr, units in self._meta.unit_checks:
            if units:
                out[lyr] = max(out.get(lyr, -1), max(units))
        return out

    def validate(self, model: Model) -> Objective:
        """Check the objective against ``model`` (nothing is compiled); returns ``self``.

        Raises:
          UnknownLayerError: a layer the model does not have (the message lists them).
          ValueError: a unit index out of range (the message gives the layer's channel
            count), or a direction whose length is not the layer's channel count.
        """
        if self.model_layers:
            normalize_layers(self.model_layers, model.layer_names)
        for lyr, units in self._meta.unit_checks:
            n = model.layers[lyr].channels
            bad = [u for u in units if not 0 <= u < n]
            if bad:
                shown = ", ".join(str(u) for u in bad[:10]) + (", ..." if len(bad) > 10 else "")
                raise ValueError(
                    f"Unit index {shown} out of range for layer {lyr!r} of {model.name}, "
                    f"which has {n} channels (valid units: 0..{n - 1})."
                )
        for lyr, dim in self._meta.vec_checks:
            n = model.layers[lyr].channels
            if dim != n:
                raise ValueError(
                    f"Direction of length {dim} does not match layer {lyr!r} of {model.name}, "
                    f"which has {n} channels."
                )
        return self

    def pad_batch(self, total: int) -> Objective:
        """A copy whose per-image arrays are padded (repeating the last entry) to ``total``
        images (used to split a batch evenly over devices; padded results are dropped)."""
        if self.batch is None or total == self.batch:
            return self
        if total < self.batch:
            raise ValueError(f"pad_batch: {total} < batch {self.batch}")
        if self.couples_batch:
            raise ValueError(f"{self.name}: cannot pad an objective that couples the batch")
        return _pad(self, total)

    # -- algebra -----------------------------------------------------------------------------
    def _terms(self) -> tuple[tuple[Objective, ...], tuple[float, ...]]:
        if self._impl is _linear_impl:
            children, weights = self._data
            return tuple(children), tuple(float(w) for w in np.asarray(weights))
        return (self,), (1.0,)

    def __add__(self, other: Any) -> Objective:
        if isinstance(other, numbers.Number) and other == 0:
            return self
        if not isinstance(other, Objective):
            return NotImplemented
        return _linear([self, other], [1.0, 1.0])

    def __radd__(self, other: Any) -> Objective:
        if isinstance(other, numbers.Number) and other == 0:  # builtin sum() starts at 0
            return self
        if not isinstance(other, Objective):
            return NotImplemented
        return _linear([other, self], [1.0, 1.0])

    def __sub__(self, other: Any) -> Objective:
        if isinstance(other, numbers.Number) and other == 0:
            return self
        if not isinstance(other, Objective):
            return NotImplemented
        return _linear([self, other], [1.0, -1.0])

    def __rsub__(self, other: Any) -> Objective:
        if isinstance(other, numbers.Number) and other == 0:
            return -self
        return NotImplemented

    def __neg__(self) -> Objective:
        return _linear([self], [-1.0])

    def __mul__(self, other: Any) -> Objective:
        if isinstance(other, Objective):
            raise TypeError(
                "Objectives multiply by scalars only (objective * objective is not defined)."
            )
        w = _scalar(other, "multiply")
        return _linear([self], [w])

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> Objective:
        w = _scalar(other, "divide")
        if w == 0:
            raise ZeroDivisionError("Objective divided by zero")
        return _linear([self], [1.0 / w])

    @staticmethod
    def sum(objectives: Iterable[Objective]) -> Objective:
        """Sum of objectives (same as the builtin ``sum``, as one flat node)."""
        objs = list(objectives)
        if not objs:
            raise ValueError("Objective.sum() needs at least one objective")
        for o in objs:
            if not isinstance(o, Objective):
                raise TypeError(f"Objective.sum(): not an Objective: {o!r}")
        return _linear(objs, [1.0] * len(objs))

    def __repr__(self) -> str:
        return f"Objective({self.name})"


def _rebuild(impl, data, static, layers, name, meta) -> Objective:
    return Objective._node(impl, data, static, layers, name, meta)


def _scalar(value: Any, what: str) -> float:
    if isinstance(value, numbers.Real) or (np.ndim(value) == 0 and
                                           np.issubdtype(np.asarray(value).dtype, np.number)):
        if isinstance(value, jax.core.Tracer):
            raise TypeError(f"Cannot {what} an objective by a traced value")
        return float(value)
    raise TypeError(f"Objectives {what} by real scalars only; got {type(value).__name__}")


# ---------------------------------------------------------------------------------------------
# combination
# ---------------------------------------------------------------------------------------------
def _linear_impl(acts: Acts, data, static) -> jax.Array:
    children, weights = data
    total = None
    for i, child in enumerate(children):
        v = child._impl(acts, child._data, child._static) * weights[i]
        total = v if total is None else total + v
    return total


def _fmt_weight(w: float) -> str:
    return f"{w:g}"


def _linear(objs: Sequence[Objective], weights: Sequence[float]) -> Objective:
    children: list[Objective] = []
    ws: list[float] = []
    for obj, w in zip(objs, weights, strict=True):
        sub, subw = obj._terms()
        children.extend(sub)
        ws.extend(w * x for x in subw)
    parts = []
    for c, w in zip(children, ws, strict=True):
        if not parts:
            parts.append(c.name if w == 1 else ("-" + c.name if w == -1 else
                                                f"{_fmt_weight(w)} * {c.name}"))
        elif w >= 0:
            parts.append(f"+ {c.name}" if w == 1 else f"+ {_fmt_weight(w)} * {c.name}")
        else:
            parts.append(f"- {c.name}" if w == -1 else f"- {_fmt_weight(-w)} * {c.name}")
    name = " ".join(parts)
    layers = tuple(dict.fromkeys(name_ for c in children for name_ in c.layers))
    meta = _merge_meta([c._meta for c in children])
    data = (tuple(children), np.asarray(ws, np.float32))
    return Objective._node(_linear_impl, data, (), layers, name, meta)


def _pad(obj: Objective, total: int) -> Objective:
    if obj._impl is _linear_impl:
        children, weights = obj._data
        kids = tuple(_pad(c, total) for c in children)
        meta = dataclasses.replace(obj._meta, batch=total)
        return Objective._node(_linear_impl, (kids, weights), (), obj.layers, obj.name, meta)
    if not obj._meta.per_image:
        return obj
    data = dict(obj._data)
    for k in obj._meta.per_image:
        data[k] = pad_batch(np.asarray(data[k]), total)
    meta = dataclasses.replace(obj._meta, batch=total)
    return Objective._node(obj._impl, data, obj._static, obj.layers, obj.name, meta)


# ---------------------------------------------------------------------------------------------
# helpers used inside objective functions (traced)
# ---------------------------------------------------------------------------------------------
def _n_images(acts: Acts, rows: int) -> int:
    """Number of images B (from ``acts["input"]`` when present, else the rows)."""
    if INPUT in acts:
        b = int(acts[INPUT].shape[0])
        if rows % b:
            raise ValueError(
                f"A layer has {rows} rows for {b} images; the rows of a layer must be the "
                f"images or {rows // max(b, 1)}+ contiguous copies (crops) of each image."
            )
        return b
    return rows


def _per_image(values: jax.Array, b: int) -> jax.Array:
    """Mean over the contiguous copies (crops) of each image: ``[B * n] -> [B]``."""
    n = values.shape[0] // b
    return values if n == 1 else values.reshape(b, n).mean(axis=1)


def _rows(arr: jax.Array, batched: bool, rows: int) -> jax.Array:
    """Per-image array ``[B, ...]`` repeated for ``rows = B * n`` rows; shared arrays as is."""
    if not batched:
        return arr
    n = rows // arr.shape[0]
    return arr if n == 1 else jnp.repeat(arr, n, axis=0)


def _one_hot(units: jax.Array, rows: int, c: int, dtype) -> jax.Array:
    """``[rows, C]`` one-hot rows of ``units`` (scalar or per-image ``[B]``)."""
    units = jnp.asarray(units)
    if units.ndim == 0:
        return jnp.broadcast_to(jax.nn.one_hot(units, c, dtype=dtype), (rows, c))
    return jax.nn.one_hot(_rows(units, True, rows), c, dtype=dtype)


def _spatial(a: jax.Array) -> jax.Array:
    """Conv acts ``[N, H, W, C]`` as is; dense ``[N, C]`` as ``[N, 1, 1, C]``."""
    if a.ndim == 2:
        return a[:, None, None, :]
    if a.ndim != 4:
        raise ValueError(f"Expected activations [N, H, W, C] or [N, C]; got shape {a.shape}")
    return a


# ---------------------------------------------------------------------------------------------
# argument parsing (outside jit)
# ---------------------------------------------------------------------------------------------
def _check_layer_name(name: Any, what: str = "layer") -> str:
    if not isinstance(name, str) or not name:
        raise TypeError(f"{what} must be a layer name (str); got {name!r}")
    return name


def _units(unit: Any, what: str = "unit") -> tuple[np.ndarray, bool, tuple[int, ...]]:
    """int or sequence of ints -> (int32 array, batched?, tuple of ints)."""
    if isinstance(unit, range):
        unit = list(unit)
    arr = np.asarray(unit)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        if arr.size == 0 and arr.ndim == 1:
            raise ValueError(f"{what}: empty sequence of units")
        raise TypeError(f"{what} must be an int or a sequence of ints; got {unit!r}")
    if arr.ndim > 1:
        raise ValueError(f"{what} must be an int or a 1-d sequence of ints; got shape {arr.shape}")
    if arr.ndim == 1 and arr.size == 0:
        raise ValueError(f"{what}: empty sequence of units")
    ints = tuple(int(u) for u in np.atleast_1d(arr))
    return arr.astype(np.int32), arr.ndim == 1, ints


def _unit_meta(layer_: str, arr: np.ndarray, batched: bool, ints, keys=("unit",)) -> _Meta:
    return _Meta(
        batch=len(ints) if batched else None,
        unit_ids=ints,
        unit_checks=((layer_, ints),),
        per_image=keys if batched else (),
    )


def _position(v: Any, what: str) -> int | None:
    if v is None:
        return None
    if isinstance(v, numbers.Integral):
        return int(v)
    raise TypeError(f"{what} must be an int pixel index (or None for the centre); got {v!r}")


def _fmt_units(ints: tuple[int, ...], batched: bool) -> str:
    if not batched:
        return str(ints[0])
    if len(ints) > 1 and ints == tuple(range(ints[0], ints[0] + len(ints))):
        return f"{ints[0]}..{ints[-1]}"
    return "[" + ", ".join(map(str, ints[:6])) + (", ...]" if len(ints) > 6 else "]")


# ---------------------------------------------------------------------------------------------
# unit objectives
# ---------------------------------------------------------------------------------------------
def _channel_impl(acts, data, static):
    (lyr,) = static
    a = _spatial(acts[lyr])
    rows, c = a.shape[0], a.shape[-1]
    hot = _one_hot(data["unit"], rows, c, a.dtype)
    v = jnp.einsum("nhwc,nc->n", a, hot) / (a.shape[1] * a.shape[2])
    return _per_image(v, _n_images(acts, rows))


def channel(layer: str, unit: int | Sequence[int]) -> Objective:
    """Mean activation of channel ``unit`` of ``layer`` over all positions.

    ``unit`` may be a sequence of ``B`` channels: image ``i`` maximizes ``unit[i]``.
    For a dense layer this is the unit's value.

    Example:
      >>> from lucidax import visualize as viz
      >>> import lucidax.models as lm
      >>> model = lm.load("starter")
      >>> result = viz.render(model, viz.channel("conv3", [0, 5, 9]), size=32, steps=64,
      ...                     progress=False)
      >>> result.images.shape
      (3, 32, 32, 3)
    """
    layer = _check_layer_name(layer)
    arr, batched, ints = _units(unit)
    return Objective._node(
        _channel_impl, {"unit": arr}, (layer,), (layer,),
        f"channel({layer}, {_fmt_units(ints, batched)})", _unit_meta(layer, arr, batched, ints),
    )


def _at(a: jax.Array, x: int | None, y: int | None) -> jax.Array:
    """``a[:, y, x, :]`` (centre by default) of ``[N, H, W, C]``; dense ``[N, C]`` as is."""
    if a.ndim == 2:
        return a
    h, w = a.shape[1], a.shape[2]
    yy = h // 2 if y is None else y
    xx = w // 2 if x is None else x
    if not (0 <= yy < h and 0 <= xx < w):
        raise ValueError(f"Position (x={xx}, y={yy}) is outside the {h}x{w} activation map")
    return a[:, yy, xx, :]


def _neuron_impl(acts, data, static):
    lyr, x, y = static
    a = _at(acts[lyr], x, y)
    rows, c = a.shape
    hot = _one_hot(data["unit"], rows, c, a.dtype)
    return _per_image(jnp.sum(a * hot, axis=-1), _n_images(acts, rows))


def neuron(
    layer: str, unit: int | Sequence[int], x: int | None = None, y: int | None = None
) -> Objective:
    """Activation of channel ``unit`` at one position (``x``, ``y``; default the centre
    ``(W // 2, H // 2)`` of the activation map). ``unit`` may be per image.

    Args:
      layer: a layer name.
      unit: a channel index, or a sequence of them (one per image of a batch).
      x, y: the position (default: the centre of the activation map).

    Example:
      >>> from lucidax import visualize as viz
      >>> viz.neuron("conv3", 5, x=4, y=4).name
      'neuron(conv3, 5, x=4, y=4)'
    """
    layer = _check_layer_name(layer)
    arr, batched, ints = _units(unit)
    x, y = _position(x, "x"), _position(y, "y")
    pos = "" if x is None and y is None else f", x={x}, y={y}"
    return Objective._node(
        _neuron_impl, {"unit": arr}, (layer, x, y), (layer,),
        f"neuron({layer}, {_fmt_units(ints, batched)}{pos})", _unit_meta(layer, arr, batched, ints),
    )


def _layer_impl(acts, data, static):
    (lyr,) = static
    a = acts[lyr]
    v = jnp.mean(jnp.square(a).reshape(a.shape[0], -1), axis=1)
    return _per_image(v, _n_images(acts, a.shape[0]))


def layer(layer: str) -> Objective:
    """DeepDream: mean of the squared activations of the whole ``layer``.

    Example:
      >>> from lucidax import visualize as viz
      >>> viz.layer("conv2").layers
      ('conv2',)

    Example:
      >>> from lucidax import visualize as viz
      >>> viz.layer("conv2").layers   # also ``viz.deepdream``
      ('conv2',)
    """
    layer = _check_layer_name(layer)
    return Objective._node(_layer_impl, {}, (layer,), (layer,), f"layer({layer})")


deepdream = layer


def _vec(vec: Any, what: str = "vec") -> tuple[np.ndarray, bool]:
    arr = np.asarray(vec, np.float32)
    if arr.ndim not in (1, 2) or arr.shape[-1] == 0:
        raise ValueError(f"{what} must be one direction [C] or one per image [B, C]; got shape "
                         f"{arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} contains NaN or inf")
    return arr, arr.ndim == 2


def _dot_cossim(a: jax.Array, vec: jax.Array, cossim_pow: float) -> jax.Array:
    """Lucid's ``_dot_cossim`` over the last axis: ``<a, v> * max(0.1, cos)**pow``."""
    dot = jnp.sum(a * vec, axis=-1)
    if cossim_pow == 0:
        return dot
    eps = 1e-4
    cos = dot / (eps + jnp.linalg.norm(a, axis=-1)) / (eps + jnp.linalg.norm(vec, axis=-1))
    return dot * jnp.maximum(0.1, cos) ** cossim_pow


def _direction_impl(acts, data, static):
    lyr, cossim_pow = static
    a = _spatial(acts[lyr])
    rows = a.shape[0]
    vec = data["vec"]
    vec = _rows(vec, vec.ndim == 2, rows)[:, None, None, :] if vec.ndim == 2 else vec
    v = jnp.mean(_dot_cossim(a, vec, cossim_pow), axis=(1, 2))
    return _per_image(v, _n_images(acts, rows))


def _vec_meta(layer_: str, arr: np.ndarray, batched: bool) -> _Meta:
    return _Meta(batch=arr.shape[0] if batched else None, vec_checks=((layer_, arr.shape[-1]),),
                 per_image=("vec",) if batched else ())


def direction(layer: str, vec: Any, *, cossim_pow: float = 0.0) -> Objective:
    """Mean over positions of the dot product of ``layer``'s activation vectors with ``vec``
    (``[C]``, or ``[B, C]`` one per image); with ``cossim_pow > 0`` each dot product is
    multiplied by ``max(0.1, cosine) ** cossim_pow`` (Lucid's ``direction``).

    Example:
      >>> from lucidax import visualize as viz
      >>> import numpy as np
      >>> vec = np.random.default_rng(0).normal(size=64)    # conv3 has 64 channels
      >>> viz.direction("conv3", vec, cossim_pow=1.0).layers
      ('conv3',)
    """
    layer = _check_layer_name(layer)
    arr, batched = _vec(vec)
    return Objective._node(
        _direction_impl, {"vec": arr}, (layer, float(cossim_pow)), (layer,),
        f"direction({layer}{', per-image' if batched else ''})", _vec_meta(layer, arr, batched),
    )


def _direction_neuron_impl(acts, data, static):
    lyr, x, y, cossim_pow = static
    a = _at(acts[lyr], x, y)
    rows = a.shape[0]
    vec = data["vec"]
    vec = _rows(vec, vec.ndim == 2, rows)
    return _per_image(_dot_cossim(a, vec, cossim_pow), _n_images(acts, rows))


def direction_neuron(
    layer: str, vec: Any, x: int | None = None, y: int | None = None, *, cossim_pow: float = 0.0
) -> Objective:
    """Dot product of the activation vector at one position (centre by default) with
    ``vec`` (``[C]`` or ``[B, C]``).

    Args:
      layer: a layer name.
      vec: ``[C]`` direction in the layer's channel space.
      x, y: the position (default: the centre).
      cossim_pow: weight the dot product by ``cos^cossim_pow`` (0: plain dot product).

    Example:
      >>> from lucidax import visualize as viz
      >>> import numpy as np
      >>> obj = viz.direction_neuron("conv3", np.ones(64), x=2, y=2, cossim_pow=1.0)
      >>> obj.layers
      ('conv3',)
    """
    layer = _check_layer_name(layer)
    arr, batched = _vec(vec)
    x, y = _position(x, "x"), _position(y, "y")
    return Objective._node(
        _direction_neuron_impl, {"vec": arr}, (layer, x, y, float(cossim_pow)), (layer,),
        f"direction_neuron({layer})", _vec_meta(layer, arr, batched),
    )


# ---------------------------------------------------------------------------------------------
# classes
# ---------------------------------------------------------------------------------------------
def _class_layer_and_units(model_or_layer: Any, cls: Any) -> tuple[str, Any]:
    if isinstance(model_or_layer, Model):
        model = model_or_layer
        if model.logits_layer is None:
            raise ValueError(
                f"{model.name} has no logits layer; pass the layer name instead: "
                f"class_logit('<layer>', cls). Layers: {', '.join(model.layer_names)}"
            )
        labels = model.labels

        def resolve(c):
            if isinstance(c, str):
                if labels is None:
                    raise ValueError(f"{model.name} has no class labels; give class indices")
                if c not in labels:
                    raise ValueError(suggest(c, labels, what="class label"))
                return labels.index(c)
            return c

        cls = [resolve(c) for c in cls] if isinstance(cls, (list, tuple)) else resolve(cls)
        return model.logits_layer, cls
    return _check_layer_name(model_or_layer, "model_or_layer"), cls


def _class_logit_impl(acts, data, static):
    (lyr,) = static
    a = acts[lyr]
    if a.ndim == 4:
        a = a.mean(axis=(1, 2))
    rows, c = a.shape
    hot = _one_hot(data["unit"], rows, c, a.dtype)
    return _per_image(jnp.sum(a * hot, axis=-1), _n_images(acts, rows))


def class_logit(model_or_layer: Model | str, cls: int | str | Sequence[int | str]) -> Objective:
    """The logit of class ``cls`` (index, label name when the model has labels, or one per
    image). ``model_or_layer``: a Model (its ``logits_layer``) or the logit layer's name.

    Example:
      >>> from lucidax import visualize as viz
      >>> import lucidax.models as lm
      >>> model = lm.load("starter")
      >>> result = viz.render(model, viz.class_logit(model, [3, 7]), size=32, steps=64,
      ...                     progress=False)
      >>> result.images.shape
      (2, 32, 32, 3)
    """
    lyr, cls = _class_layer_and_units(model_or_layer, cls)
    arr, batched, ints = _units(cls, "cls")
    return Objective._node(
        _class_logit_impl, {"unit": arr}, (lyr,), (lyr,),
        f"class_logit({lyr}, {_fmt_units(ints, batched)})", _unit_meta(lyr, arr, batched, ints),
    )


def _class_probability_impl(acts, data, static):
    (lyr,) = static
    a = acts[lyr]
    if a.ndim == 4:
        a = a.mean(axis=(1, 2))
    rows, c = a.shape
    p = jax.nn.softmax(a, axis=-1)
    hot = _one_hot(data["unit"], rows, c, a.dtype)
    return _per_image(jnp.sum(p * hot, axis=-1), _n_images(acts, rows))


def class_probability(
    model_or_layer: Model | str, cls: int | str | Sequence[int | str]
) -> Objective:
    """Softmax probability of class ``cls`` computed from the logit layer (see
    :func:`class_logit`).

    Args:
      model_or_layer: a :class:`lucidax.models.Model` (its logits layer and labels) or a
        layer name.
      cls: a class index or label, or a sequence of them (one per image).

    Example:
      >>> from lucidax import visualize as viz
      >>> import lucidax.models as lm
      >>> model = lm.load("starter")
      >>> viz.class_probability(model, "3").layers
      ('logits',)
    """
    lyr, cls = _class_layer_and_units(model_or_layer, cls)
    arr, batched, ints = _units(cls, "cls")
    return Objective._node(
        _class_probability_impl, {"unit": arr}, (lyr,), (lyr,),
        f"class_probability({lyr}, {_fmt_units(ints, batched)})",
        _unit_meta(lyr, arr, batched, ints),
    )


# ---------------------------------------------------------------------------------------------
# batch-coupling objectives
# ---------------------------------------------------------------------------------------------
def _diversity_impl(acts, data, static):
    (lyr,) = static
    a = _spatial(acts[lyr])
    rows, c = a.shape[0], a.shape[-1]
    b = _n_images(acts, rows)
    flat = a.reshape(b, -1, c)  # an image's crops pooled together
    grams = jnp.einsum("bpc,bpd->bcd", flat, flat)
    norm = jnp.sqrt(jnp.sum(jnp.square(grams), axis=(1, 2), keepdims=True))
    grams = grams / jnp.maximum(norm, 1e-10)
    sims = jnp.einsum("bcd,ecd->be", grams, grams)  # [B, B] cosine similarities
    off = sims * (1.0 - jnp.eye(b, dtype=sims.dtype))
    return -jnp.sum(off, axis=1) / b


def diversity(layer: str) -> Objective:
    """Lucid's diversity: minus the cosine similarity of image ``i``'s Gram matrix of ``layer``
    to the other images' (``-sum_{j != i} cos(G_i, G_j) / B`` for image ``i``; the batch total is
    Lucid's value). Couples the images of a batch: combine with a scalar-unit objective and
    ``batch=n`` to get ``n`` different visualizations of one unit.

    Example:
      >>> from lucidax import visualize as viz
      >>> obj = viz.channel("conv3", [5, 5, 5, 5]) - 0.5 * viz.diversity("conv3")
      >>> obj.name
      'channel(conv3, [5, 5, 5, 5]) - 0.5 * diversity(conv3)'
    """
    layer = _check_layer_name(layer)
    return Objective._node(_diversity_impl, {}, (layer,), (layer,), f"diversity({layer})",
                           _Meta(couples_batch=True))


def _alignment_impl(acts, data, static):
    lyr, decay_ratio = static
    a = acts[lyr]
    b = _n_images(acts, a.shape[0])
    flat = a.reshape(b, -1)
    out = jnp.zeros((b,), a.dtype)
    for d in (1, 2, 3, 4):
        if d >= b:
            break
        mse = jnp.mean(jnp.square(flat[:-d] - flat[d:]), axis=1) / decay_ratio**d  # [b - d]
        half = 0.5 * mse
        out = out.at[:-d].add(half).at[d:].add(half)
    return -out


def alignment(layer: str, decay_ratio: float = 2.0) -> Objective:
    """Lucid's alignment: neighbouring images of the batch (distance ``d`` = 1..4) are pulled
    together, ``-mean((a_i - a_{i+d})**2) / decay_ratio**d`` (each pair's term split between
    its two images). For interpolation batches.

    Args:
      layer: the layer whose activations are aligned between neighbouring images.
      decay_ratio: how fast the penalty decays with the distance between images.

    Example:
      >>> from lucidax import visualize as viz
      >>> obj = viz.channel_interpolate("conv3", 1, "conv3", 9) - 0.1 * viz.alignment("conv3")
      >>> obj.layers
      ('conv3',)
    """
    layer = _check_layer_name(layer)
    return Objective._node(_alignment_impl, {}, (layer, float(decay_ratio)), (layer,),
                           f"alignment({layer})", _Meta(couples_batch=True))


def _interp_impl(acts, data, static):
    l1_, l2_ = static
    a1, a2 = _spatial(acts[l1_]), _spatial(acts[l2_])
    b = _n_images(acts, a1.shape[0])
    v = []
    for a, u in ((a1, data["unit1"]), (a2, data["unit2"])):
        hot = _one_hot(u, a.shape[0], a.shape[-1], a.dtype)
        v.append(_per_image(jnp.einsum("nhwc,nc->n", a, hot) / (a.shape[1] * a.shape[2]), b))
    t = jnp.arange(b, dtype=a1.dtype) / max(b - 1, 1)
    return (1.0 - t) * v[0] + t * v[1]


def channel_interpolate(layer1: str, unit1: int, layer2: str, unit2: int) -> Objective:
    """Interpolate between two channels across the batch: image ``i`` of ``B`` maximizes
    ``(1 - t) * channel(layer1, unit1) + t * channel(layer2, unit2)``, ``t = i / (B - 1)``
    (Lucid's ``channel_interpolate``; combine with :func:`alignment`).

    Example:
      >>> from lucidax import visualize as viz
      >>> import lucidax.models as lm
      >>> model = lm.load("starter")
      >>> obj = viz.channel_interpolate("conv3", 1, "conv4", 9)
      >>> viz.render(model, obj, batch=5, size=32, steps=64, progress=False).images.shape
      (5, 32, 32, 3)
    """
    layer1, layer2 = _check_layer_name(layer1), _check_layer_name(layer2)
    a1, b1, i1 = _units(unit1)
    a2, b2, i2 = _units(unit2)
    if b1 or b2:
        raise ValueError("channel_interpolate takes one unit per layer (ints)")
    meta = _Meta(unit_checks=((layer1, i1), (layer2, i2)), couples_batch=True)
    return Objective._node(
        _interp_impl, {"unit1": a1, "unit2": a2}, (layer1, layer2), (layer1, layer2),
        f"channel_interpolate({layer1}, {i1[0]}, {layer2}, {i2[0]})", meta,
    )


# ---------------------------------------------------------------------------------------------
# image regularizers (penalties: subtract them)
# ---------------------------------------------------------------------------------------------
def _l1_impl(acts, data, static):
    lyr, constant = static
    a = acts[lyr]
    v = jnp.sum(jnp.abs(a - constant).reshape(a.shape[0], -1), axis=1)
    return _per_image(v, _n_images(acts, a.shape[0]))


def l1(layer: str = INPUT, constant: float = 0.5) -> Objective:
    """``sum |x - constant|`` per image (a penalty: subtract it, ``obj - 1e-4 * l1()``).
    Default: the image itself, around mid-grey.

    Args:
      layer: the layer penalized (default: the image itself).

    Example:
      >>> from lucidax import visualize as viz
      >>> (viz.channel("conv3", 5) - 0.1 * viz.l1()).layers
      ('conv3', 'input')
    """
    layer = _check_layer_name(layer)
    return Objective._node(_l1_impl, {}, (layer, float(constant)), (layer,),
                           f"l1({layer})")


def _tv_impl(acts, data, static):
    (lyr,) = static
    a = _spatial(acts[lyr])
    dy = jnp.abs(a[:, 1:] - a[:, :-1]).reshape(a.shape[0], -1).sum(axis=1)
    dx = jnp.abs(a[:, :, 1:] - a[:, :, :-1]).reshape(a.shape[0], -1).sum(axis=1)
    return _per_image(dx + dy, _n_images(acts, a.shape[0]))


def total_variation(layer: str = INPUT) -> Objective:
    """Total variation (sum of absolute differences of neighbouring pixels, as
    ``tf.image.total_variation``) per image: a penalty, subtract it.

    Args:
      layer: the layer penalized (default: the image itself).

    Example:
      >>> from lucidax import visualize as viz
      >>> (viz.channel("conv3", 5) - 0.1 * viz.total_variation()).layers
      ('conv3', 'input')
    """
    layer = _check_layer_name(layer)
    return Objective._node(_tv_impl, {}, (layer,), (layer,), f"total_variation({layer})")


_BLUR = np.asarray([[0.5, 1.0, 0.5], [1.0, 1.0, 1.0], [0.5, 1.0, 0.5]], np.float32)


def _blur(x: jax.Array) -> jax.Array:
    """Lucid's 3x3 blur, normalized at the borders (depthwise, any channel count)."""
    c = x.shape[-1]
    k = jnp.asarray(np.tile(_BLUR[:, :, None, None], (1, 1, 1, c)))
    conv = lambda v: jax.lax.conv_general_dilated(  # noqa: E731
        v, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c
    )
    return conv(x) / conv(jnp.ones_like(x[:1]))


def _blur_impl(acts, data, static):
    (lyr,) = static
    a = _spatial(acts[lyr])
    target = jax.lax.stop_gradient(_blur(a))
    v = 0.5 * jnp.sum(jnp.square(a - target).reshape(a.shape[0], -1), axis=1)
    return _per_image(v, _n_images(acts, a.shape[0]))


def blur_input_each_step(layer: str = INPUT) -> Objective:
    """Lucid's ``blur_input_each_step``: ``0.5 * sum((x - stop_gradient(blur(x)))**2)``.
    A penalty: subtracting ``k`` times it moves the image a step ``k * lr`` towards its blur.

    Args:
      layer: the layer blurred (default: the image itself).

    Example:
      >>> from lucidax import visualize as viz
      >>> (viz.channel("conv3", 5) - 0.1 * viz.blur_input_each_step()).layers
      ('conv3', 'input')
    """
    layer = _check_layer_name(layer)
    return Objective._node(_blur_impl, {}, (layer,), (layer,), f"blur_input_each_step({layer})")


# ---------------------------------------------------------------------------------------------
# matching a target activation (feature inversion, caricatures)
# ---------------------------------------------------------------------------------------------
_MATCH_LOSSES = ("l2", "cosine")


def _flat_pair(acts: Acts, data, lyr: str, what: str):
    a = acts[lyr]
    t = data["target"]
    if a.shape[1:] != t.shape[1:]:
        raise ValueError(
            f"{what}: the activations of {lyr!r} have shape {tuple(a.shape[1:])} per image but "
            f"the target has {tuple(t.shape[1:])}: render at the size the target was computed "
            f"at, with transforms that keep the image size (e.g. pad(k) then jitter(2 * k))."
        )
    rows = a.shape[0]
    t = _rows(jnp.asarray(t, a.dtype), True, rows)
    w = _rows(jnp.asarray(data["weight"], a.dtype), True, rows)
    return a.reshape(rows, -1), t.reshape(rows, -1), w, _n_images(acts, rows)


def _match_impl(acts, data, static):
    lyr, loss = static
    a, t, w, b = _flat_pair(acts, data, lyr, "activation_match")
    if loss == "l2":
        err = jnp.sum(jnp.square(a - t), axis=1)
        v = -err / jnp.maximum(jnp.sum(jnp.square(t), axis=1), 1e-8)
    else:
        eps = 1e-6
        dot = jnp.sum(a * t, axis=1)
        v = dot / (eps + jnp.linalg.norm(a, axis=1)) / (eps + jnp.linalg.norm(t, axis=1))
    return _per_image(w * v, b)


def _dot_impl(acts, data, static):
    lyr, cossim_pow = static
    a, t, w, b = _flat_pair(acts, data, lyr, "activation_dot")
    # Lucid's dot-product-with-cosine weighting, over the whole (flattened) layer; normalized
    # by |target|^2 so that the value is ~1 when the activations equal the target
    v = _dot_cossim(a, t, cossim_pow) / jnp.maximum(jnp.sum(jnp.square(t), axis=1), 1e-8)
    return _per_image(w * v, b)


def _target_args(layer_: str, target: Any, weight: Any, what: str
                 ) -> tuple[dict[str, np.ndarray], _Meta]:
    t = np.asarray(target, np.float32)
    if t.ndim < 2 or t.shape[0] == 0 or t.shape[-1] == 0:
        raise ValueError(
            f"{what}: target must hold one activation per image, [B, H, W, C] (conv) or [B, C] "
            f"(dense); got shape {t.shape}"
        )
    if not np.all(np.isfinite(t)):
        raise ValueError(f"{what}: target contains NaN or inf")
    b = t.shape[0]
    w = np.ones(b, np.float32) if weight is None else np.asarray(weight, np.float32)
    if w.shape != (b,) or not np.all(np.isfinite(w)):
        raise ValueError(f"{what}: weight must be {b} finite per-image numbers (one per target "
                         f"row); got shape {w.shape}")
    meta = _Meta(batch=b, vec_checks=((layer_, t.shape[-1]),), per_image=("target", "weight"))
    return {"target": t, "weight": w}, meta


def activation_match(
    layer: str, target: Any, *, loss: str = "l2", weight: Any = None
) -> Objective:
    """How closely image ``i``'s activations of ``layer`` match ``target[i]`` (maximized).

    ``loss="l2"``: ``-|a - t|^2 / |t|^2`` (Mahendran & Vedaldi's normalized reconstruction
    error, negated; 0 is a perfect match); ``"cosine"``: the cosine similarity of the flattened
    activations (1 is a perfect match).

    ``target`` is ``[B, H, W, C]`` (conv) or ``[B, C]`` (dense), one row per image; ``weight``
    (default ones) is one number per image (0 switches the term off for that image, so one
    objective can give different images different layers). Both are array leaves of the
    objective: other images/targets of the same shape reuse the compiled render program.
    Activations holding ``n`` crops per image compare every crop with the image's target.

    Example:
      >>> from lucidax import visualize as viz
      >>> import numpy as np
      >>> target = np.ones((8, 8, 64), np.float32)
      >>> viz.activation_match("conv3", target).layers
      ('conv3',)
    """
    layer = _check_layer_name(layer)
    if loss not in _MATCH_LOSSES:
        raise ValueError(suggest(loss, _MATCH_LOSSES, what="loss"))
    data, meta = _target_args(layer, target, weight, "activation_match")
    return Objective._node(_match_impl, data, (layer, loss), (layer,),
                           f"activation_match({layer}, {loss})", meta)


def activation_dot(
    layer: str, target: Any, *, cossim_pow: float = 1.0, weight: Any = None
) -> Objective:
    """Lucid's caricature objective: ``<a, t> * max(0.1, cos(a, t)) ** cossim_pow / |t|^2``
    for image ``i``'s flattened activations ``a`` of ``layer`` and ``t = target[i]``
    (maximized; unbounded, so it exaggerates what the layer detects in the target).

    ``target``/``weight`` as in :func:`activation_match` (pass ``target ** power`` for
    Lucid's power-of-the-target variant).

    Example:
      >>> from lucidax import visualize as viz
      >>> import numpy as np
      >>> target = np.ones((8, 8, 64), np.float32)         # a conv3 activation map
      >>> viz.activation_dot("conv3", target, cossim_pow=1.0).layers
      ('conv3',)
    """
    layer = _check_layer_name(layer)
    if not cossim_pow >= 0:
        raise ValueError(f"cossim_pow must be >= 0; got {cossim_pow!r}")
    data, meta = _target_args(layer, target, weight, "activation_dot")
    return Objective._node(_dot_impl, data, (layer, float(cossim_pow)), (layer,),
                           f"activation_dot({layer}, cossim_pow={cossim_pow:g})", meta)


# ---------------------------------------------------------------------------------------------
# user functions
# ---------------------------------------------------------------------------------------------
def _custom_impl(acts, data, static):
    (fn,) = static
    out = jnp.asarray(fn(acts))
    if out.ndim != 1:
        raise ValueError(f"A custom objective must return one value per image [B]; got shape "
                         f"{out.shape}")
    return out
