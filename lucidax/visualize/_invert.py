"""Feature inversion and caricatures: what a layer keeps of an image, and what it sees in it.

* :func:`invert` (Mahendran & Vedaldi 2015): start from noise and optimize an image whose
  activations at ``layer`` match those of the original (normalized L2 or cosine), under
  image priors (total variation, the decorrelated Fourier parameterization, optional
  jitter).
* :func:`caricature` (Lucid's recipe): start from noise and maximize the dot product of the
  activations with (a power of) the original's, weighted by their cosine similarity: the
  features the layer detects in the image, exaggerated.

Both build one :class:`~lucidax.visualize.objectives.Objective` and call
:func:`~lucidax.visualize.render` (its parameterizations, transforms and jitted loop).
The target activations are computed once, before the loop, and enter the objective as array
leaves (:func:`~lucidax.visualize.activation_match`), so other images of the same
size reuse the compiled program.

**Several layers in one call.** Two layouts give the same images (row ``r = i * L + l``,
image ``i`` from layer ``l``, draws its noise from ``fold_in(key, r)`` either way):

* one render of the whole ``images x layers`` batch, whose objective sums one term per layer
  with per-row weights 1 on that layer's rows and 0 elsewhere: ONE compiled program, but
  every row runs the model (forward and backward) up to the deepest requested layer;
* one render per layer: L compiled programs, each row runs only up to its own layer.

Measured on the starter model (2 CPU cores shared with other jobs, 4 images x conv1..conv5,
fresh processes, compilation included; ``scripts/invert_demo.py --layout-only``): 256 steps,
one render 24 s (36-43 s under heavy load) vs one per layer 17 s (31-33 s); 64 steps, 10 s vs
9 s at low load but 14-19 s vs 22-24 s under heavy load (compiling five programs is what
costs). Per step one render per layer is ~2x faster (its shallow rows stop early).
``per_layer=None`` (default) uses one render per layer from 64 steps, one render below (short
runs, where compilation dominates); True/False force a layout.

The image is inverted at its own size: targets are computed on the images as given and the
render never resizes them (``model_side=False``). No transforms by default: the targets are
aligned with the original pixel for pixel, and on the starter model a random shift of even
1 px (:func:`shift`, which keeps the size) cost 6.5 dB of PSNR at ``conv1`` and moved deeper
layers by -1.1 to +0.6 dB; total variation is the default prior.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from lucidax.models import Model, normalize_layers

from .._fields import MEMORY_HELP, WEIGHTS_HELP, flag
from .._files import (
    UnreadableImageError,
    check_image,
    check_int,
    load_image,
    match_channels,
    prepare_out_dir,
    resize_np,
    save_json,
)
from .._memory import check_memory, estimate_inversion
from .._storage import OUT_HELP, staged
from ._jobs import save_images
from ._labeled_grid import save_labeled_grid
from ._param import Param, image
from ._render import RenderResult, render
from ._transforms import compose, jitter, pad
from .objectives import Objective, activation_dot, activation_match, total_variation

__all__ = [
    "InversionResult",
    "InvertRun",
    "caricature",
    "invert",
    "load_images",
    "psnr",
    "InvertJob",
    "run_invert",
    "shift",
    "ssim",
]

_MODES = ("invert", "caricature")


def shift(k: int = 1):
    """A random shift by up to ``k`` px on each axis that keeps the image size (reflect-pad
    ``k`` px, then Lucid's ``jitter(2k)``): the light jitter prior of inversion. ``k=0``:
    no transform.

    Example:
      >>> import jax
      >>> import numpy as np
      >>> from lucidax.visualize import shift
      >>> images = np.zeros((2, 16, 16, 3), np.float32)
      >>> shift(2)(jax.random.key(0), images).shape
      (2, 16, 16, 3)
    """
    if int(k) != k or k < 0:
        raise ValueError(f"shift: k must be an int >= 0; got {k!r}")
    return None if k == 0 else compose(pad(int(k), mode="reflect"), jitter(2 * int(k)))


_DEFAULT = object()


# ---------------------------------------------------------------------------------------------
# image similarity (NumPy)
# ---------------------------------------------------------------------------------------------
def psnr(a: Any, b: Any, *, data_range: float = 1.0) -> np.ndarray:
    """Peak signal-to-noise ratio (dB) of images ``[..., h, w, C]`` (one value per image).

    Args:
      a, b: ``[N, H, W, C]`` images, compared pairwise.
      data_range: the value range (1.0 for images in [0, 1]).

    Example:
      >>> import numpy as np
      >>> from lucidax.visualize import psnr
      >>> a = np.zeros((1, 8, 8, 3)); b = a + 0.1
      >>> psnr(a, b).round(1).tolist()
      [20.0]
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mse = np.mean(np.square(a - b), axis=(-3, -2, -1))
    return 10.0 * np.log10(data_range**2 / np.maximum(mse, 1e-12))


def _box(x: np.ndarray, win: int) -> np.ndarray:
    """Mean over ``win x win`` windows (valid positions) of ``[..., h, w, C]``."""
    c = np.cumsum(np.cumsum(x, axis=-3), axis=-2)
    c = np.pad(c, [(0, 0)] * (x.ndim - 3) + [(1, 0), (1, 0), (0, 0)])
    s = c[..., win:, win:, :] - c[..., :-win, win:, :] - c[..., win:, :-win, :] \
        + c[..., :-win, :-win, :]
    return s / (win * win)


def ssim(a: Any, b: Any, *, data_range: float = 1.0, win: int = 7) -> np.ndarray:
    """Structural similarity of images ``[..., h, w, C]`` (one value per image): the mean over
    ``win x win`` windows and channels of Wang et al.'s SSIM, with scikit-image's defaults
    (uniform window, sample covariance, K1=0.01, K2=0.03; ``structural_similarity(...,
    channel_axis=-1)`` gives the same numbers).

    Args:
      a, b: ``[N, H, W, C]`` images, compared pairwise.
      data_range: the value range (1.0 for images in [0, 1]).

    Example:
      >>> import numpy as np
      >>> from lucidax.visualize import ssim
      >>> a = np.random.default_rng(0).random((2, 16, 16, 3))
      >>> ssim(a, a).round(3).tolist()
      [1.0, 1.0]
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if min(a.shape[-3:-1]) < win:
        raise ValueError(f"ssim: images must be at least {win}px; got {a.shape[-3:-1]}")
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    n = win * win
    cov = n / (n - 1.0)
    ma, mb = _box(a, win), _box(b, win)
    va = cov * (_box(a * a, win) - ma * ma)
    vb = cov * (_box(b * b, win) - mb * mb)
    vab = cov * (_box(a * b, win) - ma * mb)
    s = ((2 * ma * mb + c1) * (2 * vab + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
    # scikit-image drops a border of (win - 1) // 2 px of the full map: the valid windows
    return s.mean(axis=(-3, -2, -1))


def _relative_error(acts: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``|a - t|^2 / |t|^2`` per row."""
    a = acts.reshape(len(acts), -1).astype(np.float64)
    t = target.reshape(len(target), -1).astype(np.float64)
    return np.sum(np.square(a - t), 1) / np.maximum(np.sum(np.square(t), 1), 1e-12)


def _gain_and_cosine(acts: np.ndarray, original: np.ndarray, power: float
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Per row, for the caricature's target direction ``t = sign(o) |o|^power`` of the
    original's activations ``o``: the gain ``<a, t> / <o, t>`` (how strongly ``a`` drives the
    original's features, relative to the original: > 1 is exaggerated) and ``cos(a, t)``;
    NaN for a row whose original activations are all zero."""
    a = acts.reshape(len(acts), -1).astype(np.float64)
    o = original.reshape(len(original), -1).astype(np.float64)
    t = o if power == 1 else np.sign(o) * np.abs(o) ** power
    den = np.sum(o * t, 1)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(t, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = np.where(den > 0, np.sum(a * t, 1) / np.where(den > 0, den, 1.0), np.nan)
        cos = np.where(norms > 0, np.sum(a * t, 1) / np.where(norms > 0, norms, 1.0), np.nan)
    return gain, np.where(np.any(t != 0, 1), cos, np.nan)


def _mean(x: np.ndarray) -> float | None:
    """Mean of the finite values (None when there is none: JSON-ready)."""
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    return float(np.mean(x)) if x.size else None


def _listed(x: np.ndarray) -> list:
    """``x.tolist()`` with NaN/inf as None (strict JSON)."""
    return [[float(v) if np.isfinite(v) else None for v in row] for row in np.asarray(x)]


# ---------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class InversionResult:
    """What :func:`invert` and :func:`caricature` return.

    Attributes:
      originals: float32 ``[N, h, w, C]``: the images (in [0, 1]).
      images: float32 ``[N, L, h, w, C]``: ``images[i, l]`` is image ``i`` reconstructed
        (or caricatured) from ``layers[l]``.
      layers: the layer of each column.
      mode: ``"invert"`` or ``"caricature"``.
      psnr, ssim: float ``[N, L]`` similarity of each result to its original (PSNR in dB).
      act_error: float ``[N, L]``: ``|a - t|^2 / |t|^2``, the relative error of the result's
        activations ``a`` at its layer (un-transformed) to the original's ``t`` (what
        :func:`invert` minimizes; reported for inversions only, see :meth:`metrics`).
      act_gain, act_cosine: float ``[N, L]`` (caricatures; None for inversions): for the
        caricature's target ``t = sign(o) |o|^power`` of the original's activations ``o``,
        the gain ``<a, t> / <o, t>`` (> 1: the result drives the original's features harder
        than the original does) and ``cos(a, t)`` (NaN where ``o`` is all zero).
      objective_values: float ``[N, L]``: the objective at the last step.
      finite: bool ``[N, L]``: False where the optimization produced NaN/inf.
      seconds: wall time of the whole call (compilation included).
      renders: the :class:`RenderResult` of each render call (one, or one per layer).

    Example:
      >>> import numpy as np
      >>> import lucidax.models as lm
      >>> from lucidax import visualize as viz
      >>> model = lm.load("starter")
      >>> photos = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
      >>> result = viz.invert(model, images=photos, layer=["conv2", "conv4"], steps=64)
      >>> result.layers, result.images.shape, result.psnr.shape
      (('conv2', 'conv4'), (2, 2, 64, 64, 3), (2, 2))
    """

    originals: np.ndarray
    images: np.ndarray
    layers: tuple[str, ...]
    mode: str
    psnr: np.ndarray
    ssim: np.ndarray
    act_error: np.ndarray
    objective_values: np.ndarray
    finite: np.ndarray
    seconds: float
    renders: tuple[RenderResult, ...]
    act_gain: np.ndarray | None = None
    act_cosine: np.ndarray | None = None

    def grid_images(self) -> np.ndarray:
        """``[N * (L + 1), h, w, C]``: for each image, the original then one result per layer
        (row-major; tile with ``cols=L + 1``)."""
        both = np.concatenate([self.originals[:, None], self.images], axis=1)
        return both.reshape((-1,) + both.shape[2:])

    def metrics(self) -> dict[str, Any]:
        """Per-layer means and per-image values, JSON-ready: PSNR and SSIM to the original,
        and the activation error (inversions) or the activation gain and cosine
        (caricatures, which exaggerate the activations: their error is no measure)."""
        if self.mode == "caricature" and self.act_gain is not None:
            acts = {"act_gain": self.act_gain, "act_cosine": self.act_cosine}
        else:
            acts = {"act_error": self.act_error}
        per_layer = {
            lyr: {
                "psnr": float(np.mean(self.psnr[:, j])),
                "ssim": float(np.mean(self.ssim[:, j])),
                **{k: _mean(v[:, j]) for k, v in acts.items()},
            }
            for j, lyr in enumerate(self.layers)
        }
        return {
            "mode": self.mode, "layers": list(self.layers), "per_layer": per_layer,
            "psnr": self.psnr.tolist(), "ssim": self.ssim.tolist(),
            **{k: _listed(v) for k, v in acts.items()}, "finite": self.finite.tolist(),
            "seconds": self.seconds,
        }


# ---------------------------------------------------------------------------------------------
# argument handling
# ---------------------------------------------------------------------------------------------
def _as_images(model: Model, images: Any) -> np.ndarray:
    arr = np.asarray(images)
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0
    arr = arr.astype(np.float32)
    if arr.ndim == 3:
        arr = arr[None]
    c = model.input_spec.channels
    if arr.ndim != 4 or arr.shape[0] == 0 or arr.shape[-1] != c:
        raise ValueError(f"images must be [N, h, w, {c}] (or one [h, w, {c}] image) for "
                         f"{model.name}; got shape {np.shape(images)}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("images contain NaN or inf")
    if arr.min() < -1e-3 or arr.max() > 1.0 + 1e-3:
        raise ValueError(f"images must be floats in [0, 1] (or uint8); got values in "
                         f"[{arr.min():g}, {arr.max():g}]")
    if min(arr.shape[1:3]) < model.input_spec.min_side:
        raise ValueError(f"{model.name} needs images of at least {model.input_spec.min_side}px; "
                         f"got {arr.shape[1]}x{arr.shape[2]}")
    return arr


def _as_layers(model: Model, layer: Any) -> tuple[str, ...]:
    if layer is None or (isinstance(layer, str) and layer == "all"):
        raise ValueError(f"layer: name one or more layers of {model.name} (valid: "
                         f"{', '.join(model.layer_names)})")
    return normalize_layers(layer, model.layer_names)


def _as_priors(priors: Any, hw: tuple[int, int], c: int) -> tuple[Objective, ...]:
    if priors is _DEFAULT:
        # total variation per pixel value: the same strength at any image size
        return (total_variation() * (_DEFAULT_TV / (hw[0] * hw[1] * c)),)
    if priors is None:
        return ()
    priors = (priors,) if isinstance(priors, Objective) else tuple(priors)
    for p in priors:
        if not isinstance(p, Objective):
            raise TypeError(f"priors must be Objectives (penalties, e.g. 1e-5 * "
                            f"total_variation()); got {p!r}")
    return priors


def _targets_program(model: Model, layers: tuple[str, ...]):
    """``model.apply(params, images, layers)`` jitted once per architecture and layers."""
    return model.program(("lucidax.visualize.invert.targets", layers),
                         lambda shell: lambda p, x: shell.apply(p, x, layers))


def _activations(model: Model, params: Any, images: np.ndarray, layers: tuple[str, ...],
                 *, chunk: int = 64) -> dict[str, np.ndarray]:
    """``model.apply`` in chunks, on the host (the targets: computed once, outside the loop)."""
    out: dict[str, list[np.ndarray]] = {name: [] for name in layers}
    for s in range(0, len(images), chunk):
        acts = _targets_program(model, layers)(params, jnp.asarray(images[s:s + chunk]))
        for name in layers:
            out[name].append(np.asarray(acts[name], np.float32))
    return {name: np.concatenate(v) for name, v in out.items()}


def _term(mode: str, lyr: str, target: np.ndarray, weight: np.ndarray, opts: dict[str, Any]
          ) -> Objective:
    if mode == "invert":
        return activation_match(lyr, target, loss=opts["loss"], weight=weight)
    p = opts["power"]
    t = target if p == 1 else np.sign(target) * np.abs(target) ** p
    return activation_dot(lyr, t, cossim_pow=opts["cossim_pow"], weight=weight)


def _objective(mode, layers, targets, rows_layer, n_rows, priors, opts) -> Objective:
    """One objective for rows ``r`` reconstructing from ``layers[rows_layer[r]]``: a sum of one
    term per layer whose target/weight rows are zero except on that layer's rows."""
    terms = []
    for j, lyr in enumerate(layers):
        t = targets[lyr]  # [n_rows, ...]: this layer's target, tiled over the rows
        on = (rows_layer == j).astype(np.float32)
        t = t * on.reshape((-1,) + (1,) * (t.ndim - 1))
        terms.append(_term(mode, lyr, t, on, opts))
    obj = Objective.sum(terms)
    for p in priors:
        obj = obj - p
    return obj


def _run(
    mode: str, model: Model, params: Any, images: Any, layer: Any, *, param: Param | None,
    transforms: Any, priors: Any, steps: int, optimizer: Any, key: Any, per_layer: bool,
    progress: bool, opts: dict[str, Any], memory_check: bool = True,
) -> InversionResult:
    t0 = time.perf_counter()
    if not isinstance(model, Model):
        raise TypeError(f"model must be a lucidax Model (see lucidax.models.load); got "
                        f"{type(model).__name__}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be a positive int; got {steps!r}")
    model_params = model.params if params is None else params
    originals = _as_images(model, images)
    layers = _as_layers(model, layer)
    n, h, w, c = originals.shape
    nl = len(layers)
    priors = _as_priors(priors, (h, w), c)
    param = image(sd=_DEFAULT_SD) if param is None else param
    if memory_check:
        split = per_layer if per_layer is not None else steps >= _PER_LAYER_FROM_STEPS
        check_memory(estimate_inversion(model, layers, n_images=n, size=max(h, w),
                                        per_layer=split),
                     f"{'inverting' if mode == 'invert' else 'caricaturing'} {n} images at "
                     f"{h}x{w} px from {nl} layer{'s' * (nl > 1)}",
                     hint="use smaller or fewer images")
    acts = _activations(model, model_params, originals, layers)

    # rows: r = i * L + l (image i from layer l)
    row_image = np.repeat(np.arange(n), nl)
    row_layer = np.tile(np.arange(nl), n)
    if per_layer is None:
        per_layer = steps >= _PER_LAYER_FROM_STEPS
    groups = [np.arange(n * nl)] if not per_layer else [np.flatnonzero(row_layer == j)
                                                         for j in range(nl)]
    out = np.zeros((n * nl, h, w, c), np.float32)
    values = np.zeros(n * nl, np.float32)
    finite = np.zeros(n * nl, bool)
    renders = []
    for rows in groups:
        used = sorted(set(row_layer[rows].tolist()))
        lyrs = tuple(layers[j] for j in used)
        local = np.searchsorted(used, row_layer[rows])
        targets = {lyr: acts[lyr][row_image[rows]] for lyr in lyrs}
        obj = _objective(mode, lyrs, targets, local, len(rows), priors, opts)
        res = render(
            model, model_params, obj, param=param, transforms=transforms, optimizer=optimizer,
            steps=steps, size=(h, w), batch=len(rows), key=key, unit_ids=rows,
            model_side=False, progress=progress, memory_check=False,  # checked above
        )
        out[rows], values[rows], finite[rows] = res.images, res.objective_values, res.finite
        renders.append(res)

    # how close are the results (images, and activations at their layer) to the originals
    got = _activations(model, model_params, out, layers)
    err = np.zeros(n * nl)
    gain = cos = None
    if mode == "caricature":
        gain, cos = np.zeros(n * nl), np.zeros(n * nl)
    for j, lyr in enumerate(layers):
        rows = np.flatnonzero(row_layer == j)
        err[rows] = _relative_error(got[lyr][rows], acts[lyr][row_image[rows]])
        if mode == "caricature":
            gain[rows], cos[rows] = _gain_and_cosine(got[lyr][rows], acts[lyr][row_image[rows]],
                                                     opts["power"])
    ref = originals[row_image]
    return InversionResult(
        originals=originals,
        images=out.reshape(n, nl, h, w, c),
        layers=layers,
        mode=mode,
        psnr=psnr(out, ref).reshape(n, nl),
        ssim=ssim(out, ref).reshape(n, nl),
        act_error=err.reshape(n, nl),
        objective_values=values.reshape(n, nl),
        finite=finite.reshape(n, nl),
        seconds=time.perf_counter() - t0,
        renders=tuple(renders),
        act_gain=None if gain is None else gain.reshape(n, nl),
        act_cosine=None if cos is None else cos.reshape(n, nl),
    )


_DEFAULT_SD = 0.5  # std of the random start (the starter model's layers are silent on grey)
_DEFAULT_TV = 0.5  # total variation weight per pixel value (see _as_priors)
_PER_LAYER_FROM_STEPS = 64  # one render per layer from this many steps (module docstring)


def invert(
    model: Model,
    params: Any = None,
    images: Any = None,
    layer: str | Sequence[str] = "",
    *,
    loss: str = "l2",
    param: Param | None = None,
    transforms: Any = None,
    priors: Any = _DEFAULT,
    steps: int = 256,
    optimizer: Any = None,
    key: Any = None,
    per_layer: bool | None = None,
    progress: bool = False,
    memory_check: bool = True,
) -> InversionResult:
    """Reconstruct ``images`` from their activations at ``layer`` (one or several layers).

    Starts from noise and maximizes :func:`~lucidax.visualize.activation_match`
    (the targets are the originals' activations, computed once) minus the ``priors``.

    Args:
      model, params: the model (params None: ``model.params``).
      images: float ``[N, h, w, C]`` in [0, 1] (or uint8, or one ``[h, w, C]`` image),
        inverted at their own size (never resized).
      layer: a layer name, a sequence of names or ``"a,b,c"``: ``images[i, l]`` of the
        result is image ``i`` from ``layer[l]``; all pairs in one optimization.
      loss: ``"l2"`` (``|a - t|^2 / |t|^2``, Mahendran & Vedaldi) or ``"cosine"``.
      param: image parameterization (default ``image(sd=0.5)``: decorrelated Fourier
        image, started from noise).
      transforms: applied every step (default None; :func:`shift` ``(k)`` is a random shift
        of up to ``k`` px that keeps the size; transforms that change the size or
        scale/rotate misalign the activations with the target).
      priors: penalty Objectives subtracted from the objective (default total variation,
        ``0.5 * total_variation() / (h * w * C)``); None or ``()`` for none.
      steps: optimization steps; optimizer: optax optimizer or Adam learning rate (default
        Adam 0.05); key: random key/seed of the starting noise and of the transforms.
      per_layer: True: one render (one compiled program) per layer; False: one render of
        the ``images x layers`` batch; None: one render below 64 steps, else one per layer
        (faster on the starter model; same images either way; see the module docstring).
      progress: show a progress bar.
      memory_check: raise ``lucidax._memory.InsufficientMemoryError`` (a ValueError)
        before any work when the estimated memory need exceeds the available memory;
        False: try anyway.

    Example:
      >>> import numpy as np
      >>> import lucidax.models as lm
      >>> from lucidax import visualize as viz
      >>> model = lm.load("starter")
      >>> photos = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
      >>> result = viz.invert(model, images=photos, layer=["conv2", "conv4"], steps=64)
      >>> result.mode, result.originals.shape
      ('invert', (2, 64, 64, 3))
    """
    if loss not in ("l2", "cosine"):
        from lucidax.models import suggest

        raise ValueError(suggest(loss, ("l2", "cosine"), what="loss"))
    return _run("invert", model, params, images, layer, param=param, transforms=transforms,
                priors=priors, steps=steps, optimizer=optimizer, key=key, per_layer=per_layer,
                progress=progress, opts={"loss": loss}, memory_check=memory_check)


def caricature(
    model: Model,
    params: Any = None,
    images: Any = None,
    layer: str | Sequence[str] = "",
    *,
    power: float = 1.0,
    cossim_pow: float = 1.0,
    param: Param | None = None,
    transforms: Any = None,
    priors: Any = _DEFAULT,
    steps: int = 256,
    optimizer: Any = None,
    key: Any = None,
    per_layer: bool | None = None,
    progress: bool = False,
    memory_check: bool = True,
) -> InversionResult:
    """Lucid's caricature: what ``layer`` sees in each image, exaggerated.

    Starts from noise and maximizes :func:`~lucidax.visualize.activation_dot`:
    ``<a, t> * max(0.1, cos(a, t)) ** cossim_pow`` with ``t`` the original's activations
    raised to ``power`` (sign kept), minus the ``priors``. Unlike :func:`invert` the dot
    product is unbounded: the image is pushed to activate the original's features more
    strongly than the original does. Arguments as in :func:`invert`.

    Args (the others as in :func:`invert`):
      model, params: the model and its parameters (None: ``model.params``).
      images: ``[N, H, W, C]`` images to caricature.
      param, transforms, steps, optimizer, key: the optimization, as in :func:`invert`.
      per_layer: one render per layer instead of one batched program (default: automatic).
      progress: show a tqdm progress bar.
      memory_check: refuse a run that cannot fit in memory.

    Example:
      >>> import numpy as np
      >>> import lucidax.models as lm
      >>> from lucidax import visualize as viz
      >>> model = lm.load("starter")
      >>> photos = np.random.default_rng(0).random((1, 64, 64, 3), dtype=np.float32)
      >>> result = viz.caricature(model, images=photos, layer="conv3", steps=64)
      >>> result.mode, result.images.shape
      ('caricature', (1, 1, 64, 64, 3))
    """
    if not power > 0:
        raise ValueError(f"power must be > 0; got {power!r}")
    if not cossim_pow >= 0:
        raise ValueError(f"cossim_pow must be >= 0; got {cossim_pow!r}")
    return _run("caricature", model, params, images, layer, param=param,
                transforms=transforms, priors=priors, steps=steps, optimizer=optimizer, key=key,
                per_layer=per_layer, progress=progress, memory_check=memory_check,
                opts={"power": float(power), "cossim_pow": float(cossim_pow)})


# ---------------------------------------------------------------------------------------------
# files and the command line
# ---------------------------------------------------------------------------------------------
def load_images(paths: str | os.PathLike | Sequence[str | os.PathLike], *, size: int,
                channels: int = 3) -> np.ndarray:
    """Read image files as float32 ``[N, size, size, channels]`` in [0, 1] (see
    :func:`lucidax._files.load_image`: centre-cropped, resized, channels matched)."""
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not paths:
        raise ValueError("No image files given")
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No such image file: {os.fspath(path)}")
    return np.stack([load_image(p, size=size, channels=channels) for p in paths])


#: Images of one ``builtin:starter[:train|:test]`` argument of :func:`run_invert`.
STARTER_IMAGES = 4


def _read_images(items: Sequence[str | os.PathLike], side: int,
                 channels: int) -> tuple[np.ndarray, list[str]]:
    """``(images [N, side, side, C], names [N])`` of image files, ``builtin:photos[:<src>]``
    arguments (each expands to its whole photos, centre-cropped, named
    ``builtin:photos:<source>``) and ``builtin:starter[:train|:test]`` arguments (each the
    first ``STARTER_IMAGES`` images of that split, seed 0, named
    ``starter-<split>-<i>``)."""
    from lucidax.models import photos, starter

    if not items:
        raise ValueError("No image files given")
    parts: list[np.ndarray] = []
    names: list[str] = []
    files: list[str | os.PathLike] = []

    def flush() -> None:
        if files:
            parts.append(load_images(files, size=side, channels=channels))
            names.extend(os.fspath(f) for f in files)
            files.clear()

    for item in items:
        builtin = photos.parse_builtin(item)
        if builtin is None:
            files.append(item)
            continue
        flush()
        if builtin.kind == "starter":
            ds = starter.dataset(STARTER_IMAGES, split=builtin.split, seed=0)
            parts.append(np.stack([resize_np(match_channels(np.asarray(im, np.float32),
                                                            channels), side)
                                   for im in ds.images]))
            names.extend(f"starter-{builtin.split}-{i}" for i in range(STARTER_IMAGES))
            continue
        ph = photos.whole_photos(side, sources=builtin.sources, channels=channels)
        parts.append(ph.images)
        names.extend(f"builtin:photos:{src}" for src in ph.names())
    flush()
    return np.concatenate(parts), names


def _count_images(item: str | os.PathLike) -> int:
    """Images one argument of :func:`_read_images` stands for (without reading them)."""
    from lucidax.models import photos

    builtin = photos.parse_builtin(item)
    if builtin is None:
        return 1
    return STARTER_IMAGES if builtin.kind == "starter" else len(builtin.sources)


@dataclasses.dataclass(frozen=True, eq=False)
class InvertRun:
    """What :func:`run_invert` produced: the result, the files written, a printable table.

    Example:
      >>> from lucidax.visualize import InvertJob, run_invert
      >>> job = InvertJob(model="starter", layers="conv2,conv4", images="builtin:starter",
      ...                 steps=64, out="invert-out")
      >>> run = run_invert(job, progress=False)
      >>> run.out, sorted(run.files)[:2]  # doctest: +ELLIPSIS
      ('invert-out', [...])
    """

    result: InversionResult
    out: str
    files: dict[str, str]
    table: str


def _table(result: InversionResult) -> str:
    caricature = result.mode == "caricature" and result.act_gain is not None
    extra = f"{'act gain':>9} {'act cos':>8}" if caricature else f"{'act err':>8}"
    lines = [f"{'layer':<16} {'PSNR dB':>8} {'SSIM':>6} {extra}"]

    def num(v: float | None, width: int, fmt: str) -> str:
        return f"{'-':>{width}}" if v is None else f"{v:{width}{fmt}}"

    for j, lyr in enumerate(result.layers):
        row = f"{lyr:<16} {np.mean(result.psnr[:, j]):8.2f} {np.mean(result.ssim[:, j]):6.3f} "
        if caricature:
            row += (f"{num(_mean(result.act_gain[:, j]), 9, '.2f')} "
                    f"{num(_mean(result.act_cosine[:, j]), 8, '.3f')}")
        else:
            row += f"{np.mean(result.act_error[:, j]):8.3f}"
        lines.append(row)
    if caricature:
        lines.append("act gain = <a, t> / <o, t> (> 1: the original's features exaggerated), "
                     "act cos = cos(a, t)\n  (a: the caricature's activations, o: the "
                     "original's, t = o^power)")
    return "\n".join(lines)


def _stem(path: Any, used: set[str]) -> str:
    stem = os.path.splitext(os.path.basename(os.fspath(path)))[0] or "image"
    name, k = stem, 1
    while name in used:
        k += 1
        name = f"{stem}-{k}"
    used.add(name)
    return name


@dataclasses.dataclass(frozen=True)
class InvertJob:
    """What ``lucidax invert`` does: invert (or caricature) images from some layers, to PNGs.

    ``run_invert(job)`` writes ``<out>/grid.png`` (one row per image: the original, then one
    column per layer; column headers and the images' names as row labels),
    ``<out>/<image>/<layer>.png`` and ``<out>/metrics.json`` (PSNR, SSIM and the activation
    error, for caricatures the activation gain and cosine instead
    (:meth:`InversionResult.metrics`), per image and layer, and the settings).

    Attributes:
      model: registered model name or a Model; weights: checkpoint path (names only).
      layers: comma-separated names (or a sequence).
      images: ``"auto"`` (the model's images: for the starter model
        ``builtin:starter:test``, for other RGB models the whole photos of the first
        ``lucidax.models.photos.AUTO_INVERT_PHOTOS`` sources;
        ``lucidax.models.photos.resolve_auto``), or any of: image files (centre-cropped
        and resized to ``size``), ``builtin:photos`` (every photo of
        ``lucidax.models.photos``) or ``builtin:photos:<source>`` (one of them), each
        centre-cropped the same way, ``builtin:starter[:train|:test]`` (the first
        ``STARTER_IMAGES`` starter images of that split, seed 0, resized to ``size``).
      mode: ``"invert"`` (reconstruction) or ``"caricature"``.
      loss: ``"l2"`` or ``"cosine"`` (invert only).
      size: image side (default: the model's input side, else 128).
      seed: random seed; learning_rate: Adam's; tv: total-variation weight per pixel value;
      jitter_px: random shift of up to this many px per step (:func:`shift`; 0: none).
      scale: pixel-repetition factor of the grid PNG.
      memory_check: refuse (``lucidax._memory.InsufficientMemoryError``), before
        reading the images or writing anything, a run whose estimated memory need exceeds
        the available memory; False (``--no-memory-check``): try anyway.

    Example:
      >>> from lucidax.visualize import InvertJob, run_invert
      >>> job = InvertJob(model="starter", layers="conv2,conv4", images="builtin:starter",
      ...                 steps=64, out="invert-out")
      >>> run = run_invert(job, progress=False)
      >>> run.result.layers
      ('conv2', 'conv4')
    """

    model: str | Model = flag("starter", "registered model name")
    weights: str | None = flag(None, WEIGHTS_HELP)
    layers: str | Sequence[str] = flag(
        None, "comma-separated layer names, one grid column each (e.g. conv1,conv3)",
        required=True)
    images: str | os.PathLike | Sequence[str | os.PathLike] = flag(
        "auto", "auto (the model's images: starter: 4 builtin:starter:test images; other RGB "
                "models: the whole photos astronaut, chelsea, coffee, rocket), or image files "
                "(centre-cropped to a square and resized to --size), builtin:photos (every "
                "photo shipped in installed packages), builtin:photos:<source> (one, e.g. "
                "builtin:photos:chelsea) or builtin:starter[:test|:train] (its first 4 images)")
    out: str | os.PathLike = flag(
        "invert-out", f"{OUT_HELP}: grid.png, <image>/<layer>.png, metrics.json")
    mode: str = flag("invert", "invert: match the activations; caricature: exaggerate them",
                       choices=_MODES)
    loss: str = flag("l2", "inversion loss", choices=("l2", "cosine"))
    steps: int = flag(256, "optimization steps")
    size: int | None = flag(None, "image side (default: the model's input side)")
    seed: int = flag(0, "random seed")
    learning_rate: float = flag(0.05, "Adam")
    tv: float = flag(_DEFAULT_TV, "total-variation prior weight per pixel value (0: off)")
    jitter_px: int = flag(0, "random shift of up to this many px per step")
    scale: int = flag(2, "grid PNG enlargement")
    memory_check: bool = flag(True, MEMORY_HELP)

    def validate(self) -> InvertJob:
        """Check the settings that need neither the model nor the images (bad input fails
        here, in one line naming the flag); returns ``self``."""
        if self.layers is None:
            raise ValueError("--layers is required (comma-separated layer names)")
        if self.mode not in _MODES:
            from lucidax.models import suggest

            raise ValueError(suggest(self.mode, _MODES, what="mode"))
        check_int(self.steps, "--steps")
        check_int(self.size, "--size", optional=True)
        check_int(self.scale, "--scale")
        check_int(self.jitter_px, "--jitter", minimum=0)
        if not self.learning_rate > 0:
            raise ValueError(f"--learning-rate must be > 0; got {self.learning_rate!r}")
        return self


@staged
def run_invert(job: InvertJob, *, progress: bool = True) -> InvertRun:
    """Run ``job`` (``lucidax invert``): everything :class:`InvertJob` says, checked before
    the model is loaded.

    Args:
      job: an :class:`InvertJob`.
      progress: show tqdm progress bars.

    Example:
      >>> from lucidax.visualize import InvertJob, run_invert
      >>> job = InvertJob(model="starter", layers="conv2,conv4", images="builtin:starter",
      ...                 steps=64, out="invert-out")
      >>> run = run_invert(job, progress=False)
      >>> "conv4" in run.table
      True
    """
    from .._compile_cache import enable_for_job  # on unless turned off: see there

    enable_for_job()
    job.validate()
    model, weights, layers, images, out = job.model, job.weights, job.layers, job.images, job.out
    steps, mode, loss, size, seed = job.steps, job.mode, job.loss, job.size, job.seed
    learning_rate, tv, jitter_px, scale = job.learning_rate, job.tv, job.jitter_px, job.scale
    memory_check = job.memory_check
    from lucidax.models import photos

    paths = [images] if isinstance(images, (str, os.PathLike)) else list(images)
    if photos.AUTO in paths and len(paths) != 1:
        raise ValueError("--images: 'auto' stands alone (the model's images); give image "
                         "files or builtin: arguments instead, or ./auto for a file named auto")
    for p in paths:  # image files given explicitly: each must be readable
        if os.fspath(p) != photos.AUTO and photos.parse_builtin(os.fspath(p)) is None:
            if os.path.isdir(p):
                raise ValueError(f"--images {os.fspath(p)!r} is a folder; give image files "
                                 f"(e.g. {os.path.join(os.fspath(p), '*.png')}) or builtin: "
                                 "images")
            why = check_image(p)
            if why is not None:
                if not os.path.exists(p):
                    raise FileNotFoundError(f"--images: no such image file: {os.fspath(p)!r}")
                raise UnreadableImageError(p, why)
    prepare_out_dir(out)
    if isinstance(model, str):
        import lucidax.models as lm

        model = lm.load(model, weights)
    elif weights is not None:
        raise ValueError("weights= is only used with a model name")

    side = int(size or model.input_spec.side or 128)
    if photos.AUTO in paths:
        paths = list(photos.resolve_auto(photos.AUTO, model, "invert"))
    if memory_check:  # before the images are read at that size
        n_images = sum(_count_images(p) for p in paths)
        names = _as_layers(model, layers)
        need = estimate_inversion(model, names, n_images=n_images, size=side,
                                  per_layer=steps >= _PER_LAYER_FROM_STEPS)
        if need is not None:  # a grid enlarged more than 2x (the estimate's)
            need += n_images * (len(names) + 1) * side * side * model.input_spec.channels \
                * 4 * max(scale * scale - 4, 0)
        check_memory(need, f"{'inverting' if mode == 'invert' else 'caricaturing'} "
                           f"{n_images} images at {side} px from {len(names)} "
                           f"layer{'s' * (len(names) > 1)}",
                     hint="lower --size or give fewer images or layers")
    originals, paths = _read_images(paths, side, model.input_spec.channels)
    priors = (total_variation() * (tv / (side * side * originals.shape[-1])),) if tv else None
    common = dict(transforms=shift(jitter_px), priors=priors, steps=steps,
                  optimizer=learning_rate, key=seed, progress=progress,
                  memory_check=False)  # checked above
    if mode == "invert":
        result = invert(model, model.params, originals, layers, loss=loss, **common)
    else:
        result = caricature(model, model.params, originals, layers, **common)
    out = os.fspath(out)
    used: set[str] = set()
    stems = [_stem(os.fspath(p).removeprefix("builtin:photos:"), used) for p in paths]
    files = {"grid": save_labeled_grid(os.path.join(out, "grid.png"), result.grid_images(),
                                       cols=len(result.layers) + 1, scale=scale,
                                       col_labels=["original", *result.layers],
                                       row_labels=stems)}
    for i, stem in enumerate(stems):
        save_images(os.path.join(out, stem), np.concatenate([originals[i:i + 1],
                                                             result.images[i]]),
                    ["original", *(lyr.replace("/", "_") for lyr in result.layers)])
    metrics = result.metrics()
    metrics.update(model=model.name, images=[os.fspath(p) for p in paths], size=side,
                   steps=steps, loss=loss if mode == "invert" else None, seed=seed,
                   learning_rate=learning_rate, tv=tv, jitter_px=jitter_px)
    files["metrics"] = os.path.join(out, "metrics.json")
    save_json(files["metrics"], metrics)
    return InvertRun(result, out, files, _table(result))
