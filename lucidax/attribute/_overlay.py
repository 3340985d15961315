"""Attribution maps as pictures: colormap overlays, grids and a titled figure.

Unsigned maps (gradient magnitude, Grad-CAM, ...) are scaled by their 99th percentile and
shown with a sequential colormap (``inferno``); signed maps (integrated gradients, occlusion,
LIME, KernelSHAP, LRP) are scaled by the 99th percentile of ``|map|`` and shown with a
diverging one (``bwr``: red = evidence for the target, blue = against). The colour is blended
over the image with an opacity that grows with ``|map|``, so unimportant pixels show the image.
:func:`save_figure` draws a colour bar under each method's column; :func:`legend_strip`,
:func:`legend_css` and :func:`legend_labels` give the same legend to other pictures and pages.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lucidax._files import image_grid, save_plot

__all__ = [
    "attribution_grid", "colorize", "legend_css", "legend_labels", "legend_strip",
    "normalize_maps", "overlay", "save_figure",
]

#: What the percentile scaling means, in words (figures and pages).
SCALING_NOTE = ("each map is divided by the 99th percentile of its |values| (per image) and "
                "clipped to [-1, 1] (unsigned maps: [0, 1]); the colour is blended over the "
                "greyed image with an opacity growing with |value|")


def _as_maps(maps: Any) -> np.ndarray:
    arr = np.asarray(maps, np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"maps must be [N, H, W] (or one [H, W]); got shape {arr.shape}")
    return np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)


def normalize_maps(maps: Any, *, signed: bool | None = None, percentile: float = 99.0
                   ) -> tuple[np.ndarray, bool]:
    """``(scaled, signed)``: each map divided by the ``percentile`` of ``|map|`` and clipped
    to ``[-1, 1]`` (signed) or ``[0, 1]``. ``signed=None``: signed when any value is < 0.

    Args:
      maps: ``[N, H, W]`` maps.
      signed: keep the sign (None: when any value is negative).
      percentile: the percentile of ``|map|`` that maps to 1.

    Example:
      >>> import numpy as np
      >>> from lucidax.attribute import normalize_maps
      >>> scaled, signed = normalize_maps(np.linspace(-2, 2, 9).reshape(1, 3, 3), percentile=100)
      >>> signed, float(scaled.min()), float(scaled.max())
      (True, -1.0, 1.0)
    """
    arr = _as_maps(maps)
    if signed is None:
        signed = bool((arr < 0).any())
    flat = np.abs(arr).reshape(len(arr), -1)
    scale = np.percentile(flat, percentile, axis=1) if flat.shape[1] else np.ones(len(arr))
    scale = np.where(scale > 0, scale, np.maximum(flat.max(1, initial=0.0), 1e-12))
    out = arr / scale[:, None, None]
    return (np.clip(out, -1, 1) if signed else np.clip(out, 0, 1)), signed


def colorize(values: Any, cmap: str) -> np.ndarray:
    """``[..., 3]`` RGB of ``values`` in ``[0, 1]`` through a matplotlib colormap.

    Args:
      values: an array in [0, 1].
      cmap: a matplotlib colormap name.

    Example:
      >>> import numpy as np
      >>> from lucidax.attribute import colorize
      >>> colorize(np.zeros((2, 4)), "gray").shape, colorize(np.ones(1), "gray").round(2).tolist()
      ((2, 4, 3), [[1.0, 1.0, 1.0]])
    """
    import matplotlib

    try:
        cm = matplotlib.colormaps[cmap]
    except KeyError as e:
        from lucidax.models import suggest

        raise ValueError(suggest(cmap, sorted(matplotlib.colormaps), what="colormap")) from e
    return cm(np.clip(np.asarray(values, np.float32), 0, 1))[..., :3].astype(np.float32)


def overlay(images: Any, maps: Any, *, cmap: str | None = None, alpha: float = 0.7,
            signed: bool | None = None) -> np.ndarray:
    """``[N, H, W, 3]`` images with their maps blended on top (see the module docstring).

    ``images`` float ``[N, H, W, C]`` in ``[0, 1]`` (grayscale is repeated to RGB); ``cmap``
    defaults to ``bwr`` for signed maps and ``inferno`` for unsigned ones.

    Args:
      images: ``[N, H, W, C]`` in [0, 1].
      maps: ``[N, H, W]`` maps (normalized with :func:`normalize_maps`).
      cmap: a matplotlib colormap (see above).
      alpha: the maps' opacity where they are strongest.
      signed: see :func:`normalize_maps`.

    Example:
      >>> from lucidax.attribute import overlay
      >>> import numpy as np
      >>> rng = np.random.default_rng(0)
      >>> images = rng.random((2, 32, 32, 3), dtype=np.float32)
      >>> maps = {"gradient": rng.random((2, 32, 32)), "ig": rng.normal(size=(2, 32, 32))}
      >>> overlay(images, maps["ig"]).shape
      (2, 32, 32, 3)
    """
    img = np.asarray(images, np.float32)
    if img.ndim == 3:
        img = img[None]
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    img = np.clip(img[..., :3], 0, 1)
    v, signed = normalize_maps(maps, signed=signed)
    if v.shape != img.shape[:3]:
        raise ValueError(f"maps {v.shape} do not match images {img.shape[:3]}")
    return _blend(img, v, signed, cmap, alpha)


def _blend(img: np.ndarray, v: np.ndarray, signed: bool, cmap: str | None,
           alpha: float) -> np.ndarray:
    """Scaled maps ``v`` (in [-1, 1] or [0, 1]) coloured and blended over RGB ``img``."""
    cmap = cmap or ("bwr" if signed else "inferno")
    heat = colorize((v + 1) / 2 if signed else v, cmap)
    a = (alpha * np.abs(v))[..., None]
    gray = img.mean(-1, keepdims=True) * 0.6 + img * 0.4  # de-saturate so the colours read
    return (1 - a) * gray + a * heat


def legend_strip(signed: bool, *, cmap: str | None = None, width: int = 256, height: int = 1,
                 background: float = 0.5, alpha: float = 0.7) -> np.ndarray:
    """``[height, width, 3]``: how the scaled values -1 (signed; else 0) ... +1, left to right,
    look blended over a ``background`` grey, as :func:`overlay` shows them."""
    ramp = np.linspace(-1.0 if signed else 0.0, 1.0, int(width), dtype=np.float32)
    v = np.broadcast_to(ramp, (int(height), int(width)))
    img = np.full((int(height), int(width), 3), background, np.float32)
    return _blend(img, v, bool(signed), cmap, alpha)


def legend_labels(signed: bool) -> tuple[str, str, str]:
    """``(left, middle, right)`` captions of :func:`legend_strip`."""
    if signed:
        return "-1 (against)", "0", "+1 (for)"
    return "0 (none)", "0.5", "1 (strongest)"


def legend_css(signed: bool, *, cmap: str | None = None, stops: int = 11) -> str:
    """A CSS ``linear-gradient`` of :func:`legend_strip` (for HTML legends)."""
    strip = legend_strip(signed, cmap=cmap, width=stops)[0]
    rgb = np.round(np.clip(strip, 0, 1) * 255).astype(int)
    parts = [f"#{r:02x}{g:02x}{b:02x} {100 * i / (stops - 1):.0f}%"
             for i, (r, g, b) in enumerate(rgb)]
    return "linear-gradient(to right, " + ", ".join(parts) + ")"


def attribution_grid(images: Any, maps: Mapping[str, Any], *, pad: int = 2,
                     overlay_maps: bool = True, cmap: str | None = None) -> np.ndarray:
    """One image: a row per image, columns = the image, then each method's map (overlaid on
    the image, or the bare colormapped map with ``overlay_maps=False``).

    Args:
      images: ``[N, H, W, C]`` images in [0, 1].
      maps: ``{method: [N, H, W]}``.
      pad: pixels between cells.
      overlay_maps: blend each map over its image (False: the colormapped map alone).
      cmap: a matplotlib colormap (default: ``bwr`` for signed maps, ``inferno`` otherwise).

    Returns:
      ``[rows, cols, 3]`` float image.

    Example:
      >>> from lucidax.attribute import attribution_grid
      >>> import numpy as np
      >>> rng = np.random.default_rng(0)
      >>> images = rng.random((2, 32, 32, 3), dtype=np.float32)
      >>> maps = {"gradient": rng.random((2, 32, 32)), "ig": rng.normal(size=(2, 32, 32))}
      >>> attribution_grid(images, maps).shape
      (70, 104, 3)
    """
    img = np.asarray(images, np.float32)
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    img = np.clip(img[..., :3], 0, 1)
    cols = [img]
    for m in maps.values():
        if overlay_maps:
            cols.append(overlay(img, m, cmap=cmap))
        else:
            v, signed = normalize_maps(m)
            cols.append(colorize((v + 1) / 2 if signed else v, cmap or
                                 ("bwr" if signed else "inferno")))
    tiles = np.stack(cols, axis=1).reshape(-1, *img.shape[1:3], 3)
    return image_grid(tiles, cols=len(cols), pad=pad)


def save_figure(path: str | os.PathLike, images: Any, maps: Mapping[str, Any], *,
                titles: Sequence[str] | None = None, row_labels: Sequence[str] | None = None,
                dpi: int = 100, cell: float = 1.3) -> None:
    """Atomically write a matplotlib figure (PNG/SVG/PDF by extension): the image grid of
    :func:`attribution_grid` with a title over each column, a label left of each row and,
    under each method's column, a colour bar of its map's scale (see the module docstring).

    Args:
      path: the figure file.
      images: ``[N, H, W, C]`` images in [0, 1].
      maps: ``{method: [N, H, W]}``.
      titles: column titles (default: "image" and the method names).
      row_labels: a label per image.
      dpi: the figure's resolution.
      cell: inches per cell.

    Example:
      >>> from lucidax.attribute import save_figure
      >>> import numpy as np
      >>> rng = np.random.default_rng(0)
      >>> images = rng.random((2, 32, 32, 3), dtype=np.float32)
      >>> maps = {"gradient": rng.random((2, 32, 32)), "ig": rng.normal(size=(2, 32, 32))}
      >>> save_figure("figure.png", images, maps, row_labels=["a", "b"])
      >>> import os; os.path.getsize("figure.png") > 0
      True
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    img = np.asarray(images, np.float32)
    n = len(img)
    names = ["image", *maps] if titles is None else list(titles)
    ncol = 1 + len(maps)
    bar = 0.62  # inches of the colour-bar row
    fig = plt.figure(figsize=(max(cell * ncol, 3.2), cell * n + 0.3 + bar))
    gs = fig.add_gridspec(n + 1, ncol, height_ratios=[cell] * n + [bar])
    axes = np.array([[fig.add_subplot(gs[r, c]) for c in range(ncol)] for r in range(n)])
    tiles = [np.clip(img[..., :3] if img.shape[-1] >= 3 else np.repeat(img, 3, -1), 0, 1)]
    signs = []
    for m in maps.values():
        signs.append(normalize_maps(m)[1])
        tiles.append(overlay(img, m))
    for c, signed in enumerate(signs, start=1):
        ax = fig.add_subplot(gs[n, c])
        ax.imshow(legend_strip(signed, height=1), aspect="auto", interpolation="nearest",
                  extent=(-1.0 if signed else 0.0, 1.0, 0, 1))
        ax.set_box_aspect(0.14)
        ax.set_yticks([])
        ax.set_xticks([-1.0, 0.0, 1.0] if signed else [0.0, 1.0])
        ax.set_xticklabels(["\u22121", "0", "+1"] if signed else ["0", "1"], fontsize=6)
        ax.set_xlabel("blue: against, red: for" if signed else "|attribution|", fontsize=6,
                      labelpad=1)
        ax.tick_params(length=2, pad=1)
    note = fig.add_subplot(gs[n, 0])
    note.axis("off")
    note.text(0.5, 0.5, "colour: map / its\n99th pct of |map|,\nper image", fontsize=6,
              va="center", ha="center", transform=note.transAxes)
    for r in range(n):
        for c in range(ncol):
            ax = axes[r, c]
            ax.imshow(tiles[c][r], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(str(names[c]), fontsize=8)
            if c == 0 and row_labels is not None:
                ax.set_ylabel(str(row_labels[r]), fontsize=7)
    fig.tight_layout(pad=0.3)
    try:
        save_plot(path, fig, dpi=dpi)
    finally:
        plt.close(fig)
