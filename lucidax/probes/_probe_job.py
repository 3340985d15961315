"""``lucidax probe`` as a library call: :class:`ProbeJob` (the configuration) and
:func:`run_probe` (load the model, pick the data, probe the layers, write the files).

>>> from lucidax.probes import ProbeJob, run_probe
>>> run = run_probe(ProbeJob(layers="all", data="builtin:starter", target="digit",
...                          out="runs/probe-digit"))
>>> run = run_probe(ProbeJob("efficientnet_lite0", n=400,
...                          out="runs/probe-photos"))   # data "auto": builtin:photos
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

from lucidax._fields import MEMORY_HELP, WEIGHTS_HELP, flag, load_model
from lucidax._files import check_int, prepare_out_dir
from lucidax._storage import OUT_HELP, staged
from lucidax.models import Model, suggest
from lucidax.models import photos as builtin_photos

from ._data import list_image_folder, load_data
from ._linear import DEFAULT_LAMBDAS, ProbeResult
from ._report import format_results
from ._sweep import probe_layers


@dataclasses.dataclass(frozen=True)
class ProbeJob:
    """What ``lucidax probe`` does: a cross-validated linear probe of every layer for one
    label family, written to ``out`` (results.json, results.csv, accuracy_by_layer.png/.svg).

    Attributes:
      model: registered model name (``lucidax.models.list_models()``), or a loaded Model.
      weights: checkpoint path (None: the model's default weights; only with a name).
      layers: ``"all"`` (every layer except ``*_pre_relu``), or comma-separated names.
      data: ``"auto"`` (the model's data: ``builtin:starter`` for the starter model,
        ``builtin:photos`` for other RGB models; ``lucidax.models.photos.resolve_auto``),
        ``builtin:starter[:train|:test]``, ``builtin:photos[:<source>]`` (crops of real
        photos at the model's input side; label family ``source``), an image folder (one
        sub-folder per class, or a ``labels.csv``), or a CSV ``filename,label[,...]``.
      target: label family (starter: digit, color, background, position, size; photos:
        source; a CSV column name; ``label`` for sub-folder classes). Optional when there is
        only one.
      out: output folder.
      reduce: spatial reduction (``mean``, ``max``, ``center``, ``grid4``, ``position:y,x``).
      n: number of images for builtin data.
      seed: seed of the builtin data and of the splits.
      batch_size: extraction batch.
      cache_dir: feature cache folder (default: ``<out>/feature-cache``).
      folds: cross-validation folds.
      test_size: held-out share.
      memory_check: refuse, before anything is written, an extraction whose estimated
        memory need exceeds the available memory (False: ``--no-memory-check``).
      lambdas: the L2 strengths searched (not a command-line flag).

    Example:
      >>> from lucidax.probes import ProbeJob, run_probe
      >>> job = ProbeJob(model="starter", layers="conv2,conv4", data="builtin:starter",
      ...                target="color", n=200, out="probe-out")
      >>> run = run_probe(job, progress=False)
      >>> [r.layer for r in run.results]
      ['conv2', 'conv4']
    """

    model: str | Model = flag("starter", "registered model name")
    weights: str | None = flag(None, WEIGHTS_HELP)
    layers: str | Sequence[str] = flag(
        "all", "'all' (every layer except *_pre_relu) or comma-separated names")
    data: str = flag(
        "auto", "auto (the model's data: builtin:starter for starter, builtin:photos for other "
                "RGB models), builtin:starter[:train|:test], builtin:photos[:<source>] (crops "
                "of real photos shipped in installed packages, label: source), an image "
                "folder (sub-folder per class or labels.csv) or a CSV filename,label[,...]")
    target: str | None = flag(
        None, "label family / CSV column (starter: digit, color, background, position, size; "
              "photos: source)")
    out: str = flag("probe-out", OUT_HELP)
    reduce: Any = flag("mean", "spatial reduction: mean, max, center, grid4, position:y,x")
    n: int = flag(2000, "images of builtin data")
    seed: int = flag(0, "data and split seed")
    batch_size: int = flag(64, "extraction batch")
    cache_dir: str | None = flag(None, "feature cache (default: <out>/feature-cache)")
    folds: int = flag(5, "CV folds")
    test_size: float = flag(0.25, "held-out share")
    memory_check: bool = flag(True, MEMORY_HELP)
    lambdas: Sequence[float] = flag(DEFAULT_LAMBDAS, "L2 strengths searched")

    def check(self) -> None:
        """Bad input fails here, in one line naming the flag, before any work."""
        check_int(self.n, "--n")
        check_int(self.batch_size, "--batch-size")
        check_int(self.folds, "--folds", minimum=2)
        t = self.test_size
        if isinstance(t, bool) or not isinstance(t, int | float) or not 0 < t < 1:
            raise ValueError(f"--test-size must be a share in (0, 1); got {t!r}")


@dataclasses.dataclass(frozen=True, eq=False)
class ProbeRun:
    """What :func:`run_probe` produced: per-layer results, files, a printable table.

    Attributes:
      results: one :class:`ProbeResult` per layer, in depth order.
      out: the output folder.
      files: ``{kind: path}`` of the files written (CSV, JSON, figure).
      table: the printable table the CLI prints.

    Example:
      >>> from lucidax.probes import ProbeJob, run_probe
      >>> job = ProbeJob(model="starter", layers="conv2,conv4", data="builtin:starter",
      ...                target="color", n=200, out="probe-out")
      >>> run = run_probe(job, progress=False)
      >>> run.out, all(0.0 <= r.accuracy <= 1.0 for r in run.results)
      ('probe-out', True)
    """

    results: tuple[ProbeResult, ...]
    out: str
    files: dict[str, str]
    table: str


def _check_target(data: str, target: str | None,
                  labels: dict[str, Any] | None = None) -> str | None:
    """``--target`` against the label families of ``--data`` (``labels``: the families of
    builtin data once made; before that, a missing target is checked against the families
    it will have), before any extraction; the message names the flag, not the Python
    argument."""
    from lucidax.models import starter

    builtin = builtin_photos.parse_builtin(data)
    if labels is not None:
        families = list(labels)
    elif builtin is not None:
        if target is not None:
            return target  # checked once the data is made
        families = ["source"] if builtin.kind == "photos" else list(starter.FAMILIES)
    elif os.path.exists(data):
        families = list(list_image_folder(data)[1])
    else:
        return target  # load_data says what is wrong
    if not families:
        raise ValueError(f"--data {data!r} has no labels to probe: use an image folder with "
                         "one sub-folder per class, a folder with labels.csv, or a CSV "
                         "filename,label[,...]")
    if target is None:
        if len(families) > 1:
            raise ValueError(f"--data {data!r} has several label families: choose one with "
                             f"--target; valid targets: {', '.join(families)}")
        return families[0]
    if target not in families:
        raise ValueError("--target: " + suggest(target, families, what="target"))
    return target


@staged
def run_probe(job: ProbeJob, *, progress: bool = True) -> ProbeRun:
    """Run ``job`` (``lucidax probe``): the model is loaded after its input is checked.

    Args:
      job: a :class:`ProbeJob`.
      progress: show tqdm progress bars.

    Returns:
      A :class:`ProbeRun`.

    Example:
      >>> from lucidax.probes import ProbeJob, run_probe
      >>> job = ProbeJob(model="starter", layers="conv2,conv4", data="builtin:starter",
      ...                target="color", n=200, out="probe-out")
      >>> run = run_probe(job, progress=False)
      >>> len(run.results), "conv4" in run.table
      (2, True)
    """
    from .._compile_cache import enable_for_job  # on unless turned off: see there

    enable_for_job()
    job.check()
    out = prepare_out_dir(job.out)
    if job.cache_dir is not None:
        prepare_out_dir(job.cache_dir, flag="--cache-dir")
    model = load_model(job.model, job.weights)
    data = builtin_photos.resolve_auto(job.data, model, "probe")
    target = _check_target(os.fspath(data), job.target)
    src = load_data(data, n=job.n, seed=job.seed, side=model.input_spec.side,
                    channels=model.input_spec.channels, progress=progress)
    if src.labels is not None:
        target = _check_target(os.fspath(data), target, src.labels)
    cache = os.path.join(out, "feature-cache") if job.cache_dir is None \
        else os.fspath(job.cache_dir)
    results = probe_layers(
        model, model.params, src.data, src.labels, job.layers, target_name=target,
        reduce=job.reduce, out_dir=out, cache_dir=cache, batch_size=job.batch_size,
        test_size=job.test_size, folds=job.folds, lambdas=job.lambdas, seed=job.seed,
        progress=progress, label_names=src.label_names, memory_check=job.memory_check,
    )
    files = {k: os.path.join(out, f) for k, f in (
        ("json", "results.json"), ("csv", "results.csv"), ("png", "accuracy_by_layer.png"),
        ("svg", "accuracy_by_layer.svg"))}
    return ProbeRun(tuple(results), out, files, format_results(results))
