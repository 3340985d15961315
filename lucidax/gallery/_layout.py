"""Pixel layout of the PNGs: per-unit grids, per-layer contact sheets, loss curves."""

from __future__ import annotations

import io
import math

import numpy as np

from .._files import image_grid

__all__ = [
    "PAD",
    "contact_sheet",
    "dim_tile",
    "first_tile",
    "grid_layout",
    "loss_png",
    "sheet_layout",
    "sheet_position",
    "unit_grid",
]

PAD = 2  # px between tiles
GAP = 6  # px between the renders row and the dataset examples
BACKGROUND = 238


def grid_layout(variants: int, examples: int, tile: int) -> dict[str, object]:
    """Geometry of a unit grid: row 0 holds the renders, the rows below the dataset examples.

    Returns ``{"cols", "rows", "width", "height", "renders": [(x, y)], "examples": [(x, y)]}``.
    """
    cols = max(variants, min(examples, 4)) if examples else variants
    ex_rows = math.ceil(examples / cols) if examples else 0
    step = tile + PAD
    renders = [(PAD + c * step, PAD) for c in range(variants)]
    y0 = PAD + tile + (GAP if ex_rows else 0)
    ex = [(PAD + (i % cols) * step, y0 + PAD + (i // cols) * step) for i in range(examples)]
    width = PAD + cols * step
    height = (y0 + PAD + ex_rows * step) if ex_rows else PAD + step
    return {
        "cols": cols,
        "rows": 1 + ex_rows,
        "width": width,
        "height": height,
        "renders": renders,
        "examples": ex,
    }


def unit_grid(renders: np.ndarray, examples: np.ndarray | None, n_examples: int) -> np.ndarray:
    """uint8 ``[H, W, 3]`` grid of ``renders`` ``[V, t, t, 3]`` and ``examples`` ``[k, t, t, 3]``
    (uint8). ``n_examples`` fixes the layout (missing examples stay blank) so every unit of a
    gallery has the same geometry."""
    v, t = renders.shape[0], renders.shape[1]
    lay = grid_layout(v, n_examples, t)
    out = np.full((lay["height"], lay["width"], 3), BACKGROUND, np.uint8)
    for (x, y), img in zip(lay["renders"], renders, strict=True):
        out[y : y + t, x : x + t] = img
    if examples is not None:
        for (x, y), img in zip(lay["examples"], examples, strict=False):
            out[y : y + t, x : x + t] = img
    return out


def first_tile(grid: np.ndarray, tile: int) -> np.ndarray:
    """The first render of a unit grid."""
    return grid[PAD : PAD + tile, PAD : PAD + tile, :3]


def dim_tile(tile: np.ndarray) -> np.ndarray:
    """A silent unit's sheet tile: grey, faded toward the background, with a dark diagonal
    stroke (visible at any tile size, in colour and in print)."""
    t = np.asarray(tile, np.float32)[..., :3]
    grey = t @ np.asarray([0.299, 0.587, 0.114], np.float32)
    out = 0.35 * grey + 0.65 * BACKGROUND
    n = min(out.shape[0], out.shape[1])
    i = np.arange(n)
    for d in (-1, 0, 1):  # a 3 px line from the top-right to the bottom-left corner
        ok = (i + d >= 0) & (i + d < n)
        out[i[ok], n - 1 - (i[ok] + d)] = 90
    return np.repeat(np.clip(out, 0, 255).astype(np.uint8)[..., None], 3, axis=-1)


def sheet_layout(n: int) -> tuple[int, int]:
    """``(cols, rows)`` of a contact sheet of ``n`` tiles."""
    cols = max(1, min(16, math.ceil(math.sqrt(2 * n)), n))
    return cols, math.ceil(n / cols) if n else 0


def sheet_position(i: int, n: int, tile: int) -> tuple[int, int]:
    """Top-left ``(x, y)`` of tile ``i`` in a sheet of ``n`` tiles."""
    cols, _ = sheet_layout(n)
    r, c = divmod(i, cols)
    return PAD + c * (tile + PAD), PAD + r * (tile + PAD)


def contact_sheet(tiles: list[np.ndarray], tile: int) -> np.ndarray:
    """uint8 sheet of ``tiles`` (each ``[tile, tile, 3]``), row-major (one blank cell when
    there is none): :func:`lucidax._files.image_grid` with the sheet's columns."""
    n = len(tiles)
    cols, _ = sheet_layout(n)
    if n == 0:
        return np.full((2 * PAD + tile, PAD + cols * (tile + PAD), 3), BACKGROUND, np.uint8)
    return image_grid(np.asarray(tiles, np.uint8), cols=cols, pad=PAD, fill=BACKGROUND)


class _LossPlotter:
    """One reusable Agg figure per number of curves: only the line data and the title change
    between units (building a figure per unit costs several times more than drawing it)."""

    def __init__(self, n_lines: int) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.fig = Figure(figsize=(3.6, 2.2), dpi=80)
        FigureCanvasAgg(self.fig)
        self.fig.subplots_adjust(left=0.2, right=0.97, bottom=0.2, top=0.88)
        ax = self.ax = self.fig.add_subplot(1, 1, 1)
        self.lines = [
            ax.plot([0, 1], [0, 1], lw=1.2, label=f"render {v}")[0] for v in range(n_lines)
        ]
        ax.set_xlabel("step", fontsize=8, labelpad=1)
        ax.set_ylabel("loss", fontsize=8, labelpad=1)
        ax.tick_params(labelsize=7)
        self.title = ax.set_title("", fontsize=8)
        if n_lines > 1:
            ax.legend(fontsize=6, frameon=False)
        ax.grid(alpha=0.3)

    def __call__(self, loss: np.ndarray, title: str) -> bytes:
        steps = np.arange(1, loss.shape[0] + 1)
        for v, line in enumerate(self.lines):
            line.set_data(steps, np.where(np.isfinite(loss[:, v]), loss[:, v], np.nan))
        self.ax.relim()
        self.ax.autoscale_view()
        self.title.set_text(title)
        buf = io.BytesIO()
        self.fig.savefig(buf, format="png", metadata={"Software": None})
        return buf.getvalue()


_PLOTTERS: dict[int, _LossPlotter] = {}


def loss_png(loss: np.ndarray, *, title: str = "") -> bytes:
    """PNG bytes of loss curves ``[steps, V]`` (one line per render), drawn with Agg."""
    loss = np.asarray(loss, np.float64)
    if loss.ndim == 1:
        loss = loss[:, None]
    n = loss.shape[1]
    if n not in _PLOTTERS:
        _PLOTTERS[n] = _LossPlotter(n)
    return _PLOTTERS[n](loss, title)
