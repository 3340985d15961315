"""File-writing jobs on top of :func:`render` (what ``lucidax render`` calls)."""

from __future__ import annotations

import dataclasses
import numbers
import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._fields import MEMORY_HELP, flag
from .._files import check_int, image_grid, prepare_out_dir, save_json, save_png
from .._memory import check_memory, estimate_render
from .._storage import OUT_HELP, staged
from ._param import Param, cppn, fft, image, maco, pixel
from ._render import render
from ._silence import stuck_renders, zero_steps
from .objectives import channel

__all__ = [
    "PARAMS", "RenderJob", "default_init_sd", "parse_units", "render_job", "save_grid",
    "save_images", "unit_list",
]

#: the image parameterizations by name (``lucidax render --param``, ``RenderJob.param``)
PARAMS = {
    "image": lambda sd: image(sd=sd),
    "fft": lambda sd: fft(sd=sd),
    "pixel": lambda sd: pixel(sd=sd),
    "maco": lambda sd: maco(),
    "cppn": lambda sd: cppn(),
}


def save_images(folder: str | os.PathLike, images: Any, names: Sequence[str]) -> list[str]:
    """Write float [0, 1] images ``[N, h, w, C]`` as ``folder/<name>.png`` (atomically).

    Args:
      folder: the output folder (created).
      images: ``[N, H, W, C]`` in [0, 1].
      names: a file name stem per image.

    Example:
      >>> import numpy as np
      >>> from lucidax import visualize as viz
      >>> images = np.random.default_rng(0).random((3, 16, 16, 3), dtype=np.float32)
      >>> [p.split("/")[-1] for p in viz.save_images("renders", images, ["a", "b", "c"])]
      ['a.png', 'b.png', 'c.png']
    """
    images = np.asarray(images)
    if len(names) != len(images):
        raise ValueError(f"{len(images)} images but {len(names)} names")
    paths = []
    for img, name in zip(images, names, strict=True):
        path = os.path.join(os.fspath(folder), f"{name}.png")
        save_png(path, img)
        paths.append(path)
    return paths


def save_grid(path: str | os.PathLike, images: Any, *, cols: int | None = None, pad: int = 2,
              scale: int = 1) -> str:
    """Tile images ``[N, h, w, C]`` into one PNG at ``path`` (atomically); ``scale`` > 1
    enlarges the grid by pixel repetition (for small images, e.g. 64 px).

    Args:
      path: the PNG file.
      images: ``[N, H, W, C]`` in [0, 1].
      cols: images per row (default: about square).
      pad: pixels between images.
      scale: integer upscaling of every pixel.

    Example:
      >>> import numpy as np
      >>> from lucidax import visualize as viz
      >>> images = np.random.default_rng(0).random((3, 16, 16, 3), dtype=np.float32)
      >>> viz.save_grid("grid.png", images, cols=3, pad=2)
      'grid.png'
    """
    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be an int >= 1; got {scale!r}")
    grid = image_grid(np.asarray(images), cols=cols, pad=pad)
    if scale > 1:
        grid = np.repeat(np.repeat(grid, int(scale), axis=0), int(scale), axis=1)
    save_png(path, grid)
    return os.fspath(path)


def unit_list(spec: str | Sequence[int] | None) -> list[int] | None:
    """Units named by ``spec`` in the given order, duplicates dropped; None for ``"all"``/None.

    ``spec``: ``"all"``, comma-separated indices and ranges (``"0-7,12"``), or a sequence of
    non-negative ints. Raises ``ValueError`` saying what was wrong (no range check: see
    :func:`parse_units`).

    Example:
      >>> from lucidax.visualize import unit_list
      >>> unit_list("0-3,8"), unit_list(None)
      ([0, 1, 2, 3, 8], None)
    """
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "all"):
        return None
    if isinstance(spec, str):
        units: list[int] = []
        for part in filter(None, (p.strip() for p in spec.split(","))):
            m = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
            if not m:
                raise ValueError(f"Bad unit range {part!r} in units={spec!r}: use 'all' or "
                                 f"comma-separated indices and ranges like '0-15,20'")
            lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
            if hi < lo:
                raise ValueError(f"Bad unit range {part!r} in units={spec!r}: the end is "
                                 f"before the start")
            units.extend(range(lo, hi + 1))
    else:
        try:
            values = list(spec)
        except TypeError:
            raise ValueError(f"units must be 'all', a range string like '0-15,20' or a "
                             f"sequence of ints; got {spec!r}") from None
        for v in values:
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0:
                raise ValueError(f"units must be non-negative ints, got {v!r} in {spec!r}")
        units = [int(v) for v in values]
    if not units:
        raise ValueError(f"units={spec!r} selects no unit; use 'all' or '0-15,20'")
    return list(dict.fromkeys(units))


