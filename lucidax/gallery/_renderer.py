"""Rendering one batch of units (``variants`` images each, one ``render`` call) and the
rescue of silent units from a high-contrast start."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence

import numpy as np

from ._config import GalleryConfig
from ._examples import unit_activation
from ._plan import _Batch


def _default_render() -> tuple[Callable, Callable]:
    try:
        from lucidax.visualize import channel, render
    except ImportError as err:
        raise RuntimeError(
            f"lucidax.gallery needs lucidax.visualize.render and channel ({err})"
        ) from err
    return render, channel


def _layer_prng_key(seed: int, layer: str):
    import jax

    return jax.random.fold_in(jax.random.key(seed), zlib.crc32(layer.encode()) & 0x7FFFFFFF)


def _objective_layer(model, layer: str, config: GalleryConfig) -> str:
    """The layer the render maximizes for units of ``layer`` (its pre-ReLU twin if asked)."""
    twin = f"{layer}_pre_relu"
    if config.pre_relu and twin in model.layers and model.layers[twin].pre_relu:
        return twin
    return layer


RESCUE_SD = 1.0


RESCUE_BELOW = 0.02  # a render weaker than 2% of the dataset maximum counts as silent


def _rescue(
    renderer: _Renderer, b: _Batch, padded: list[int], res: dict[str, np.ndarray], topk
) -> tuple[dict[str, np.ndarray], set[int], dict[int, bool]]:
    """Re-render a batch whose units stayed silent (every render's activation below 2% of
    the unit's maximum over real images, or <= 0 without a dataset: the optimization never
    left the dead-ReLU region) from
    a high-contrast start (clipped colours, Fourier sd :data:`RESCUE_SD`), keeping, unit by
    unit, the start whose best render is stronger. Returns the merged results, the batch
    positions that were replaced and, for each position that needed the rescue, whether it
    worked (the kept renders are no longer silent by the same test)."""
    v = renderer.config.variants
    acts = res["acts"].reshape(-1, v)[: len(b.units)]
    stuck = []
    # units that real images barely excite (max < 10% of the layer's median max) are left
    # alone: they are (nearly) dead, and a second start rarely finds them
    floor = 0.0 if topk is None else 0.1 * float(np.median(np.maximum(topk.values[:, 0], 0)))

    def too_weak(j: int, best: float) -> bool:
        data_max = None if topk is None else float(topk.values[b.units[j], 0])
        if data_max is None:
            return best <= 0
        return data_max > max(floor, 0.0) and best <= RESCUE_BELOW * data_max

    stuck = [j for j in range(len(b.units)) if too_weak(j, float(np.nanmax(acts[j])))]
    if not stuck:
        return res, set(), {}
    res2 = renderer(b.layer, padded, rescue=True)
    acts2 = res2["acts"].reshape(-1, v)
    better = {j for j in stuck if np.nanmax(acts2[j]) > np.nanmax(acts[j])}
    woke = {j: j in better and not too_weak(j, float(np.nanmax(acts2[j]))) for j in stuck}
    if not better:
        return res, set(), woke
    merged = {}
    for k, a in res.items():
        a = np.array(a, copy=True)
        for j in better:
            cols = slice(j * v, (j + 1) * v)
            if k == "loss":
                a[:, cols] = res2[k][:, cols]
            else:
                a[cols] = res2[k][cols]
        merged[k] = a
    return merged, better, woke


class _Renderer:
    """Renders one batch: ``units`` (padded) x ``variants`` images in one ``render`` call."""

    def __init__(self, config: GalleryConfig, model, render_fn, channel_fn):
        self.config = config
        try:
            from lucidax.visualize import image

            # value-comparable params: one compile per (layer, param) shape
            self.param = image(sd=config.init_sd)
            self.rescue_param = image(sd=RESCUE_SD, output="clip")
        except ImportError:  # a custom render function without lucidax.visualize
            self.param = self.rescue_param = None
        self.model = model
        self.render_fn = render_fn
        self.channel_fn = channel_fn
        # a learning rate: render's shared Adam for that rate, so compiled programs are reused
        # across calls (a new optax object per call would compile again)
        self.optimizer = config.lr
        try:  # lucidax's render checks memory itself: the gallery did (or was told not to)
            from lucidax.visualize.render import render as lucidax_render

            self.own_render = render_fn is lucidax_render
        except ImportError:
            self.own_render = False

    def __call__(self, layer: str, units: Sequence[int], *, rescue: bool = False):
        v = self.config.variants
        unit_arr = np.repeat(np.asarray(units, np.int32), v)
        unit_ids = unit_arr * v + np.tile(np.arange(v, dtype=np.int32), len(units))
        objective = self.channel_fn(_objective_layer(self.model, layer, self.config), unit_arr)
        extra = {"transforms": None} if self.config.transforms == "none" else {}
        param = self.rescue_param if rescue else self.param
        if param is not None:
            extra["param"] = param
        elif rescue:
            extra["rescue"] = True  # lets a stand-in render function tell the two apart
        if self.own_render:
            extra["memory_check"] = False
        res = self.render_fn(
            self.model,
            self.model.params,
            objective,
            optimizer=self.optimizer,
            steps=self.config.steps,
            size=self.config.size,
            model_side=self.config.model_side or None,
            key=_layer_prng_key(self.config.seed, layer),
            unit_ids=unit_ids,
            progress=False,
            **extra,
        )
        images = np.asarray(res.images, np.float32)
        finite = np.asarray(res.finite, bool).reshape(-1) & np.all(
            np.isfinite(images.reshape(len(images), -1)), axis=1
        )
        safe_images = np.where(np.isfinite(images), images, 0.5)
        acts = unit_activation(self.model, safe_images, layer, unit_arr)
        return {
            "images": images,
            "loss": np.asarray(res.loss, np.float32).reshape(-1, len(unit_arr)),
            "objective": np.asarray(res.objective_values, np.float32).reshape(-1),
            "finite": finite,
            "acts": acts,
        }

