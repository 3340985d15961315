"""What ``lucidax probe`` calls: load a model, pick a data source, probe layers, write files.

>>> from lucidax.probes.run import run_probe_cli
>>> results = run_probe_cli("starter", layers="all", data="builtin:starter",
...                         target="digit", out="runs/probe-digit")
>>> results = run_probe_cli("efficientnet_lite0", n=400,
...                         out="runs/probe-photos")   # data "auto": builtin:photos, label source
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from lucidax._files import check_int, prepare_out_dir
from lucidax.models import photos as builtin_photos
from lucidax.models.base import Model, suggest

from .linear import DEFAULT_LAMBDAS, ProbeResult
from .sweep import format_results, probe_layers

__all__ = ["BUILTIN_DATA", "ProbeRun", "load_data", "run_probe_cli"]

BUILTIN_DATA = builtin_photos.BUILTIN_DATA


@dataclasses.dataclass(frozen=True)
class _Data:
    data: Any
    labels: dict[str, np.ndarray] | None
    label_names: dict[str, tuple[str, ...]]
    description: str


@dataclasses.dataclass(frozen=True, eq=False)
class ProbeRun:
    """What :func:`run_probe_cli` produced: per-layer results, files, a printable table."""

    results: tuple[ProbeResult, ...]
    out: str
    files: dict[str, str]
    table: str


def load_data(data: str | os.PathLike, *, n: int = 2000, seed: int = 0,
              side: int | None = None, channels: int = 3, progress: bool = False) -> _Data:
    """Resolve a ``--data`` argument: ``builtin:starter[:train|:test]`` (the starter model's
    dataset, default split ``test``: images the model was not trained on),
    ``builtin:photos[:<source>]`` (``n`` crops of the photos shipped in installed packages,
    :mod:`lucidax.models.photos`, at ``side`` px, default 224, with one label family
    ``source``: the photo each crop comes from) or a folder / CSV."""
    from lucidax.models import starter

    spec = os.fspath(data)
    builtin = builtin_photos.parse_builtin(spec)
    if builtin is not None and builtin.kind == "photos":
        ph = builtin_photos.photos(int(n), side=side or builtin_photos.DEFAULT_SIDE, seed=seed,
                                   sources=builtin.sources, channels=channels,
                                   progress=progress)
        return _Data(ph.images, {"source": ph.labels}, {"source": ph.label_names},
                     f"{spec} (n={n}, side={ph.side}, seed={seed})")
    if builtin is not None:
        ds = starter.dataset(int(n), split=builtin.split, seed=seed)
        labels = {k: np.asarray(v) for k, v in ds.labels.items()}
        return _Data(ds.images, labels, dict(ds.label_names),
                     f"builtin:starter:{builtin.split} (n={n}, seed={seed})")
    if not os.path.exists(spec):
        raise FileNotFoundError(
            f"data not found: {spec!r} (an image folder, a labels CSV, or one of "
            f"{', '.join(BUILTIN_DATA)})"
        )
    return _Data(spec, None, {}, spec)


def _check_target(data: str, target: str | None,
                  labels: dict[str, Any] | None = None) -> str | None:
    """``--target`` against the label families of ``--data`` (``labels``: the families of
    builtin data once made; before that, a missing target is checked against the families
    it will have), before any extraction; the message names the flag, not the Python
    argument."""
    from lucidax.models import starter

    from .extract import list_image_folder

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


def run_probe_cli(
    model: str | Model = "starter",
    *,
    weights: str | os.PathLike | None = None,
    layers: str | Sequence[str] = "all",
    data: str | os.PathLike = "auto",
    target: str | None = None,
    out: str | os.PathLike = "probe-out",
    reduce: Any = "mean",
    n: int = 2000,
    seed: int = 0,
    batch_size: int = 64,
    cache_dir: str | os.PathLike | None = None,
    folds: int = 5,
    test_size: float = 0.25,
    lambdas: Sequence[float] = DEFAULT_LAMBDAS,
    progress: bool = True,
    memory_check: bool = True,
) -> ProbeRun:
    """``lucidax probe --model M --layers L --data D --target T --out O``.

    Args:
      model: registered model name (``lucidax.models.list_models()``) or a Model.
      weights: checkpoint path (None: the model's default weights).
      layers: ``"all"`` (every layer except ``*_pre_relu``), or comma-separated names.
      data: ``"auto"`` (the model's data: ``builtin:starter`` for the starter model,
        ``builtin:photos`` for other RGB models; :func:`lucidax.models.photos.resolve_auto`),
        ``builtin:starter[:train|:test]``, ``builtin:photos[:<source>]`` (crops of real
        photos at the model's input side; label family ``source``), an image folder (one
        sub-folder per class, or a ``labels.csv``), or a CSV ``filename,label[,...]``.
      target: label family (starter: digit, color, background, position, size; photos:
        source; a CSV column name; ``label`` for sub-folder classes). Optional when there is
        only one.
      out: output folder (results.json, results.csv, accuracy_by_layer.png/.svg).
      reduce: spatial reduction (``mean``, ``max``, ``center``, ``grid4``, ``position:y,x``).
      n: number of images for builtin data.
      seed: seed of the builtin data and of the splits.
      cache_dir: feature cache folder (default: ``<out>/feature-cache``).
      memory_check: refuse, before anything is written, an extraction whose estimated
        memory need exceeds the available memory (False: ``--no-memory-check``).
    """
    # Bad input fails here, in one line, before the model is loaded.
    check_int(n, "--n")
    check_int(batch_size, "--batch-size")
    check_int(folds, "--folds", minimum=2)
    if isinstance(test_size, bool) or not isinstance(test_size, (int, float)) \
            or not 0 < test_size < 1:
        raise ValueError(f"--test-size must be a share in (0, 1); got {test_size!r}")
    out = prepare_out_dir(out)
    if cache_dir is not None:
        prepare_out_dir(cache_dir, flag="--cache-dir")
    if isinstance(model, str):
        import lucidax.models as lm

        model = lm.load(model, weights)
    elif weights is not None:
        raise ValueError("weights= is only used with a model name")
    data = builtin_photos.resolve_auto(data, model, "probe")
    target = _check_target(os.fspath(data), target)
    src = load_data(data, n=n, seed=seed, side=model.input_spec.side,
                    channels=model.input_spec.channels, progress=progress)
    if src.labels is not None:
        target = _check_target(os.fspath(data), target, src.labels)
    cache = os.path.join(out, "feature-cache") if cache_dir is None else os.fspath(cache_dir)
    results = probe_layers(
        model, model.params, src.data, src.labels, layers, target_name=target, reduce=reduce,
        out_dir=out, cache_dir=cache, batch_size=batch_size, test_size=test_size, folds=folds,
        lambdas=lambdas, seed=seed, progress=progress,
        label_names=src.label_names, memory_check=memory_check,
    )
    files = {k: os.path.join(out, f) for k, f in (
        ("json", "results.json"), ("csv", "results.csv"), ("png", "accuracy_by_layer.png"),
        ("svg", "accuracy_by_layer.svg"))}
    return ProbeRun(tuple(results), out, files, format_results(results))
