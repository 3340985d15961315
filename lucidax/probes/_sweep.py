"""Probe every layer: extract features once, fit a linear probe per layer, write the results
(:func:`lucidax.probes.write_results`)."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lucidax.models import Model, normalize_layers, suggest

from ._extract import Features, extract
from ._linear import DEFAULT_LAMBDAS, ProbeResult, fit_probe
from ._report import write_results


def default_layers(model: Model) -> tuple[str, ...]:
    """``"all"`` for probing: every layer except the ``*_pre_relu`` twins (and a wrapped
    module's ``"output"`` when it duplicates the logits).

    Args:
      model: a :class:`lucidax.models.Model`.

    Returns:
      The layer names, in forward order.

    Example:
      >>> import lucidax.models as lm
      >>> from lucidax.probes import default_layers
      >>> default_layers(lm.load("starter"))
      ('conv1', 'conv2', 'conv3', 'conv4', 'conv5', 'logits')"""
    names = [n for n in model.layer_names if not model.layers[n].pre_relu
             and not n.endswith("_pre_relu")]
    return tuple(names) or tuple(model.layer_names)


def resolve_target(
    features: Features,
    labels: Any = None,
    target_name: str | None = None,
    label_names: Mapping[str, Sequence[str]] | None = None,
) -> tuple[str, np.ndarray, tuple[str, ...] | None]:
    """Pick the label array to probe: ``(name, labels [N] aligned with rows, class names)``.

    ``labels`` may be None (use ``features.labels``), a family name, an array aligned with the
    source inputs (indexed by ``features.index``) or a dict ``{family: array}``;
    ``label_names`` gives class names for explicitly passed labels.

    Args:
      features: the :class:`Features` the labels must align with.
      labels: see above.
      target_name: the family to use when ``labels`` is a dict or None and there are
        several families.
      label_names: ``{family: class names}`` for explicitly passed labels.

    Example:
      >>> import numpy as np
      >>> import lucidax.models as lm
      >>> from lucidax.probes import extract, resolve_target
      >>> model = lm.load("starter")
      >>> images = np.random.default_rng(0).random((6, 64, 64, 3), dtype=np.float32)
      >>> features = extract(model, model.params, images, "conv5",
      ...                    labels={"parity": np.arange(6) % 2}, progress=False)
      >>> name, y, classes = resolve_target(features, target_name="parity")
      >>> name, y.tolist(), classes
      ('parity', [0, 1, 0, 1, 0, 1], None)
    """
    families: Mapping[str, np.ndarray] = features.labels
    names: Mapping[str, tuple[str, ...]] = features.label_names
    if isinstance(labels, str):
        target_name, labels = labels, None
    if labels is not None:
        if isinstance(labels, Mapping):
            families = {}
            for k, v in labels.items():
                v = np.asarray(v)
                if v.ndim != 1 or len(v) != features.n_seen:
                    raise ValueError(
                        f"labels[{k!r}] must be 1-D with one label per input "
                        f"({features.n_seen}); got shape {v.shape}"
                    )
                families[k] = v[features.index]
        else:
            arr = np.asarray(labels)
            if arr.ndim != 1 or len(arr) != features.n_seen:
                raise ValueError(
                    f"labels must be 1-D with one label per input ({features.n_seen}); got "
                    f"shape {arr.shape}"
                )
            families = {target_name or "label": arr[features.index]}
        names = {k: tuple(v) for k, v in (label_names or {}).items()}
    if not families:
        raise ValueError(
            "no labels: pass labels=[...] for array data, or use an image folder with one "
            "sub-folder per class or a labels.csv"
        )
    if target_name is None:
        if len(families) > 1:
            raise ValueError(
                f"several label families; choose one with target_name=. Valid targets: "
                f"{', '.join(families)}"
            )
        target_name = next(iter(families))
    if target_name not in families:
        raise ValueError(suggest(target_name, list(families), what="target"))
    return target_name, np.asarray(families[target_name]), names.get(target_name) or None


def probe_layers(
    model: Model,
    params: Any,
    data: Any,
    labels: Any = None,
    layers: str | Sequence[str] | None = "all",
    *,
    target_name: str | None = None,
    reduce: Any = "mean",
    out_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 64,
    size: int | None = None,
    dtype: str = "float32",
    test_size: float = 0.25,
    folds: int = 5,
    lambdas: Sequence[float] = DEFAULT_LAMBDAS,
    seed: int = 0,
    max_iter: int = 500,
    tol: float = 1e-4,
    progress: bool = True,
    features: Features | None = None,
    label_names: Mapping[str, Sequence[str]] | None = None,
    memory_check: bool = True,
) -> list[ProbeResult]:
    """Fit a cross-validated linear probe on every layer; results in depth order.

    Args:
      model, params, data: as for :func:`lucidax.probes.extract` (array, image folder / CSV,
        or iterable of batches).
      labels: None (the data's own labels: folder classes, CSV columns, stream labels), a
        family name, an array with one label per input, or ``{family: array}``.
      layers: names, comma-separated string, or ``"all"`` (every layer but ``*_pre_relu``).
      target_name: which label family to probe (needed when there are several).
      reduce: spatial reduction (see :func:`lucidax.probes.extract`).
      out_dir: where to write results.json / results.csv / accuracy_by_layer.{png,svg}
        (None: write nothing).
      cache_dir: feature cache folder (None: no cache).
      features: already extracted features to reuse (skips extraction).
      label_names: ``{family: class names}`` for explicitly passed ``labels``.
      memory_check: refuse an extraction that cannot fit in memory (see :func:`extract`).
      batch_size, size, dtype, progress: passed to :func:`extract`.
      test_size, folds, lambdas, seed, max_iter, tol: passed to
        :func:`lucidax.probes.fit_probe`.

    Returns:
      One :class:`ProbeResult` per layer, in depth order.

    Example:
      >>> import lucidax.models as lm
      >>> from lucidax.probes import load_data, probe_layers
      >>> model = lm.load("starter")
      >>> data = load_data("builtin:starter", n=200)
      >>> results = probe_layers(model, model.params, data.data, data.labels, "conv1,conv5",
      ...                        target_name="color", progress=False)
      >>> [(r.layer, r.target) for r in results]
      [('conv1', 'color'), ('conv5', 'color')]
    """
    if layers is None or layers == "all":
        names = default_layers(model)
    else:
        names = normalize_layers(layers, model.layer_names)
    names = tuple(sorted(names, key=model.layer_names.index))
    t0 = time.perf_counter()
    if features is None:
        features = extract(
            model, params, data, names, reduce=reduce, batch_size=batch_size, size=size,
            cache_dir=cache_dir, dtype=dtype, progress=progress, memory_check=memory_check,
        )
    t_extract = time.perf_counter() - t0
    target, y, class_names = resolve_target(features, labels, target_name, label_names)

    results = []
    t1 = time.perf_counter()
    for name in names:
        res = fit_probe(
            np.asarray(features[name], dtype=np.float32), y, test_size=test_size,
            folds=folds, lambdas=lambdas, seed=seed, max_iter=max_iter, tol=tol, layer=name,
            target=target,
        )
        results.append(res)
    t_fit = time.perf_counter() - t1
    if out_dir is not None:
        write_results(
            results, out_dir, model=model, features=features, target=target,
            class_names=class_names,
            extra={"timings_s": {"extract": round(t_extract, 3), "fit": round(t_fit, 3)},
                   "config": {"test_size": test_size, "folds": folds,
                              "lambdas": list(lambdas), "seed": seed, "max_iter": max_iter,
                              "tol": tol, "batch_size": batch_size, "dtype": dtype}},
        )
    return results
