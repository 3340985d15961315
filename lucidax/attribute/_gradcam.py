"""Grad-CAM (Selvaraju et al. 2017) at a convolutional layer."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from lucidax.models import Model, normalize_layers
from lucidax.models.hooks import apply_perturbed

from ._common import (
    TRACE_COUNT,
    Attribution,
    TargetSpec,
    finish,
    prepare,
    program,
    score,
)


def _default_cam_layer(model: Model, spec: TargetSpec) -> str:
    names = model.layer_names
    last = max((names.index(n) for n in spec.layers), default=len(names) - 1)
    convs = [n for n in names[: last + 1] if model.layers[n].kind == "conv"
             and not model.layers[n].pre_relu]
    convs = convs or [n for n in names[: last + 1] if model.layers[n].kind == "conv"]
    if not convs:
        raise ValueError(f"{model.name} has no convolutional layer for Grad-CAM before the "
                         f"target's layers {spec.layers}")
    return convs[-1]


def _gradcam_program(model: Model, spec: TargetSpec, layer: str, relu: bool):
    def build(shell):
        def run(params, x, tdata):
            TRACE_COUNT["gradcam"] += 1
            names = tuple(dict.fromkeys((*spec.layers, layer)))
            shape = jax.eval_shape(lambda p, im: shell.apply(p, im, (layer,)), params, x)[layer]

            def f(delta):
                acts = apply_perturbed(shell, params, x, names, {layer: delta})
                s = score(spec, tdata, acts, x)
                return jnp.sum(s), (s, acts[layer])

            zero = jnp.zeros(shape.shape, shape.dtype)
            (_, (s, act)), g = jax.value_and_grad(f, has_aux=True)(zero)
            weights = jnp.mean(g, axis=(1, 2))  # [N, C]: global-average-pooled gradients
            cam = jnp.einsum("nhwc,nc->nhw", act, weights)
            pos = jax.nn.relu(cam) if relu else cam
            n, h, w = x.shape[:3]
            maps = jax.image.resize(pos, (n, h, w), method="bilinear")
            return maps, cam, s

        return run

    return program(model, ("gradcam", spec, layer, relu), build)


def gradcam(
    model: Model, params: Any, images: Any, target: Any, *, layer: str | None = None,
    relu: bool = True, return_raw: bool = False,
) -> jax.Array | Attribution:
    """Grad-CAM (Selvaraju et al. 2017) at a convolutional ``layer``.

    ``cam = sum_k alpha_k A_k`` with ``alpha_k`` the spatial mean of ``d target / d A_k``;
    the maps are ``relu(cam)`` upsampled bilinearly to the image size. ``layer`` defaults to
    the last (post-ReLU) conv layer the target depends on. ``relu=False`` keeps negative
    evidence. ``raw`` (with ``return_raw``) is the CAM at the layer's resolution before the
    ReLU.

    Args:
      model: a :class:`lucidax.models.Model`.
      params: its parameters (``model.params``).
      images: ``[N, H, W, C]`` images in the model's value range.
      target: a class index or label, a sequence of ``N`` of them, ``"predicted"`` (each
        image's top class) or an objective (see :func:`target_classes`).

    Example:
      >>> import numpy as np
      >>> import lucidax.models as lm
      >>> from lucidax.attribute import gradcam
      >>> model = lm.load("starter")
      >>> images = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
      >>> gradcam(model, model.params, images, target=3, layer="conv4").shape
      (2, 64, 64)
    """
    x, spec, tdata = prepare(model, params, images, target)
    if layer is None:
        layer = _default_cam_layer(model, spec)
    (layer,) = normalize_layers([layer], model.layer_names)
    if model.layers[layer].kind != "conv":
        convs = [n for n in model.layer_names if model.layers[n].kind == "conv"]
        raise ValueError(f"Grad-CAM needs a convolutional layer; {layer!r} is "
                         f"{model.layers[layer].kind}. Conv layers: {', '.join(convs)}")
    maps, cam, s = _gradcam_program(model, spec, layer, bool(relu))(params, x, tdata)
    return finish(maps, cam, s, return_raw=return_raw, method="gradcam")
