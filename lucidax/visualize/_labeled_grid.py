"""Image grids with column headers and row labels, as pixel-exact PNGs.

The tiles are tiled by :func:`lucidax._files.image_grid` and enlarged by pixel repetition
(nearest neighbour: the pixels stay crisp); matplotlib only draws the text, on a white margin
above (column headers) and left of (row labels) the grid, which is pasted unchanged. Headers
too wide for their column are written vertically.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._files import image_grid, save_png

__all__ = ["LabeledGrid", "labeled_grid", "save_labeled_grid"]

_MAX_CHARS = 28  # longer labels are shortened in the middle ("...")


@dataclasses.dataclass(frozen=True, eq=False)
class LabeledGrid:
    """A grid with its labels.

    Attributes:
      image: uint8 ``[H, W, 3]``: the labelled picture.
      grid: uint8 ``[h, w, 3]``: the bare (enlarged) grid, pasted at ``(top, left)``.
      top, left: the margins (px) holding the column headers and the row labels.
      col_labels, row_labels: the texts drawn (shortened if long), one per column / row.
      cell: ``(height, width)`` of one enlarged tile; pad: px between tiles (enlarged).
      vertical_headers: True when the headers were written vertically (too wide).
    """

    image: np.ndarray
    grid: np.ndarray
    top: int
    left: int
    col_labels: tuple[str, ...]
    row_labels: tuple[str, ...]
    cell: tuple[int, int]
    pad: int
    vertical_headers: bool


def _short(text: Any) -> str:
    s = str(text).replace("\n", " ")
    if len(s) <= _MAX_CHARS:
        return s
    keep = _MAX_CHARS - 3
    return s[: (keep + 1) // 2] + "..." + s[len(s) - keep // 2:]


def _text_size(fig: Any, renderer: Any, text: str, font_px: float, rotation: float) -> tuple:
    t = fig.text(0, 0, text, fontsize=font_px, rotation=rotation)
    bb = t.get_window_extent(renderer=renderer)
    t.remove()
    return bb.width, bb.height


def labeled_grid(
    images: Any,
    *,
    cols: int,
    col_labels: Sequence[Any] | None = None,
    row_labels: Sequence[Any] | None = None,
    pad: int = 2,
    scale: int = 1,
    font_px: float = 11.0,
) -> LabeledGrid:
    """Tile ``images`` ``[N, h, w, C]`` (floats in [0, 1]) row-major, ``cols`` per row, enlarge
    the grid ``scale`` times by pixel repetition and write ``col_labels`` (one per column)
    above it and ``row_labels`` (one per row) left of it (None: no margin there)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if isinstance(scale, bool) or int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be an int >= 1; got {scale!r}")
    scale = int(scale)
    arr = np.asarray(images, np.float32)
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4 or len(arr) == 0:
        raise ValueError(f"images must be a non-empty [N, h, w, C] stack; got {arr.shape}")
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    arr = arr[..., :3]
    rows = -(-len(arr) // cols)
    col_labels = tuple(_short(c) for c in col_labels) if col_labels is not None else ()
    row_labels = tuple(_short(r) for r in row_labels) if row_labels is not None else ()
    if col_labels and len(col_labels) != cols:
        raise ValueError(f"{len(col_labels)} column labels for {cols} columns")
    if row_labels and len(row_labels) != rows:
        raise ValueError(f"{len(row_labels)} row labels for {rows} rows")
    grid = image_grid(arr, cols=cols, pad=pad)
    grid = np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)
    grid = np.round(np.clip(grid, 0.0, 1.0) * 255).astype(np.uint8)
    ch, cw = arr.shape[1] * scale, arr.shape[2] * scale
    p = pad * scale

    # measure the texts (72 dpi: a point is a pixel)
    fig = Figure(figsize=(1, 1), dpi=72)
    canvas = FigureCanvasAgg(fig)
    renderer = canvas.get_renderer()
    col_w = [_text_size(fig, renderer, c, font_px, 0)[0] for c in col_labels]
    vertical = bool(col_w) and bool(max(col_w) > cw + p)
    if col_labels:
        sizes = [_text_size(fig, renderer, c, font_px, 90 if vertical else 0)
                 for c in col_labels]
        top = int(np.ceil(max(h for _, h in sizes))) + 6
    else:
        top = 0
    left = (int(np.ceil(max(_text_size(fig, renderer, r, font_px, 0)[0] for r in row_labels)))
            + 8 if row_labels else 0)

    height, width = top + grid.shape[0], left + grid.shape[1]
    fig = Figure(figsize=(width / 72, height / 72), dpi=72)
    fig.patch.set_facecolor("white")
    canvas = FigureCanvasAgg(fig)
    ink = "#222222"
    for j, text in enumerate(col_labels):
        x = left + p + j * (cw + p) + cw / 2  # centre of column j, px from the left
        fig.text(x / width, 1 - (top - 3) / height, text, fontsize=font_px, color=ink,
                 rotation=90 if vertical else 0, ha="center", va="bottom")
    for i, text in enumerate(row_labels):
        y = top + p + i * (ch + p) + ch / 2  # centre of row i, px from the top
        fig.text((left - 5) / width, 1 - y / height, text, fontsize=font_px, color=ink,
                 ha="right", va="center")
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    out = np.array(rgba[..., :3], np.uint8)
    if out.shape[:2] != (height, width):  # rounding of the figure size: pad / crop to size
        fixed = np.full((height, width, 3), 255, np.uint8)
        hh, ww = min(height, out.shape[0]), min(width, out.shape[1])
        fixed[:hh, :ww] = out[:hh, :ww]
        out = fixed
    out[top:, left:] = grid  # the tiles themselves, pixel for pixel
    return LabeledGrid(out, grid, top, left, col_labels, row_labels, (ch, cw), p, vertical)


def save_labeled_grid(path: str | os.PathLike, images: Any, *, cols: int,
                      col_labels: Sequence[Any] | None = None,
                      row_labels: Sequence[Any] | None = None, pad: int = 2, scale: int = 1,
                      font_px: float = 11.0) -> str:
    """:func:`labeled_grid` written as a PNG at ``path`` (atomically); returns the path."""
    g = labeled_grid(images, cols=cols, col_labels=col_labels, row_labels=row_labels, pad=pad,
                     scale=scale, font_px=font_px)
    save_png(path, g.image)
    return os.fspath(path)
