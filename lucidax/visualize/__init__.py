"""Feature visualization: parameterizations, transforms, objectives, the render engine, and
feature inversion / caricatures (:func:`invert`, :func:`caricature`) built on it.

>>> import lucidax.models as lm
>>> from lucidax import visualize as viz
>>> model = lm.load("inceptionv1")
>>> result = viz.render(model, viz.channel("mixed4a", range(8)), steps=256)
>>> result.images.shape
(8, 128, 128, 3)
"""

from . import objectives
from ._invert import (
    InversionResult,
    InvertJob,
    InvertRun,
    caricature,
    invert,
    psnr,
    run_invert,
    shift,
    ssim,
)
from ._param import Param, SizedParams, cppn, estimate_spectrum, fft, image, maco, pixel
from ._render import DEFAULT_OPTIMIZER, NonFiniteRenderWarning, RenderResult, render
from ._transforms import (
    Transform,
    compose,
    jitter,
    pad,
    random_crops,
    random_rotate,
    random_scale,
    resize,
    standard_transforms,
)
from .jobs import RenderJob, render_job, save_grid, save_images
from .objectives import (
    INPUT,
    Objective,
    activation_dot,
    activation_match,
    alignment,
    blur_input_each_step,
    channel,
    channel_interpolate,
    class_logit,
    class_probability,
    deepdream,
    direction,
    direction_neuron,
    diversity,
    l1,
    layer,
    neuron,
    total_variation,
)

__all__ = [
    "DEFAULT_OPTIMIZER",
    "INPUT",
    "InversionResult",
    "InvertJob",
    "InvertRun",
    "NonFiniteRenderWarning",
    "Objective",
    "Param",
    "RenderJob",
    "RenderResult",
    "SizedParams",
    "Transform",
    "activation_dot",
    "activation_match",
    "alignment",
    "blur_input_each_step",
    "caricature",
    "channel",
    "channel_interpolate",
    "class_logit",
    "class_probability",
    "compose",
    "cppn",
    "deepdream",
    "direction",
    "direction_neuron",
    "diversity",
    "estimate_spectrum",
    "fft",
    "image",
    "invert",
    "jitter",
    "l1",
    "layer",
    "maco",
    "neuron",
    "objectives",
    "pad",
    "pixel",
    "psnr",
    "random_crops",
    "random_rotate",
    "random_scale",
    "render",
    "render_job",
    "resize",
    "run_invert",
    "save_grid",
    "save_images",
    "shift",
    "ssim",
    "standard_transforms",
    "total_variation",
]
