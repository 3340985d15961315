"""Feature visualization: parameterizations, transforms, objectives and the render engine.

>>> import lucidax.models as lm
>>> from lucidax import visualize as viz
>>> model = lm.load("inceptionv1")
>>> result = viz.render(model, viz.channel("mixed4a", range(8)), steps=256)
>>> result.images.shape
(8, 128, 128, 3)
"""

from . import objectives
from .jobs import RenderJob, render_job, save_grid, save_images
from .objectives import (
    INPUT,
    Objective,
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
from .param import Param, SizedParams, cppn, estimate_spectrum, fft, image, maco, pixel
from .render import DEFAULT_OPTIMIZER, NonFiniteRenderWarning, RenderResult, render
from .transforms import (
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

__all__ = [
    "DEFAULT_OPTIMIZER",
    "INPUT",
    "NonFiniteRenderWarning",
    "Objective",
    "Param",
    "RenderJob",
    "RenderResult",
    "SizedParams",
    "Transform",
    "alignment",
    "blur_input_each_step",
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
    "jitter",
    "l1",
    "layer",
    "maco",
    "neuron",
    "objectives",
    "pad",
    "pixel",
    "random_crops",
    "random_rotate",
    "random_scale",
    "render",
    "render_job",
    "resize",
    "save_grid",
    "save_images",
    "standard_transforms",
    "total_variation",
]
