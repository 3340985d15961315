"""Fixed-size batches for compiled programs (private, shared by every part of lucidax).

A jitted function compiles once per input shape: the last, shorter batch of a loop is padded
to the full batch size (and its padding rows ignored), so a whole pass costs one compile.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = ["pad_batch", "valid_mask"]


def pad_batch(arr: np.ndarray, size: int, *, fill: Literal["edge", "zeros"] = "edge",
              ) -> np.ndarray:
    """``arr`` ``[n, ...]`` padded along axis 0 to ``size`` rows (``n <= size``): repeats of
    its last row (``fill="edge"``: real inputs, so padded rows stay finite everywhere) or
    zeros (``fill="zeros"``). Returned as is when it already has ``size`` rows."""
    arr = np.asarray(arr)
    n = arr.shape[0]
    if n == size:
        return arr
    if n > size:
        raise ValueError(f"a batch of {n} rows cannot be padded to {size}")
    if fill == "zeros" or n == 0:
        pad = np.zeros((size - n, *arr.shape[1:]), arr.dtype)
    elif fill == "edge":
        pad = np.repeat(arr[-1:], size - n, axis=0)
    else:
        raise ValueError(f"fill must be 'edge' or 'zeros', got {fill!r}")
    return np.concatenate([arr, pad])


def valid_mask(n: int, size: int) -> np.ndarray:
    """bool ``[size]``: True for the ``n`` real rows of a padded batch, False for padding."""
    mask = np.zeros(size, bool)
    mask[:n] = True
    return mask
