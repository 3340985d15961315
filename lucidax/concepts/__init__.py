"""lucidax.concepts: concept discovery -- factor a layer's activations into a dictionary of
directions ("concepts") and show each one.

(Module docstring completed by the integrator.)
"""

from ._importance import (
    ConceptImportance,
    gradient_importance,
    importance_agreement,
    sobol_design,
    sobol_importance,
    sobol_total_indices,
)

__all__: list[str] = [
    "ConceptImportance",
    "gradient_importance",
    "importance_agreement",
    "sobol_design",
    "sobol_importance",
    "sobol_total_indices",
]
