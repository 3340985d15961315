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
from ._jobs import (
    PARAMS,
    RenderJob,
    default_init_sd,
    parse_units,
    render_job,
    save_grid,
    save_images,
    unit_list,
)
from ._param import Param, SizedParams, cppn, estimate_spectrum, fft, image, maco, pixel
from ._render import DEFAULT_OPTIMIZER, NonFiniteRenderWarning, RenderResult, render
from ._silence import SILENT_EPS, silent_on_data, stuck_renders
from ._silence import describe as describe_silence
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
    "PARAMS",
    "Param",
    "RenderJob",
    "RenderResult",
    "SILENT_EPS",
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
    "default_init_sd",
    "describe_silence",
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
    "parse_units",
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
    "silent_on_data",
    "ssim",
    "standard_transforms",
    "stuck_renders",
    "total_variation",
    "unit_list",
]
