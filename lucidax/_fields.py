"""Shared by the config dataclasses of every package (explicitly shared private module, like
``lucidax._files``): a field with its command-line help (``--flag`` words, read by
``lucidax.cli``'s ``add_dataclass_flags``), the help texts several commands share, and the
model-by-name loader of the jobs."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

__all__ = ["MEMORY_HELP", "WEIGHTS_HELP", "flag", "load_model"]

WEIGHTS_HELP = ("checkpoint file (.pth/.pt/.bin/.safetensors/.npz), or 'random' (default: the "
                "model's shipped weights; a model that ships none runs with random weights "
                "and says so)")
MEMORY_HELP = ("refuse, before anything is written, a job whose estimated memory need "
               "exceeds the available memory (--no-memory-check tries anyway)")


def flag(default: Any, help: str, *, choices: Sequence[Any] | None = None,
         required: bool = False, name: str | None = None) -> Any:
    """A dataclass field with its command-line flag as metadata: ``help`` (``--flag``
    vocabulary), ``choices`` (the values the flag accepts), ``required`` (the command needs
    the flag; the field's default still serves Python callers) and ``name`` (the flag's name
    when it is not ``--field-name``, e.g. ``class`` for ``target_class``)."""
    metadata: dict[str, Any] = {"help": help}
    if choices is not None:
        metadata["choices"] = tuple(choices)
    if required:
        metadata["required"] = True
    if name is not None:
        metadata["name"] = name
    return dataclasses.field(default=default, metadata=metadata)


def load_model(model: Any, weights: Any) -> Any:
    """``model`` loaded by name (with ``weights``), or the Model given."""
    if isinstance(model, str):
        import lucidax.models as lm

        return lm.load(model, weights)
    if weights is not None:
        raise ValueError("weights= is only used with a model name")
    return model
