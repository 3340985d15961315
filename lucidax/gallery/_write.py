"""Files of one unit (its grid PNG, loss PNG and manifest entry) and each layer's contact
sheet."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np

from lucidax._files import png_bytes, to_uint8
from lucidax.visualize import SILENT_EPS, silent_on_data, stuck_renders

from ._config import GalleryConfig
from ._dataset import _Examples
from ._examples import ReceptiveField, example_tile
from ._io import atomic_write_bytes, safe_path
from ._layout import contact_sheet, dim_tile, first_tile, loss_png, unit_grid
from ._plan import _Batch


def _finite_or_none(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _write_unit(
    out: Path,
    config: GalleryConfig,
    b: _Batch,
    j: int,
    unit: int,
    res: dict[str, np.ndarray],
    rf: ReceptiveField | None,
    topk,
    examples: _Examples | None,
    layer_dir: str,
    top_k: int,
    tag: str,
) -> dict[str, Any]:
    v = config.variants
    cols = slice(j * v, (j + 1) * v)
    renders = to_uint8(res["images"][cols], rgb=True, nan=0.5)  # failed: grey
    ex_tiles = None
    ex_list: list[dict[str, Any]] = []
    dataset_max = None
    # silent on the data: no top examples (they would be arbitrary images at activation 0)
    data_silent = topk is not None and examples is not None and silent_on_data(
        topk.values[unit, :top_k])
    if data_silent:
        dataset_max = _finite_or_none(topk.values[unit, 0])
    elif topk is not None and examples is not None:
        tiles = []
        for r in range(top_k):
            idx = int(topk.index[unit, r])
            val = float(topk.values[unit, r])
            if idx < 0 or not math.isfinite(val) or abs(val) <= SILENT_EPS:
                continue  # an image at activation 0 is one of many ties: arbitrary
            pos = int(topk.pos[unit, r])
            tiles.append(example_tile(examples.images[idx], rf, pos, config.size))
            box = None
            if rf is not None and not rf.full:
                box = list(rf.box_at(*divmod(pos, rf.shape[1])))
            ex_list.append(
                {"index": idx, "value": val, "caption": examples.captions[idx], "box": box}
            )
        if tiles:
            ex_tiles = to_uint8(np.stack(tiles), rgb=True, nan=0.5)
        dataset_max = _finite_or_none(topk.values[unit, 0])
    grid = unit_grid(renders, ex_tiles, top_k)
    d = safe_path(out, layer_dir)
    d.mkdir(exist_ok=True)
    grid_path = safe_path(out, layer_dir, f"{unit}.png")
    loss_path = safe_path(out, layer_dir, f"{unit}_loss.png")
    atomic_write_bytes(grid_path, png_bytes(grid), tag=tag)
    atomic_write_bytes(
        loss_path, loss_png(res["loss"][:, cols], title=f"{b.layer} unit {unit}"), tag=tag
    )
    acts = [float(a) for a in res["acts"][cols]]
    finite = bool(np.all(res["finite"][cols]))
    render_silent = finite and bool(np.all(stuck_renders(res["loss"][:, cols])))
    reasons = [r for r, on in (("dataset", data_silent), ("render", render_silent)) if on]
    best = max((a for a in acts if math.isfinite(a)), default=None)
    ratio = None
    if best is not None and dataset_max is not None and dataset_max > 0:
        ratio = best / dataset_max
    return {
        "status": "done" if finite else "failed",
        "grid": f"{layer_dir}/{unit}.png",
        "loss_png": f"{layer_dir}/{unit}_loss.png",
        "page": f"{layer_dir}/{unit}.html",
        "render_act": [_finite_or_none(a) for a in acts],
        "objective": [_finite_or_none(a) for a in res["objective"][cols]],
        "finite": [bool(f) for f in res["finite"][cols]],
        "dataset_max": dataset_max,
        "ratio": _finite_or_none(ratio) if ratio is not None else None,
        "examples": ex_list,
        "silent": bool(reasons),
        "silent_reasons": reasons,
    }


def _write_sheets(out: Path, m: dict[str, Any], tag: str) -> None:
    tile = m["layout"]["tile"]
    for layer, units in m["units"].items():
        if not units or layer not in m["layers"]:
            continue
        d = m["layers"][layer]["dir"]
        tiles = []
        for u in sorted(units, key=int):
            try:
                grid = iio.imread(safe_path(out, d, f"{u}.png"), plugin="pillow")
                t = first_tile(grid, tile)
                tiles.append(dim_tile(t) if units[u].get("silent") else t)
            except Exception:  # noqa: BLE001 - a missing/broken file shows as blank
                tiles.append(np.full((tile, tile, 3), 200, np.uint8))
        atomic_write_bytes(
            safe_path(out, d, "sheet.png"), png_bytes(contact_sheet(tiles, tile)), tag=tag
        )

