"""What the job dataclasses of the probes package share: a field with its command-line help
(``--flag`` words, read by ``lucidax.cli``) and the help texts every command has."""

from __future__ import annotations

import dataclasses
from typing import Any

WEIGHTS_HELP = ("checkpoint file (.pth/.pt/.bin/.safetensors/.npz), or 'random' (default: the "
                "model's shipped weights; a model that ships none runs with random weights "
                "and says so)")
MEMORY_HELP = ("refuse, before anything is written, a job whose estimated memory need "
               "exceeds the available memory (--no-memory-check tries anyway)")


def flag(default: Any, text: str) -> Any:
    """A dataclass field with its command-line help (``--flag`` vocabulary) as metadata."""
    return dataclasses.field(default=default, metadata={"help": text})


def load_model(model: Any, weights: Any) -> Any:
    """``model`` loaded by name (with ``weights``), or the Model given."""
    if isinstance(model, str):
        import lucidax.models as lm

        return lm.load(model, weights)
    if weights is not None:
        raise ValueError("weights= is only used with a model name")
    return model
