"""lucidax.attribute: which pixels drive a class logit or a unit?

Every method is ``method(model, params, images, target, **opts) -> maps [N, H, W]``, one
batched program of the model (``Model.program``: shared by its ``with_params`` copies) per
(method, static options), in its own private module (``_gradient``, ``_smoothgrad``,
``_integrated_gradients``, ``_gradcam``, ``_guided_backprop``, ``_lrp``, ``_occlusion``,
``_surrogate``, ``_random``; what they share is in ``_common``), listed in :data:`METHODS`:

* gradients: :func:`vanilla_gradient`, :func:`gradient_x_input`, :func:`smoothgrad`,
  :func:`integrated_gradients` (with a completeness check), :func:`gradcam`,
  :func:`guided_backprop`; :func:`lrp` (epsilon and alpha-beta rules).
* perturbations: :func:`occlusion`, :func:`lime`, :func:`kernel_shap` over superpixels.
* adversarial probes: :func:`fgsm`, :func:`pgd` (L-inf / L2), :func:`eps_needed`.
* evaluation: :func:`deletion_curve` / :func:`insertion_curve` (AUC) and the
  model-parameter :func:`randomization_check` (Adebayo et al. 2018).
* :func:`run_attribute` of an :class:`AttributeJob` is ``lucidax attribute``: overlay grids,
  AUC table, an HTML page.

``target``: a class (index or label), one class per image, ``"predicted"``, or an Objective
of :mod:`lucidax.visualize` (a unit, a channel); see :func:`resolve_target`.
"""

from ._adversarial import NORMS, AttackResult, eps_needed, fgsm, pgd
from ._common import REDUCTIONS, Attribution, reduce_channels
from ._evaluate import (
    CurveResult,
    RandomizationResult,
    deletion_curve,
    insertion_curve,
    randomization_check,
    randomize_params,
    spearman,
    ssim,
)
from ._gradcam import gradcam
from ._gradient import gradient_x_input, vanilla_gradient
from ._guided_backprop import guided_backprop, guided_relu
from ._integrated_gradients import IG_RULES, integrated_gradients
from ._job import (
    AttributeJob,
    AttributeRun,
    load_images,
    parse_options,
    run_attribute,
)
from ._lrp import LRP_RULES, LRPUnsupportedError, lrp, lrp_layer_relevance
from ._occlusion import occlusion, patch_masks
from ._overlay import attribution_grid, colorize, normalize_maps, overlay, save_figure
from ._random import random_map
from ._registry import METHODS, get_method, method_names
from ._smoothgrad import smoothgrad
from ._surrogate import (
    SUPERPIXEL_METHODS,
    kernel_shap,
    kernel_shap_values,
    lime,
    lime_coefficients,
    superpixels,
)
from ._targets import PREDICTED, resolve_target, target_classes

__all__ = [
    "IG_RULES",
    "LRP_RULES",
    "METHODS",
    "NORMS",
    "PREDICTED",
    "REDUCTIONS",
    "SUPERPIXEL_METHODS",
    "AttackResult",
    "AttributeJob",
    "AttributeRun",
    "Attribution",
    "CurveResult",
    "LRPUnsupportedError",
    "RandomizationResult",
    "attribution_grid",
    "colorize",
    "deletion_curve",
    "eps_needed",
    "fgsm",
    "get_method",
    "gradcam",
    "gradient_x_input",
    "guided_backprop",
    "guided_relu",
    "insertion_curve",
    "integrated_gradients",
    "kernel_shap",
    "kernel_shap_values",
    "lime",
    "lime_coefficients",
    "load_images",
    "lrp",
    "lrp_layer_relevance",
    "method_names",
    "normalize_maps",
    "occlusion",
    "overlay",
    "parse_options",
    "patch_masks",
    "pgd",
    "random_map",
    "randomization_check",
    "randomize_params",
    "reduce_channels",
    "resolve_target",
    "run_attribute",
    "save_figure",
    "smoothgrad",
    "spearman",
    "ssim",
    "superpixels",
    "target_classes",
    "vanilla_gradient",
]
