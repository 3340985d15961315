"""Silent units: units that never activate, on real images or in their own renders.

Two tests, shared by ``lucidax render`` and the gallery:

* **on the data** (:func:`silent_on_data`): every one of the unit's best dataset images gives
  activation 0, i.e. ``|a| <= SILENT_EPS`` for each of its top-k per-image values (the
  unit's maximum over space). For a ReLU-type layer (ReLU, ReLU6) that is "the maximum over
  the dataset is 0": the unit outputs 0 on every image. A linear layer (logits,
  pre-activations) is not silent when its values are merely negative: its best images still
  rank, so they stay meaningful.
* **in its renders** (:func:`stuck_renders`): the render never left its random start: its
  objective was 0 (``|objective| <= SILENT_EPS``) at the last step *and* on at least
  ``STUCK_SHARE`` (90%) of all steps. A ReLU unit that is off on the start image passes no
  gradient to it, so the image does not move; transforms may switch it on for a step or two
  (measured on the starter model's conv2 unit 0: 1 of 256 steps, 2e-4 at most), which does
  not count. A weak render that does move (objective > 0 on most steps) is not silent, nor is
  one that woke up late (objective > 0 at the end).

A unit is silent when either test says so; :data:`REASONS` names the two.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "REASONS",
    "SILENT_EPS",
    "STUCK_SHARE",
    "describe",
    "silent_on_data",
    "stuck_renders",
    "zero_steps",
]

#: Activations/objectives with ``|x| <= SILENT_EPS`` count as 0 (an off ReLU gives exactly 0).
SILENT_EPS = 1e-6
#: A render whose objective is 0 at the end and on at least this share of steps is stuck.
STUCK_SHARE = 0.9
#: Reason codes stored with a silent unit: never activates on the dataset images / its
#: renders never left their start.
REASONS = ("dataset", "render")


def zero_steps(loss: Any) -> np.ndarray:
    """Number of steps with objective 0, per render: ``loss`` ``[steps, B]`` (``-objective``,
    as :class:`lucidax.visualize.RenderResult.loss`) -> int ``[B]`` (NaN counts as not 0)."""
    loss = np.asarray(loss, np.float64)
    if loss.ndim == 1:
        loss = loss[:, None]
    return np.sum(np.abs(loss) <= SILENT_EPS, axis=0)


def stuck_renders(loss: Any) -> np.ndarray:
    """bool ``[B]``: which renders never left their start (see the module docstring) from the
    loss trace ``[steps, B]`` (``-objective`` at each step, last step last).

    Example:
      >>> import numpy as np
      >>> from lucidax.visualize import stuck_renders
      >>> loss = np.stack([np.zeros(64), -np.linspace(0, 5, 64)], axis=1)   # [steps, 2]
      >>> stuck_renders(loss).tolist()
      [True, False]
    """
    loss = np.asarray(loss, np.float64)
    if loss.ndim == 1:
        loss = loss[:, None]
    if loss.shape[0] == 0:
        return np.zeros(loss.shape[1], bool)
    last_zero = np.abs(loss[-1]) <= SILENT_EPS
    return last_zero & (zero_steps(loss) >= STUCK_SHARE * loss.shape[0])


def silent_on_data(top_values: Any) -> bool:
    """True when a unit's best dataset images (its top-k per-image values, -inf/NaN padding
    ignored) all give activation 0; False without any finite value (no data, no verdict).

    Args:
      top_values: ``[k]`` the unit's top-k activations over a dataset.

    Example:
      >>> import numpy as np
      >>> from lucidax.visualize import silent_on_data
      >>> silent_on_data(np.zeros(8)), silent_on_data(np.array([0.0, 0.3])), silent_on_data([])
      (True, False, False)
    """
    v = np.asarray(top_values, np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    return bool(v.size) and bool(np.all(np.abs(v) <= SILENT_EPS))


def describe(reasons: Any, *, n_images: int | None = None) -> str:
    """One sentence for a silent unit's reason codes (for pages and summaries).

    Args:
      reasons: the reason codes of a unit (as in a gallery manifest or ``render.json``).
      n_images: the number of dataset images behind a ``"data"`` reason.

    Example:
      >>> from lucidax.visualize import describe_silence
      >>> isinstance(describe_silence(["data", "render"], n_images=1000), str)
      True
    """
    parts = []
    if "dataset" in reasons:
        parts.append(
            "never activates on the "
            + (f"{n_images} dataset images" if n_images else "dataset images")
        )
    if "render" in reasons:
        parts.append("its renders never left their random start (objective 0)")
    return "; ".join(parts) or "silent"
