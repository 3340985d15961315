"""lucidax: feature visualization, neuron probing and concept tests for CNNs in JAX."""

__version__ = "0.1.0"

from . import models  # noqa: E402

__all__ = ["__version__", "models"]
