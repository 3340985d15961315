"""The model API every other part of lucidax builds on.

A :class:`Model` bundles a parameter pytree with a *pure* function
``apply(params, images, layers) -> {layer_name: activations}``:

* ``images`` are float ``[N, H, W, C]`` in the model's value range (``[0, 1]`` for the zoo
  models); the model applies its own preprocessing (mean/std, ``x * 255 - 117``, ...).
* convolutional activations come back NHWC, dense ones ``[N, C]``.
* the forward pass stops after the deepest layer asked for, so asking for an early layer
  never pays for the rest of the network.

Architectures are written as Flax linen modules whose ``__call__(x, layers)`` records named
outputs through a :class:`Taps` object and returns as soon as every requested layer is seen.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

__all__ = [
    "InputSpec",
    "LayerInfo",
    "Model",
    "Taps",
    "UnknownLayerError",
    "normalize_layers",
    "suggest",
]

Params = Any
Activations = dict[str, jax.Array]
ApplyFn = Callable[[Params, jax.Array, tuple[str, ...]], Activations]


class UnknownLayerError(KeyError, ValueError):
    """A layer name that the model does not expose (the message lists the valid ones).

    Both a ``KeyError`` and a ``ValueError``, so either ``except`` catches it.

    Example:
      >>> import lucidax.models as lm
      >>> model = lm.load("starter")
      >>> model.channels("conv9")
      Traceback (most recent call last):
      ...
      lucidax.models._base.UnknownLayerError: Unknown layer 'conv9'. Did you mean 'conv5', ...
    """

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


def suggest(name: str, choices: Iterable[str], *, what: str = "name") -> str:
    """Error text for an unknown ``name``: close matches first, then every valid choice.

    Args:
      name: the unknown name the user gave.
      choices: the valid names (at most 80 are listed in the text).
      what: what a name is, for the text (``"layer"``, ``"model"``...).

    Returns:
      ``"Unknown <what> '<name>'. Did you mean ...? Valid <what>s: ..."`` (the "Did you mean"
      part only when some choice is close).

    Example:
      >>> from lucidax.models import suggest
      >>> suggest("lgits", ["conv1", "conv2", "logits"], what="layer")
      "Unknown layer 'lgits'. Did you mean 'logits'? Valid layers: conv1, conv2, logits"
    """
    choices = list(choices)
    close = difflib.get_close_matches(str(name), choices, n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    shown = ", ".join(choices) if len(choices) <= 80 else ", ".join(choices[:80]) + ", ..."
    return f"Unknown {what} {name!r}.{hint} Valid {what}s: {shown}"


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """What a model expects as input.

    Attributes:
      side: natural input side in pixels (images are square), or None when any size works.
      channels: number of input channels (3 for RGB, 1 for grayscale, anything else).
      value_range: range of the pixel values ``apply`` takes (before the model's own
        preprocessing).
      normalization: human-readable description of the preprocessing ``apply`` performs.
      min_side: smallest side the architecture accepts (pooling stacks need some size).

    Example:
      >>> import lucidax.models as lm
      >>> spec = lm.load("starter").input_spec
      >>> spec.side, spec.channels, spec.value_range, spec.min_side
      (64, 3, (0.0, 1.0), 16)
      >>> lm.InputSpec(side=None, channels=1).value_range  # any size, grayscale
      (0.0, 1.0)
    """

    side: int | None
    channels: int = 3
    value_range: tuple[float, float] = (0.0, 1.0)
    normalization: str = "none"
    min_side: int = 1


@dataclasses.dataclass(frozen=True)
class LayerInfo:
    """Static facts about one named layer (shape for a given input side: ``model.layer_shape``).

    Attributes:
      name: the layer name, as ``Model.apply`` takes it.
      kind: ``"conv"`` (activations ``[N, H, W, C]``) or ``"dense"`` (activations ``[N, C]``).
      channels: number of channels (units) ``C`` of the activations.
      pre_relu: True for the pre-activation twin of a block output (``"conv3_pre_relu"``).

    Example:
      >>> import lucidax.models as lm
      >>> lm.load("starter").layers["conv3"]
      LayerInfo(name='conv3', kind='conv', channels=64, pre_relu=False)
    """

    name: str
    kind: str  # "conv" (NHWC activations) or "dense" ([N, C] activations)
    channels: int
    pre_relu: bool = False  # True for the pre-activation twin of a block output


def normalize_layers(layers: str | Sequence[str] | None, valid: Sequence[str]) -> tuple[str, ...]:
    """Validate and canonicalize a ``layers`` argument into a tuple of unique names.

    Args:
      layers: a layer name, a comma-separated string of names (``"conv2,conv3"``), a sequence
        of names, or ``None`` / ``"all"`` for every layer.
      valid: the names the model exposes (``model.layer_names``), in forward order.

    Returns:
      The requested names as a tuple, in the order given, duplicates dropped (every name of
      ``valid`` for ``None`` / ``"all"``).

    Raises:
      UnknownLayerError: a name not in ``valid`` (the message lists the valid ones).
      TypeError: a name that is not a string.
      ValueError: no name at all (an empty string or sequence).

    Example:
      >>> from lucidax.models import normalize_layers
      >>> normalize_layers("conv2, conv1,conv2", ["conv1", "conv2", "logits"])
      ('conv2', 'conv1')
      >>> normalize_layers(None, ["conv1", "conv2", "logits"])
      ('conv1', 'conv2', 'logits')
    """
    if layers is None or (isinstance(layers, str) and layers == "all"):
        return tuple(valid)
    if isinstance(layers, str):
        layers = [s.strip() for s in layers.split(",") if s.strip()]
    out: list[str] = []
    valid_set = set(valid)
    for name in layers:
        if not isinstance(name, str):
            raise TypeError(f"Layer names must be strings, got {type(name).__name__}: {name!r}")
        if name not in valid_set:
            raise UnknownLayerError(suggest(name, valid, what="layer"))
        if name not in out:
            out.append(name)
    if not out:
        raise ValueError(f"No layers requested. Valid layers: {', '.join(valid)}")
    return tuple(out)


class Taps:
    """Collects named intermediate outputs during a forward pass and says when to stop.

    Usage inside a module's ``__call__``::

        taps = Taps(layers)
        x = conv(x)
        if taps("conv1", x):
            return taps.out

    ``taps(name, x)`` records ``x`` when ``name`` is wanted and returns True once every wanted
    layer is recorded (the forward pass can stop there).

    Args:
      layers: the names of the layers to record.

    Attributes:
      wanted: the names to record (a frozenset).
      out: ``{name: activations}`` recorded so far.
      done: True once every wanted layer is recorded.

    Example:
      >>> import jax.numpy as jnp
      >>> from lucidax.models import Taps
      >>> taps = Taps(["conv1", "conv2"])
      >>> taps("conv1", jnp.ones((1, 8, 8, 4))), taps("conv2", jnp.ones((1, 4, 4, 8)))
      (False, True)
      >>> {name: x.shape for name, x in taps.out.items()}
      {'conv1': (1, 8, 8, 4), 'conv2': (1, 4, 4, 8)}
    """

    def __init__(self, layers: Iterable[str]):
        self.wanted = frozenset(layers)
        self.out: dict[str, jax.Array] = {}

    def __call__(self, name: str, x: jax.Array) -> bool:
        if name in self.wanted:
            self.out[name] = x
        return self.done

    @property
    def done(self) -> bool:
        return len(self.out) == len(self.wanted)


class Model:
    """A CNN exposing its activations by layer name.

    Get one with :func:`load` (the zoo) or :func:`wrap` (your own Flax module or function);
    the constructor is what those use.

    Args:
      name: registry name (or the user's name for a wrapped model).
      apply_fn: the pure forward function ``apply_fn(params, images, layers) ->
        {name: activations}`` (``images`` ``[N, H, W, C]``, ``layers`` a tuple of names); it
        may stop after the deepest layer asked for.
      params: parameter pytree (a nested dict of arrays).
      layers: one :class:`LayerInfo` per exposed layer, in forward (input to output) order.
      input_spec: what the model takes, an :class:`InputSpec`.
      logits_layer: name of the class-logit layer, or None.
      labels: class names for ``logits_layer`` when known.
      weights_source: where the weights come from, for manifests (``"starter.safetensors
        sha256:..."``, ``"random(seed=0)"``, ``"user"``).
      early_stop: True when ``apply_fn`` stops after the deepest requested layer.

    Attributes:
      name: registry name (or the user's name for a wrapped model).
      params: parameter pytree (a nested dict of arrays).
      layer_names: ordered (input to output) names accepted by ``apply``.
      input_spec: :class:`InputSpec`.
      layers: ``{name: LayerInfo}``.
      logits_layer: name of the class-logit layer, or None.
      labels: class names for ``logits_layer`` when known (a tuple).
      weights_source: where the weights come from.
      early_stop: whether a forward pass stops after the deepest requested layer.

    Example:
      >>> import jax.numpy as jnp
      >>> import lucidax.models as lm
      >>> model = lm.load("starter")
      >>> acts = model.apply(model.params, jnp.zeros((2, 64, 64, 3)), ("conv3", "logits"))
      >>> {name: a.shape for name, a in acts.items()}
      {'conv3': (2, 16, 16, 64), 'logits': (2, 10)}
      >>> model.layer_shape("conv3", side=32), model.channels("logits")
      ((8, 8, 64), 10)
    """

    def __init__(
        self,
        *,
        name: str,
        apply_fn: ApplyFn,
        params: Params,
        layers: Sequence[LayerInfo],
        input_spec: InputSpec,
        logits_layer: str | None = None,
        labels: Sequence[str] | None = None,
        weights_source: str | None = None,
        early_stop: bool = True,
    ):
        self.name = name
        self._apply_fn = apply_fn
        self.params = params
        self.layers: dict[str, LayerInfo] = {info.name: info for info in layers}
        self.layer_names: tuple[str, ...] = tuple(info.name for info in layers)
        self.input_spec = input_spec
        self.logits_layer = logits_layer
        self.labels = tuple(labels) if labels is not None else None
        self.weights_source = weights_source
        self.early_stop = early_stop
        # Compiled programs of this architecture, shared by every with_params copy (the dict
        # is copied by reference) and freed with the last copy: see `program`.
        self._programs: dict[Any, Callable[..., Any]] = {}
        # Activation shapes {(layer, side): shape} (see `layer_shape`), shared the same way.
        self._shapes: dict[tuple[str, int], tuple[int, ...]] = {}

    def program(self, key: Any, build: Callable[[Model], Callable[..., Any]],
                **jit_options: Any) -> Callable:
        """The compiled program ``key`` of this architecture: ``jax.jit(build(shell))``, made
        once and reused.

        The one policy of lucidax for "a compiled program per model" (render, attribution,
        extraction, TCAV, dissection and the gallery use it):

        - ``shell`` is this model without parameters (``with_params(None)``): ``build`` must
          return a function that takes the parameters as an argument, so they are traced, and
          new weights (a ``with_params`` copy, a randomized model) reuse the program;
        - ``key`` names the static configuration (layers, options, shapes that change the
          program): hashable, without arrays;
        - the programs live with the model: every ``with_params`` copy shares them, and they
          are freed with the last copy (nothing global holds a model alive);
        - ``jit_options`` go to ``jax.jit`` (e.g. ``donate_argnums``); they are part of the
          program, so one ``key`` always comes with the same options.
        """
        fn = self._programs.get(key)
        if fn is None:
            fn = jax.jit(build(self.with_params(None)), **jit_options)
            self._programs[key] = fn
        return fn

    def __repr__(self) -> str:
        n = sum(int(np.prod(np.shape(p))) for p in jax.tree_util.tree_leaves(self.params))
        return (
            f"Model({self.name!r}, {len(self.layer_names)} layers, {n:,} parameters, "
            f"input {self.input_spec.side}px x {self.input_spec.channels}ch)"
        )

    # -- the pure function -------------------------------------------------------------------
    def apply(
        self, params: Params, images: jax.Array, layers: str | Sequence[str] | None = None
    ) -> Activations:
        """Activations of ``layers`` for ``images`` (float NHWC in ``input_spec.value_range``).

        Pure and jittable (``layers`` must then be static). Computation stops after the
        deepest requested layer. Returns a dict in the order of ``layers``.

        Args:
          params: the parameter pytree (``model.params``, or other weights of this
            architecture: an argument, so it can be differentiated or traced).
          images: float ``[N, H, W, C]`` in ``input_spec.value_range``, at least
            ``input_spec.min_side`` px on each side.
          layers: a name, a comma-separated string, a sequence of names, or None / ``"all"``
            for every layer.

        Returns:
          ``{layer: activations}``: ``[N, H', W', C]`` for conv layers, ``[N, C]`` for dense
          ones.

        Raises:
          UnknownLayerError: a layer the model does not expose.
          ValueError: ``images`` is not ``[N, H, W, C]`` with the model's channels, or is too
            small.
          TypeError: ``images`` is not floating point.
        """
        names = normalize_layers(layers, self.layer_names)
        images = self._check_images(images)
        acts = self._apply_fn(params, images, names)
        return {name: acts[name] for name in names}

    __call__ = apply

    def _check_images(self, images: Any) -> jax.Array:
        images = jnp.asarray(images)
        if images.ndim != 4:
            raise ValueError(
                f"{self.name}: images must be a batch [N, H, W, C]; got shape {images.shape}"
            )
        c = self.input_spec.channels
        if images.shape[-1] != c:
            raise ValueError(
                f"{self.name}: expected {c} input channel(s) (NHWC, channels last); got "
                f"shape {images.shape}"
            )
        h, w = images.shape[1:3]
        if min(h, w) < self.input_spec.min_side:
            raise ValueError(
                f"{self.name}: images must be at least {self.input_spec.min_side}px on each "
                f"side; got {h}x{w}"
            )
        if not jnp.issubdtype(images.dtype, jnp.floating):
            raise TypeError(
                f"{self.name}: images must be floating point in {self.input_spec.value_range}; "
                f"got dtype {images.dtype} (convert uint8 with images / 255.0)"
            )
        return images

    # -- conveniences ------------------------------------------------------------------------
    def deepest(self, layers: Sequence[str]) -> str:
        """The latest (in forward order) of ``layers``."""
        names = normalize_layers(layers, self.layer_names)
        return max(names, key=self.layer_names.index)

    def channels(self, layer: str) -> int:
        """Number of channels (units) of ``layer``."""
        (layer,) = normalize_layers([layer], self.layer_names)
        return self.layers[layer].channels

    def layer_shape(self, layer: str, side: int | None = None) -> tuple[int, ...]:
        """Activation shape (without batch) of ``layer`` for a square input of ``side`` px.

        Traced once per ``(layer, side)`` for the architecture (every ``with_params`` copy
        shares the answers)."""
        (layer,) = normalize_layers([layer], self.layer_names)
        side = side or self.input_spec.side or 64
        shape = self._shapes.get((layer, side))
        if shape is None:
            x = jax.ShapeDtypeStruct((1, side, side, self.input_spec.channels), jnp.float32)
            out = jax.eval_shape(lambda p, im: self._apply_fn(p, im, (layer,)), self.params, x)
            shape = self._shapes[(layer, side)] = tuple(out[layer].shape[1:])
        return shape

    def with_params(self, params: Params) -> Model:
        """A copy of this model using ``params``."""
        new = object.__new__(Model)
        new.__dict__.update(self.__dict__)
        new.params = params
        return new

    def num_params(self) -> int:
        """Number of parameters (scalars in every array of ``params``)."""
        return sum(int(np.prod(np.shape(p))) for p in jax.tree_util.tree_leaves(self.params))


def flatten_params(params: Mapping[str, Any], sep: str = "/") -> dict[str, np.ndarray]:
    """Nested dict of arrays -> flat ``{"a/b/kernel": array}`` (the on-disk layout).

    Args:
      params: a parameter pytree: nested mappings (dicts, Flax ``FrozenDict``) of arrays.
      sep: the separator joining the keys of each path.

    Returns:
      ``{joined path: numpy array}``.

    Example:
      >>> import lucidax.models as lm
      >>> flat = lm.flatten_params(lm.load("starter").params)
      >>> sorted(flat)[:2], flat["conv1/kernel"].shape
      (['conv1/bias', 'conv1/kernel'], (3, 3, 3, 24))
    """
    flat = traverse_util.flatten_dict(_as_dict(params), sep=sep)
    return {k: np.asarray(v) for k, v in flat.items()}


def unflatten_params(flat: Mapping[str, Any], sep: str = "/") -> dict[str, Any]:
    """Inverse of :func:`flatten_params`: flat ``{"a/b/kernel": array}`` -> nested dicts.

    Args:
      flat: ``{joined path: array}``.
      sep: the separator the keys are split on.

    Returns:
      The nested dict of arrays (the arrays themselves are not copied).

    Example:
      >>> import numpy as np
      >>> from lucidax.models import unflatten_params
      >>> flat = {"conv1/kernel": np.zeros((3, 3, 3, 8)), "conv1/bias": np.zeros(8)}
      >>> params = unflatten_params(flat)
      >>> params["conv1"]["kernel"].shape
      (3, 3, 3, 8)
    """
    return traverse_util.unflatten_dict(dict(flat), sep=sep)


def _as_dict(tree: Any) -> Any:
    """Mappings of any kind as plain dicts (``flatten_dict`` walks dicts and FrozenDicts)."""
    if isinstance(tree, Mapping):
        return {k: _as_dict(v) for k, v in tree.items()}
    return tree
