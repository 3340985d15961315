"""The render engine: optimize image parameters to maximize an objective.

One step, as data::

    params --param.to_image--> images [B, h, w, C] in [0, 1]
      --transforms(per-image keys)--> [B*n, h', w', C] --(resize to the model side)-->
      model.apply(layers=objective.model_layers) --> {layer: acts} (+ "input": images)
      --objective--> [B] --sum--> gradient w.r.t. params only --optax--> params

All of it is ONE jitted program per chunk of ``chunk`` steps (a ``lax.scan``), so Python only
runs between chunks (to advance the progress bar). The static configuration (model function,
parameterization, transforms, optimizer, shapes) is bound outside; the image parameters and
optimizer state are donated; unit indices, directions and objective weights are traced arrays,
so rendering other units with an objective of the same structure reuses the compiled program.

Determinism: image ``i`` draws everything from ``fold_in(key, unit_ids[i])`` (its
initialization from one half of a split, its transforms at step ``s`` from
``fold_in(other half, s)``), so a unit renders the same in a batch of 1 or 508, on 1 or 8
devices (up to float rounding).

Scale-out: with several local devices the batch axis is sharded over all of them
(``NamedSharding(Mesh(devices, ("batch",)), P("batch"))``, model parameters replicated); a
batch that does not divide evenly is padded with copies of its last image, whose results are
dropped.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from lucidax._batching import pad_batch
from lucidax._memory import check_memory, estimate_render
from lucidax.models import Model
from lucidax.models import fastgrad as _fastgrad

from ._param import Param, image
from ._transforms import Compose, Transform, compose, resize, standard_transforms
from .objectives import INPUT, Objective

__all__ = ["DEFAULT_OPTIMIZER", "NonFiniteRenderWarning", "RenderResult", "render"]

#: Lucid's optimizer (Adam, learning rate 0.05); one shared instance so that renders using the
#: default share compiled programs.
DEFAULT_OPTIMIZER: optax.GradientTransformation = optax.adam(0.05)
_ADAM_BY_LR: dict[float, optax.GradientTransformation] = {0.05: DEFAULT_OPTIMIZER}

# Number of times the render chunk program was traced (i.e. compiled); tests read it.
_TRACE_COUNT = {"chunk": 0}


class NonFiniteRenderWarning(RuntimeWarning):
    """Some images of a render produced NaN/inf (they are flagged in ``RenderResult.finite``).

    Example:
      >>> import warnings
      >>> from lucidax.visualize import NonFiniteRenderWarning
      >>> warnings.simplefilter("error", NonFiniteRenderWarning)  # make NaN renders fail loudly
      >>> warnings.resetwarnings()
      >>> issubclass(NonFiniteRenderWarning, RuntimeWarning)
      True
    """


@dataclasses.dataclass(frozen=True, eq=False)
class RenderResult:
    """What :func:`render` returns.

    Attributes:
      images: float32 ``[B, h, w, C]`` in [0, 1] (the final images).
      loss: float32 ``[steps, B]``: the minimized loss (``-objective``) of each image at each
        step (measured on that step's transformed images, before the update).
      objective_values: float32 ``[B]``: the objective of each image at the last step.
      finite: bool ``[B]``: False where the loss trace or the image has NaN/inf.
      failed_units: unit ids of the non-finite images (also reported by a warning).
      unit_ids: int ``[B]``: the id whose key each image used.
      threshold_images: ``{step: [B, h, w, C]}`` images after ``step`` steps, if asked.
      params: the final image parameters (NumPy pytree, leading axis B).
      objective: the objective's description.
      seconds: wall time of the whole call (compilation included).
      devices: number of devices the batch was split over.

    Example:
      >>> import lucidax.models as lm
      >>> from lucidax import visualize as viz
      >>> model = lm.load("starter")
      >>> result = viz.render(model, viz.channel("conv4", [0, 1]), size=32, steps=64,
      ...                     thresholds=(1,), progress=False)
      >>> result.unit_ids.tolist(), bool(result.finite.all()), sorted(result.threshold_images)
      ([0, 1], True, [1])
    """

    images: np.ndarray
    loss: np.ndarray
    objective_values: np.ndarray
    finite: np.ndarray
    failed_units: tuple[int, ...]
    unit_ids: np.ndarray
    threshold_images: dict[int, np.ndarray]
    params: Any
    objective: str
    seconds: float
    devices: int = 1

    @property
    def all_finite(self) -> bool:
        return bool(np.all(self.finite))


# ---------------------------------------------------------------------------------------------
# the jitted programs
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Config:
    """Everything static about a render program (hashable: with the model, it names the
    compiled program: see :func:`_chunk_program`)."""

    model_layers: tuple[str, ...]
    param: Any
    transforms: Any  # callable or None
    keyed: bool  # transforms take a batch of per-image keys (lucidax Transform)
    post: Any  # a keyless Resize applied after unkeyed transforms, or None
    optimizer: Any
    length: int  # steps per chunk (scan length)
    n_thresholds: int
    fast_grads: bool = True  # see lucidax.models.fastgrad
    redirect: bool = False  # redirected ReLU gradients during the first steps


def _fold(keys: jax.Array, step: jax.Array) -> jax.Array:
    return jax.vmap(jax.random.fold_in, (0, None))(keys, step)


def _apply_transforms(cfg: _Config, keys: jax.Array, images: jax.Array) -> jax.Array:
    t = cfg.transforms
    if t is not None:
        if cfg.keyed:
            images = t(keys, images)
        else:  # a plain function: one image (and one key) at a time
            out = jax.vmap(lambda k, im: t(k, im[None]))(keys, images)
            images = out.reshape((-1,) + out.shape[2:])
    if cfg.post is not None:
        images = cfg.post(keys[0], images)
    return images


def _values(cfg: _Config, apply: Callable, image_params, keys, model_params,
            objective: Objective, redirect):
    images = cfg.param.to_image(image_params)
    acts: dict[str, jax.Array] = {}
    if cfg.model_layers:
        x = _apply_transforms(cfg, keys, images)
        def fn(p, im):
            return apply(p, im, cfg.model_layers)

        model_params = jax.lax.stop_gradient(model_params)  # only the image is optimized
        if cfg.fast_grads or cfg.redirect:
            acts.update(_fastgrad.call(fn, model_params, x, fast=cfg.fast_grads,
                                       redirect=redirect if cfg.redirect else None))
        else:
            acts.update(fn(model_params, x))
    acts[INPUT] = images
    return objective(acts), images


def _run_chunk(cfg: _Config, apply: Callable, state, model_params, objective, step_keys, start,
               thresholds, redirect_steps):
    _TRACE_COUNT["chunk"] += 1  # Python side effect: runs once per trace (= compilation)

    def loss(p, keys, redirect):
        vals, images = _values(cfg, apply, p, keys, model_params, objective, redirect)
        return -jnp.sum(vals), (vals, images)

    def body(carry, step):
        p, o, snaps = carry
        redirect = (step < redirect_steps).astype(jnp.float32)
        (_, (vals, images)), grads = jax.value_and_grad(loss, has_aux=True)(
            p, _fold(step_keys, step), redirect
        )
        updates, o = cfg.optimizer.update(grads, o, p)
        p = optax.apply_updates(p, updates)
        if cfg.n_thresholds:
            hit = (thresholds == step).reshape((-1,) + (1,) * images.ndim)
            snaps = jnp.where(hit, images[None], snaps)
        return (p, o, snaps), vals

    steps = start + jnp.arange(cfg.length, dtype=jnp.int32)
    return jax.lax.scan(body, state, steps)


def _chunk_program(model: Model, cfg: _Config) -> Callable:
    """The jitted chunk of ``cfg`` on ``model``'s architecture, made once by
    :meth:`Model.program` (shared by every ``with_params`` copy of the model, freed with the
    last one): ``f(state, model_params, objective, step_keys, start, thresholds,
    redirect_steps)``, its ``state`` (image parameters, optimizer state, snapshots) donated.
    """

    def build(shell: Model) -> Callable:
        return functools.partial(_run_chunk, cfg, shell.apply)

    return model.program(("lucidax.visualize.render", cfg), build, donate_argnums=0)


def _keys(key, ids):
    """Per-image (init, step) keys: both halves of ``split(fold_in(key, unit_id))``."""
    keys = jax.vmap(jax.random.fold_in, (None, 0))(key, ids)
    both = jax.vmap(jax.random.split)(keys)  # [B, 2]
    return both[:, 0], both[:, 1]


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _init_state(param, optimizer, shape, key, ids):
    init_keys, step_keys = _keys(key, ids)
    p = param.init(init_keys, shape)
    return p, optimizer.init(p), step_keys


@functools.partial(jax.jit, static_argnums=0)
def _opt_init(optimizer, p, key, ids):
    return optimizer.init(p), _keys(key, ids)[1]


@functools.partial(jax.jit, static_argnums=0)
def _to_image(param, p):
    return param.to_image(p)


# ---------------------------------------------------------------------------------------------
# argument handling (all before anything is compiled)
# ---------------------------------------------------------------------------------------------
def _as_key(key: Any) -> jax.Array:
    if key is None:
        return jax.random.key(0)
    if isinstance(key, (int, np.integer)):
        return jax.random.key(int(key))
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.ndim != 0:
            raise ValueError(f"key must be a single PRNG key; got shape {key.shape}")
        return key
    if key.shape == (2,) and key.dtype == jnp.uint32:
        return jax.random.wrap_key_data(key)
    raise TypeError(f"key must be jax.random.key(seed), a PRNGKey or an int; got {key!r}")


def _as_optimizer(optimizer: Any) -> optax.GradientTransformation:
    if optimizer is None:
        return DEFAULT_OPTIMIZER
    if isinstance(optimizer, (int, float)) and not isinstance(optimizer, bool):
        lr = float(optimizer)
        if lr not in _ADAM_BY_LR:
            _ADAM_BY_LR[lr] = optax.adam(lr)
        return _ADAM_BY_LR[lr]
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise TypeError(
            f"optimizer must be an optax GradientTransformation (or a learning rate for Adam); "
            f"got {optimizer!r}"
        )
    return optimizer


def _as_hw(size: Any) -> tuple[int, int]:
    hw = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if len(hw) != 2 or any(not isinstance(s, (int, np.integer)) or s < 1 for s in hw):
        raise ValueError(f"size must be a positive int or (height, width); got {size!r}")
    return int(hw[0]), int(hw[1])


def _as_transforms(transforms: Any) -> Any:
    if transforms is None:
        return None
    if isinstance(transforms, (list, tuple)):
        return compose(*transforms) if transforms else None
    if not callable(transforms):
        raise TypeError(f"transforms must be f(key, images) -> images, a list of them or None; "
                        f"got {transforms!r}")
    return transforms


def _batch_and_ids(
    objective: Objective, batch: int | None, unit_ids: Any
) -> tuple[int, np.ndarray]:
    b = objective.batch
    if batch is not None:
        if not isinstance(batch, (int, np.integer)) or batch < 1:
            raise ValueError(f"batch must be a positive int; got {batch!r}")
        if b is not None and batch != b:
            raise ValueError(
                f"batch={batch} but the objective {objective.name!r} has per-image arguments "
                f"for {b} images."
            )
        b = int(batch)
    if unit_ids is not None:
        ids = np.asarray(unit_ids)
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer) or np.any(ids < 0):
            raise ValueError(f"unit_ids must be a 1-d sequence of non-negative ints; got "
                             f"{unit_ids!r}")
        if b is None:
            b = len(ids)
        if len(ids) != b:
            raise ValueError(f"unit_ids has {len(ids)} entries for a batch of {b} images")
        return b, ids.astype(np.int64)
    if b is None:
        b = 1
    own = objective.unit_ids
    if own is not None and len(own) == b and all(u >= 0 for u in own):
        return b, np.asarray(own, np.int64)
    return b, np.arange(b, dtype=np.int64)


def _resize_target(hw: tuple[int, int], side: int) -> tuple[int, int] | None:
    """lucent's rule: images smaller than the model side are upsampled (to side x side for
    square images; the short side to ``side`` keeping the aspect ratio otherwise)."""
    if min(hw) >= side:
        return None
    if hw[0] == hw[1]:
        return side, side
    s = side / min(hw)
    return max(side, round(hw[0] * s)), max(side, round(hw[1] * s))


def _out_shape(transforms, keyed, key, shape) -> tuple[int, ...]:
    if transforms is None:
        return shape
    b = shape[0]
    keys = jax.eval_shape(lambda k: jax.random.split(k, b), key)
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    if keyed:
        out = jax.eval_shape(transforms, keys, x)
        return tuple(out.shape)
    out = jax.eval_shape(lambda k, im: jax.vmap(lambda kk, i: transforms(kk, i[None]))(k, im),
                         keys, x)
    return (out.shape[0] * out.shape[1],) + tuple(out.shape[2:])


def _mesh_for(devices: Sequence[Any] | None, b: int, couples: bool) -> tuple[Mesh | None, int]:
    devs = list(jax.local_devices() if devices is None else devices)
    if not devs:
        raise ValueError("devices: empty list")
    if len(devs) == 1:
        return (Mesh(np.asarray(devs), ("batch",)) if devices is not None else None), b
    if b % len(devs) and couples:
        warnings.warn(
            f"batch {b} does not divide over {len(devs)} devices and the objective couples "
            f"the images of the batch (no padding possible): rendering on one device.",
            stacklevel=3,
        )
        return Mesh(np.asarray(devs[:1]), ("batch",)), b
    padded = math.ceil(b / len(devs)) * len(devs)
    return Mesh(np.asarray(devs), ("batch",)), padded


def _place(tree: Any, mesh: Mesh | None, batched_rows: int | None):
    """Shard leaves whose leading axis is ``batched_rows`` over the mesh; replicate the rest."""
    if mesh is None:
        return tree
    shard = NamedSharding(mesh, P("batch"))
    rep = NamedSharding(mesh, P())

    def put(a):
        a = jnp.asarray(a) if not isinstance(a, jax.Array) else a
        batched = batched_rows is not None and a.ndim >= 1 and a.shape[0] == batched_rows
        return jax.device_put(a, shard if batched else rep)

    return jax.tree.map(put, tree)


def _host(tree: Any, b: int):
    return jax.tree.map(lambda a: np.asarray(a)[:b] if np.ndim(a) >= 1 else np.asarray(a), tree)


# ---------------------------------------------------------------------------------------------
# render
# ---------------------------------------------------------------------------------------------

MAX_STEPS_ENV = "LUCIDAX_MAX_STEPS"


def max_steps() -> int | None:
    """The cap on optimization steps set by ``LUCIDAX_MAX_STEPS`` (None when unset).

    For smoke tests of scripts and documentation (the README test runs every example with
    ``LUCIDAX_MAX_STEPS=2``): every render, inversion and gallery runs at most this many steps,
    whatever it asks for. A value that is not a positive integer is refused.
    """
    raw = os.environ.get(MAX_STEPS_ENV, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{MAX_STEPS_ENV} must be a positive integer; got {raw!r}")
    return value


def render(
    model: Model,
    params: Any = None,
    objective: Objective | None = None,
    *,
    param: Param | None = None,
    transforms: Any = standard_transforms,
    optimizer: optax.GradientTransformation | float | None = None,
    steps: int = 512,
    size: int | tuple[int, int] = 128,
    batch: int | None = None,
    key: Any = None,
    unit_ids: Sequence[int] | None = None,
    model_side: int | bool | None = None,
    chunk: int = 64,
    progress: bool = True,
    thresholds: Sequence[int] | None = None,
    init: Any = None,
    devices: Sequence[Any] | None = None,
    redirected_relu_steps: int = 0,
    fast_grads: bool = True,
    memory_check: bool = True,
) -> RenderResult:
    """Render ``objective`` on ``model``: optimize images to maximize it.

    Args:
      model: a :class:`lucidax.models.Model`.
      params: the model parameters (None: ``model.params``). ``render(model, objective)``
        also works.
      objective: an :class:`~lucidax.visualize.objectives.Objective` (per-image units give a
        batch of different units in one pass).
      param: image parameterization (default ``image()``: Lucid's decorrelated Fourier
        image with a sigmoid).
      transforms: ``f(key, images) -> images`` applied every step (default Lucid's
        ``standard_transforms``); a list is composed; None for no transforms.
      optimizer: an optax optimizer (default Adam 0.05), or a float: Adam with that learning
        rate. Pass the same optimizer object again to reuse the compiled program.
      steps: optimization steps (capped by the environment variable ``LUCIDAX_MAX_STEPS``
        when it is set: see ``lucidax.visualize.max_steps``).
      size: side (or ``(h, w)``) of the parameterized image.
      batch: number of images (default: the objective's per-image length, else 1).
      key: ``jax.random.key`` (default ``key(0)``); image ``i`` uses
        ``fold_in(key, unit_ids[i])``.
      unit_ids: per-image ids for the keys (default: the objective's units, else
        ``0..B-1``).
      model_side: upsample (bilinear) the transformed image to this side when it is smaller
        (lucent's 128 -> 224); None: ``model.input_spec.side``; 0/False: never resize.
      chunk: steps per compiled chunk (the progress bar advances between chunks).
      progress: show a tqdm progress bar.
      thresholds: also return the images after these numbers of steps (``0..steps``).
      init: initial image parameters (a pytree as ``param.init`` makes, leading axis B)
        instead of a random initialization.
      devices: devices to split the batch over (default: all local devices).
      redirected_relu_steps: during the first this many steps, ReLUs of the model pass
        Lucid's "redirected" gradient to images whose gradient they block entirely (helps
        units that the initial image does not activate at all). 0: off.
      fast_grads: compute the model's convolution and max-pool input gradients with
        formulations that XLA:CPU runs 1.5-3x faster inside the optimization loop (same
        values up to float rounding; see ``lucidax.models.fastgrad``). False: JAX's
        standard gradients.
      memory_check: raise ``lucidax._memory.InsufficientMemoryError`` (a ValueError),
        before allocating anything, when the render's estimated memory need exceeds the
        available memory (see ``lucidax._memory``). False: try anyway.

    Returns:
      A :class:`RenderResult`. Images whose loss or pixels became NaN/inf are flagged
      (``finite``, ``failed_units``) and a :class:`NonFiniteRenderWarning` is emitted.

    Raises (before compiling anything): ``UnknownLayerError`` for a layer the model lacks,
    ``ValueError`` for a unit out of range, a batch mismatch or bad sizes.

    Example:
      >>> import lucidax.models as lm
      >>> from lucidax import visualize as viz
      >>> model = lm.load("starter")
      >>> result = viz.render(model, viz.channel("conv4", [0, 1, 2, 3]), size=48, steps=128,
      ...                     progress=False)
      >>> result.images.shape, result.images.dtype, result.unit_ids.tolist()
      ((4, 48, 48, 3), dtype('float32'), [0, 1, 2, 3])
    """
    t_start = time.perf_counter()
    if isinstance(params, Objective) and objective is None:
        params, objective = None, params
    if not isinstance(model, Model):
        raise TypeError(f"model must be a lucidax Model (see lucidax.models.load / wrap); got "
                        f"{type(model).__name__}")
    if not isinstance(objective, Objective):
        raise TypeError(f"objective must be an Objective (e.g. objectives.channel(layer, unit)); "
                        f"got {objective!r}")
    objective.validate(model)
    model_params = model.params if params is None else params
    param = image() if param is None else param
    if not (hasattr(param, "init") and hasattr(param, "to_image")):
        raise TypeError(f"param must be a Param (init, to_image); got {param!r}")
    optimizer = _as_optimizer(optimizer)
    transforms = _as_transforms(transforms)
    if not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be a positive int; got {steps!r}")
    if not isinstance(redirected_relu_steps, (int, np.integer)) or redirected_relu_steps < 0:
        raise ValueError(f"redirected_relu_steps must be an int >= 0; got "
                         f"{redirected_relu_steps!r}")
    if not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ValueError(f"chunk must be a positive int; got {chunk!r}")
    thr = sorted({int(t) for t in thresholds}) if thresholds else []
    if any(t < 0 or t > steps for t in thr):
        raise ValueError(f"thresholds must be step counts in 0..{steps}; got {thresholds!r}")
    asked = {t: t for t in thr}  # returned snapshot key -> step it is taken at
    cap = max_steps()
    if cap is not None and steps > cap:  # smoke runs: thresholds past the cap map onto it
        steps, asked = cap, {t: min(t, cap) for t in thr}
        thr = sorted(set(asked.values()))
    steps, chunk = int(steps), int(min(chunk, steps))
    h, w = _as_hw(size)
    c = model.input_spec.channels
    b, ids = _batch_and_ids(objective, batch, unit_ids)
    key = _as_key(key)

    # transforms (+ upsampling to the model side, fused into the transforms' single gather)
    keyed = isinstance(transforms, Transform)
    side = model.input_spec.side if model_side is None else (int(model_side or 0) or None)
    post = None
    if objective.model_layers:
        out_hw = _out_shape(transforms, keyed, key, (1, h, w, c))[1:3]
        target = _resize_target(tuple(out_hw), side) if side else None
        if target is not None:
            if transforms is None:
                transforms, keyed = resize(target), True
            elif isinstance(transforms, Compose):  # fuse into the chain's single resampling
                transforms = compose(*transforms.transforms, resize(target), fuse=transforms.fuse)
            elif keyed:
                transforms = compose(transforms, resize(target))
            else:
                post = resize(target)
            out_hw = target
        if min(out_hw) < model.input_spec.min_side:
            raise ValueError(
                f"{model.name} needs images of at least {model.input_spec.min_side}px; the "
                f"transformed images are {out_hw[0]}x{out_hw[1]} (size={size}, model_side="
                f"{model_side})."
            )

    # devices, padding
    mesh, bp = _mesh_for(devices, b, objective.couples_batch)
    n_dev = 1 if mesh is None else mesh.devices.size
    obj = objective.pad_batch(bp) if (bp != b and objective.batch is not None) else objective
    ids_p = pad_batch(ids, bp)
    ids_arr = jnp.asarray(ids_p, jnp.uint32)

    if memory_check:
        check_memory(estimate_render(model, objective.model_layers, batch=bp, size=max(h, w),
                                     model_side=side or 0, transforms=transforms is not None),
                     f"rendering {b} images at {h}x{w} px", hint="lower size or the batch")

    cfg = _Config(
        model_layers=objective.model_layers,
        param=param,
        transforms=transforms,
        keyed=keyed,
        post=post,
        optimizer=optimizer,
        length=chunk,
        n_thresholds=len(thr),
        fast_grads=bool(fast_grads),
        redirect=redirected_relu_steps > 0,
    )

    # initial state
    if init is None:
        p0, o0, step_keys = _init_state(param, optimizer, (bp, h, w, c), key, ids_arr)
    else:
        p0 = jax.tree.map(jnp.asarray, init)
        lead = {np.shape(a)[0] if np.ndim(a) else None for a in jax.tree.leaves(p0)}
        if lead != {b}:
            raise ValueError(f"init: every array must have leading axis {b} (the batch); got "
                             f"leading sizes {sorted(map(str, lead))}")
        if bp != b:
            p0 = jax.tree.map(lambda a: jnp.asarray(pad_batch(np.asarray(a), bp)), p0)
        o0, step_keys = _opt_init(optimizer, p0, key, ids_arr)
    state = _place((p0, o0), mesh, bp)
    snaps0 = jnp.zeros((len(thr), bp, h, w, c), jnp.float32) if thr else ()
    if thr and mesh is not None:  # snapshots are [T, B, ...]: shard their second axis
        snaps0 = jax.device_put(snaps0, NamedSharding(mesh, P(None, "batch")))
    state = (*state, snaps0)
    model_params = _place(model_params, mesh, None)
    obj_arg = _place(obj, mesh, None)
    step_keys = _place(step_keys, mesh, bp)
    thr_arr = _place(jnp.asarray(thr if thr else [0], jnp.int32), mesh, None)
    redirect_arr = _place(jnp.int32(redirected_relu_steps), mesh, None)

    # the loop: one jitted scan per chunk
    from tqdm.auto import tqdm

    vals_chunks: list[np.ndarray] = []
    bar = tqdm(total=steps, desc=f"render {objective.name}"[:60], unit="step",
               disable=not progress, leave=False)
    done = 0
    try:
        while done < steps:
            n = min(chunk, steps - done)
            run_cfg = cfg if n == chunk else dataclasses.replace(cfg, length=n)
            state, vals = _chunk_program(model, run_cfg)(
                state, model_params, obj_arg, step_keys, jnp.int32(done), thr_arr, redirect_arr)
            vals_np = np.asarray(vals)[:, :b]
            vals_chunks.append(vals_np)
            done += n
            bar.update(n)
            if progress:
                bar.set_postfix(objective=f"{float(np.nanmean(vals_np[-1])):.4g}")
    finally:
        bar.close()

    p_final, _, snaps = state
    images = np.asarray(_to_image(param, p_final), np.float32)[:b]
    values = np.concatenate(vals_chunks, axis=0).astype(np.float32)  # [steps, B]
    snap_dict: dict[int, np.ndarray] = {}
    for i, t in enumerate(thr):
        snap_dict[t] = images.copy() if t == steps else np.asarray(snaps[i], np.float32)[:b]
    snap_dict = {t: snap_dict[at] for t, at in asked.items()}
    finite = np.all(np.isfinite(values), axis=0) & np.all(
        np.isfinite(images.reshape(b, -1)), axis=1
    )
    failed = tuple(int(u) for u in ids[~finite])
    if failed:
        shown = ", ".join(map(str, failed[:20])) + (", ..." if len(failed) > 20 else "")
        warnings.warn(
            f"render {objective.name!r}: {len(failed)} of {b} images became NaN/inf (unit ids "
            f"{shown}); they are flagged in RenderResult.finite / failed_units.",
            NonFiniteRenderWarning,
            stacklevel=2,
        )
    return RenderResult(
        images=images,
        loss=-values,
        objective_values=values[-1].copy(),
        finite=finite,
        failed_units=failed,
        unit_ids=ids,
        threshold_images=snap_dict,
        params=_host(p_final, b),
        objective=objective.name,
        seconds=time.perf_counter() - t_start,
        devices=n_dev,
    )