def parse_units(spec: str | Sequence[int] | None, n: int) -> list[int]:
    """:func:`unit_list` for a layer of ``n`` units: ``"all"``/None -> 0..n-1; checks that
    every unit is in ``[0, n)``.

    Args:
      spec: ``"all"``, ranges such as ``"0-15,20"``, a sequence of ints, or None (all).
      n: the layer's number of units (checked, and what ``"all"`` means).

    Example:
      >>> from lucidax.visualize import parse_units
      >>> parse_units("all", 4), parse_units("1-2", 4)
      ([0, 1, 2, 3], [1, 2])
    """
    units = unit_list(spec)
    if units is None:
        return list(range(n))
    bad = [u for u in units if not 0 <= u < n]
    if bad:
        raise ValueError(f"Units {bad[:5]} out of range: the layer has {n} units (0-{n - 1})")
    return units



def default_init_sd(model_name: str, *, rescue: bool = False) -> float:
    """The random start's std when none is given, for ``lucidax render`` (``rescue=False``) and
    the gallery presets (``rescue=True``: the gallery re-renders silent units from a
    high-contrast start).

    Lucid's flat grey 0.01 for EfficientNet-Lite. Other models (the starter model) can have
    whole layers silent on flat grey: 0.5, faint noise, when silent units get a rescue; 2.0
    without one (measured, starter, 256 steps, 32 units: conv2 20 silent renders from 0.5, 10
    from 2.0; conv4 12 from either).

    Args:
      model_name: the registered model's name.
      rescue: the value of presets that rescue silent units.

    Example:
      >>> from lucidax.visualize import default_init_sd
      >>> default_init_sd("efficientnet_lite0"), default_init_sd("starter")
      (0.01, 2.0)
    """
    if model_name.startswith("efficientnet_lite"):
        return 0.01
    return 0.5 if rescue else 2.0


@dataclasses.dataclass(frozen=True)
class RenderJob:
    """What ``lucidax render`` does: channel renders of some units of one layer, to PNGs.

    Attributes:
      model: registry name of the model (``lucidax models`` lists them).
      weights: checkpoint path, or None for the model's default weights.
      layer: layer whose channels are rendered.
      units: ``all`` or ranges like ``0-15,20``.
      out: output folder (``<out>/<layer>/<unit>.png`` named by the unit's 4-digit number,
        ``<out>/<layer>.png`` grid, ``<out>/<layer>/render.json``).
      steps: optimization steps.
      size: render side in pixels (None: the model's input side, at most 128).
      param: image parameterization: image (Lucid's decorrelated FFT), fft, pixel, maco, cppn.
      batch_size: units rendered at once (one batched program).
      seed: random seed (a unit renders the same in any batch).
      learning_rate: Adam learning rate.
      init_sd: std of the random start (image/fft/pixel params). Lucid uses 0.01, a flat grey
        start; models trained on high-contrast images (the starter model) have whole layers
        silent on flat grey, so their renders never leave it: 2.0 starts from noise.
        None: :func:`default_init_sd` (0.01 for EfficientNet-Lite, 2.0 for the others).
      memory_check: refuse, before anything is written, a job whose estimated memory need
        exceeds the available memory (``--no-memory-check`` tries anyway).

    Example:
      >>> from lucidax.visualize import RenderJob, render_job
      >>> job = RenderJob(model="starter", layer="conv3", units="0-3", steps=64, size=32,
      ...                 out="renders")
      >>> summary = render_job(job, progress=False)
      >>> [u["png"] for u in summary["units"]]
      ['0000.png', '0001.png', '0002.png', '0003.png']
    """

    model: str = flag("starter", "registered model name (lucidax models lists them)")
    weights: str | None = flag(
        None, "checkpoint file, or 'random' (default: the model's shipped weights; "
              "models that ship none run with random weights and say so)")
    layer: str = flag("conv4", "layer whose channels are rendered (lucidax models NAME lists "
                                "the layers)")
    units: str = flag("0-7", "'all' or ranges such as 0-15,20")
    out: str = flag("renders", f"{OUT_HELP}: <out>/<layer>/<unit>.png (unit number, 4 "
                                "digits), <out>/<layer>.png (grid), <out>/<layer>/render.json")
    steps: int = flag(256, "optimization steps")
    size: int | None = flag(None, "render side in pixels (default: the model's input side, "
                                   "at most 128)")
    param: str = flag("image", "image parameterization: image (Lucid's decorrelated FFT), fft, "
                                "pixel, maco, cppn")
    batch_size: int = flag(32, "units rendered at once (one batched program)")
    seed: int = flag(0, "random seed (a unit renders the same in any batch)")
    learning_rate: float = flag(0.05, "Adam learning rate")
    init_sd: float | None = flag(
        None, "std of the random start of image/fft/pixel (default: 0.01, Lucid's flat grey, "
              "for EfficientNet-Lite; 2.0, noise, for the other models, whose layers can be "
              "silent on flat grey)")
    memory_check: bool = flag(True, MEMORY_HELP)


