"""lucidax.concepts: concept discovery -- factor a layer's activations into a dictionary of
directions ("concepts") and show each one (CRAFT, Fel et al. CVPR 2023; sparse autoencoders).

* Factorizations of ``A [n, C]`` (every spatial position of every image x channels) into
  ``U [n, K] · W [K, C]``, streamed over row chunks in bounded memory, deterministic from a
  key: :func:`nmf` (accelerated HALS), :func:`topk_sae` (TopK sparse autoencoder),
  :func:`pca`; :func:`factorize` picks one, :class:`Factorization` holds ``W``, the errors and
  a jittable ``encode``; :func:`codes` encodes rows in chunks.
* :func:`stability` / :func:`match_concepts`: concepts of several seeds matched by Hungarian
  matching on cosine similarity.
* Per concept: :func:`layer_activations` (rows through :func:`lucidax.probes.extract`),
  :func:`top_examples`, :func:`crop_at`, :func:`heatmaps`, :func:`render_concepts` (every
  direction in one batched :func:`lucidax.visualize.render`), :func:`direction_activations`.
* Importance for a class: :func:`sobol_importance` (CRAFT's total-order Sobol indices),
  :func:`gradient_importance` (gradient x concept), :func:`importance_agreement`.
* :class:`ConceptsJob` / :func:`run_concepts`: what ``lucidax concepts`` runs (resumable
  stages, a page per layer and per class).

This is its own package (not part of :mod:`lucidax.probes`) because it uses the render engine
and attribution overlays as well as the probes' extraction: ``models <- visualize, probes,
attribute <- concepts <- cli``.
"""

from ._discover import (
    ConceptExamples,
    ConceptRenders,
    crop_at,
    direction_activations,
    heatmaps,
    layer_activations,
    render_concepts,
    top_examples,
)
from ._factorization import Factorization, codes, factorize
from ._importance import (
    ConceptImportance,
    gradient_importance,
    importance_agreement,
    sobol_design,
    sobol_importance,
    sobol_total_indices,
)
from ._job import ConceptsJob, ConceptsRun, LayerConcepts, run_concepts
from ._nmf import nmf
from ._pca import pca
from ._sae import topk_sae
from ._stability import Stability, match_concepts, stability

__all__ = [
    "ConceptExamples",
    "ConceptImportance",
    "ConceptRenders",
    "ConceptsJob",
    "ConceptsRun",
    "Factorization",
    "LayerConcepts",
    "Stability",
    "codes",
    "crop_at",
    "direction_activations",
    "factorize",
    "gradient_importance",
    "heatmaps",
    "importance_agreement",
    "layer_activations",
    "match_concepts",
    "nmf",
    "pca",
    "render_concepts",
    "run_concepts",
    "sobol_design",
    "sobol_importance",
    "sobol_total_indices",
    "stability",
    "top_examples",
    "topk_sae",
]
