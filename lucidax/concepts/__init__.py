"""lucidax.concepts: concept discovery -- factor a layer's activations into a dictionary of
directions ("concepts") and show each one.

(Module docstring completed by the integrator.)
"""

from ._factorization import Factorization, codes, factorize
from ._importance import (
    ConceptImportance,
    gradient_importance,
    importance_agreement,
    sobol_design,
    sobol_importance,
    sobol_total_indices,
)
from ._nmf import nmf
from ._pca import pca
from ._sae import topk_sae
from ._stability import Stability, match_concepts, stability

__all__: list[str] = [
    "Factorization",
    "Stability",
    "codes",
    "factorize",
    "match_concepts",
    "nmf",
    "pca",
    "stability",
    "topk_sae",
    "ConceptImportance",
    "gradient_importance",
    "importance_agreement",
    "sobol_design",
    "sobol_importance",
    "sobol_total_indices",
]
