"""``lucidax dissect`` as a library call: :class:`DissectJob` (the configuration) and
:func:`run_dissect` (load the model, pick the concept source, dissect, write the files).

>>> from lucidax.probes import DissectJob, run_dissect
>>> run = run_dissect(DissectJob(layers="conv1,conv2", data="builtin:starter", n=500,
...                              out="runs/dissect"))
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

from lucidax._fields import MEMORY_HELP, WEIGHTS_HELP, flag, load_model
from lucidax._files import check_int, prepare_out_dir
from lucidax._storage import OUT_HELP, staged
from lucidax.models import Model
from lucidax.models.starter import data as starter_data

from ._concepts import FolderConcepts, StarterConcepts
from ._dissect import DEFAULT_IOU_THRESHOLD, DEFAULT_QUANTILE, Dissection, dissect
from ._report import format_dissection, write_dissection

#: concept sources built in for ``lucidax dissect --data`` (the starter dataset's
#: per-pixel masks)
BUILTIN_DISSECT_DATA = starter_data.BUILTIN_DATA


@dataclasses.dataclass(frozen=True)
class DissectJob:
    """What ``lucidax dissect`` does: for every unit of the conv layers, threshold its
    activation map at the top quantile over the dataset, upsample it to the mask size and
    compute its dataset-level IoU with every concept mask; written to ``out`` (results.json,
    units.csv, iou.npz, summary.png/.svg).

    Attributes:
      model: registered model name, or a loaded Model.
      weights: checkpoint path (None: the model's default weights; only with a name).
      layers: ``"all"`` (every conv layer except ``*_pre_relu``) or comma-separated names.
      data: ``"auto"`` (``builtin:starter`` for the starter model; any other model needs a
        folder: ValueError, see ``lucidax.models.photos.resolve_auto``),
        ``builtin:starter[:train|:test]`` (default split test) or a folder ``images/`` +
        ``masks/<concept>/`` (see :func:`lucidax.probes.dissect`).
      n, seed: number of images and seed of the builtin data.
      quantile, iou_threshold, quantile_passes: see :func:`lucidax.probes.dissect`.
      size: image side for folder data (default: the model's input side).
      out: output folder.
      batch_size: images per step.
      memory_check: see :func:`lucidax.probes.dissect` (False: ``--no-memory-check``).

    Example:
      >>> from lucidax.probes import DissectJob, run_dissect
      >>> job = DissectJob(model="starter", layers="conv3", n=40, out="dissect-out")
      >>> run = run_dissect(job, progress=False)
      >>> run.result.layers
      ('conv3',)
    """

    model: str | Model = flag("starter", "registered model name")
    weights: str | None = flag(None, WEIGHTS_HELP)
    layers: str | Sequence[str] = flag(
        "all", "'all' (every conv layer except *_pre_relu; dense layers are skipped) or "
               "comma-separated conv layer names")
    data: str = flag(
        "auto", "auto (builtin:starter for the starter model; other models have no built-in "
                "concept masks: give a folder), builtin:starter[:train|:test] (concepts: "
                "stroke, digit=<k>, color=<c>, background=<b>) or a folder with "
                "images/<name>.png and masks/<concept>/<name>.png")
    n: int = flag(2000, "images of builtin data")
    seed: int = flag(0, "builtin data seed")
    quantile: float = flag(DEFAULT_QUANTILE, "top quantile of a unit's activations that forms "
                                             "its mask (0.005 = 0.5%)")
    iou_threshold: float = flag(
        DEFAULT_IOU_THRESHOLD, "IoU a unit needs to be a detector of its best concept")
    quantile_passes: int = flag(
        3, "data passes for the thresholds: 3 exact, 2 relative error < 2^-15, 1 < 2^-3",
        choices=(1, 2, 3))
    size: int | None = flag(None, "image side for folder data (default: the model's input side)")
    out: str = flag("dissect-out", OUT_HELP)
    batch_size: int = flag(32, "images per step")
    memory_check: bool = flag(True, MEMORY_HELP)

    def check(self) -> None:
        """Bad input fails here, in one line naming the flag, before any work."""
        check_int(self.n, "--n")
        check_int(self.batch_size, "--batch-size")
        check_int(self.size, "--size", optional=True)
        q, t = self.quantile, self.iou_threshold
        if not (isinstance(q, int | float) and 0.0 < float(q) < 1.0):
            raise ValueError(f"--quantile must be in (0, 1) (0.005 = top 0.5%); got {q!r}")
        if not (isinstance(t, int | float) and 0.0 <= t <= 1.0):
            raise ValueError(f"--iou-threshold must be in [0, 1]; got {t!r}")


@dataclasses.dataclass(frozen=True, eq=False)
class DissectRun:
    """What :func:`run_dissect` produced: the dissection, its files, a printable table.

    Attributes:
      result: the :class:`Dissection`.
      out: the output folder.
      files: ``{kind: path}`` of the files written (CSV, JSON, figure).
      table: the printable table the CLI prints.

    Example:
      >>> from lucidax.probes import DissectJob, run_dissect
      >>> job = DissectJob(model="starter", layers="conv3", n=40, out="dissect-out")
      >>> run = run_dissect(job, progress=False)
      >>> run.out, "conv3" in run.table
      ('dissect-out', True)
    """

    result: Dissection
    out: str
    files: dict[str, str]
    table: str


def _source(data: str | os.PathLike, model: Model, n: int, seed: int, size: int | None):
    spec = os.fspath(data)
    split = starter_data.builtin_split(spec)
    if split is not None:
        return StarterConcepts(n, split=split, seed=seed)
    if not os.path.isdir(spec):
        raise FileNotFoundError(
            f"data not found: {spec!r} (a folder with images/ and masks/<concept>/, or one of "
            f"{', '.join(BUILTIN_DISSECT_DATA)})")
    side = size or model.input_spec.side or 224
    return FolderConcepts(spec, size=side, channels=model.input_spec.channels)


@staged
def run_dissect(job: DissectJob, *, progress: bool = True) -> DissectRun:
    """Run ``job`` (``lucidax dissect``): the model is loaded after its input is checked.

    Args:
      job: a :class:`DissectJob`.
      progress: show tqdm progress bars.

    Returns:
      A :class:`DissectRun`.

    Example:
      >>> from lucidax.probes import DissectJob, run_dissect
      >>> job = DissectJob(model="starter", layers="conv3", n=40, out="dissect-out")
      >>> run = run_dissect(job, progress=False)
      >>> len(run.result.units) > 0
      True
    """
    from .._compile_cache import enable_for_job  # on unless turned off: see there

    enable_for_job()
    from lucidax.models import photos

    job.check()
    prepare_out_dir(job.out)
    data = photos.resolve_auto(job.data, job.model, "dissect")  # before loading the model
    model = load_model(job.model, job.weights)
    source = _source(data, model, job.n, job.seed, job.size)
    result = dissect(model, source, layers=job.layers, quantile=job.quantile,
                     iou_threshold=job.iou_threshold, quantile_passes=job.quantile_passes,
                     batch_size=job.batch_size, progress=progress,
                     memory_check=job.memory_check)
    files = write_dissection(result, job.out)
    return DissectRun(result, os.fspath(job.out), files, format_dissection(result))