@staged
def render_job(job: RenderJob, *, progress: bool = True) -> dict[str, Any]:
    """Render ``job.units`` of ``job.layer`` in batches; write one PNG per unit, a grid and a
    ``render.json`` summary (objective value, loss trace end, finiteness per unit, and
    whether it is silent: its render never left its start, see
    :func:`lucidax.visualize.stuck_renders`; its PNG is still written).

    Args:
      job: a :class:`RenderJob`.
      progress: show tqdm progress bars.

    Returns:
      The ``render.json`` summary as a dict.

    Example:
      >>> from lucidax.visualize import RenderJob, render_job
      >>> job = RenderJob(model="starter", layer="conv3", units="0-3", steps=64, size=32,
      ...                 out="renders")
      >>> summary = render_job(job, progress=False)
      >>> sorted(summary)[:3]  # doctest: +ELLIPSIS
      [...]
    """
    from .._compile_cache import enable_for_job  # on unless turned off: see there

    enable_for_job()

    import jax

    from ..models import load

    if job.param not in PARAMS:
        raise ValueError(f"Unknown param {job.param!r}; valid: {', '.join(PARAMS)}")
    # Bad input fails here, in one line, before the model is loaded.
    check_int(job.steps, "--steps")
    check_int(job.batch_size, "--batch-size")
    check_int(job.size, "--size", optional=True)
    if not job.learning_rate > 0:
        raise ValueError(f"--learning-rate must be > 0; got {job.learning_rate!r}")
    unit_list(job.units)  # a malformed --units fails now; the range check needs the model
    prepare_out_dir(job.out)
    model = load(job.model, weights=job.weights)
    n = model.channels(job.layer)
    units = parse_units(job.units, n)
    size = job.size or min(model.input_spec.side or 128, 128)
    init_sd = job.init_sd if job.init_sd is not None else default_init_sd(job.model)
    param: Param = PARAMS[job.param](init_sd)
    if job.memory_check:  # + every unit's image, kept for the grid, and the grid
        at_once = min(job.batch_size, len(units))
        need = estimate_render(model, job.layer, batch=at_once, size=size)
        need = None if need is None else need + 2 * len(units) * size * size * \
            model.input_spec.channels * 4
        check_memory(need, f"rendering {len(units)} units at {size} px ({at_once} at once)")
    layer_dir = os.path.join(job.out, job.layer.replace("/", "_"))
    records, images = [], []
    for start in range(0, len(units), job.batch_size):
        batch = units[start : start + job.batch_size]
        result = render(
            model, model.params, channel(job.layer, batch), param=param, steps=job.steps,
            size=size, key=jax.random.key(job.seed), optimizer=job.learning_rate,
            progress=progress, memory_check=False,  # checked above
        )
        ok = [u for u, f in zip(batch, result.finite, strict=True) if f]
        keep = np.asarray(result.finite, bool)
        save_images(layer_dir, result.images[keep], [f"{u:04d}" for u in ok])
        images.extend(result.images[keep])
        stuck, zeros = stuck_renders(result.loss), zero_steps(result.loss)
        for i, u in enumerate(batch):
            silent = bool(stuck[i] and result.finite[i])
            records.append({
                "unit": u, "finite": bool(result.finite[i]),
                "objective": float(result.objective_values[i]),
                "png": f"{u:04d}.png" if result.finite[i] else None,
                "silent": silent,
                "silent_reason": f"objective 0 at the last step and on {int(zeros[i])} of "
                f"{job.steps} steps: the render never left its start" if silent else None,
            })
    grid = save_grid(os.path.join(job.out, f"{job.layer.replace('/', '_')}.png"), images) \
        if images else None
    summary = {"job": dataclasses.asdict(job), "model": repr(model), "size": size,
               "grid": grid, "units": records,
               "silent": [r["unit"] for r in records if r["silent"]]}
    save_json(os.path.join(layer_dir, "render.json"), summary)
    return summary
