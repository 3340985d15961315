"""Probe every layer: extract features once, fit a linear probe per layer, write the results.

``probe_layers(model, params, data, labels, layers, target_name=..., out_dir=...)`` writes

* ``results.json``: configuration, data summary (skipped files included) and one record per
  layer;
* ``results.csv``: one row per layer (layer, depth, accuracy, ci_low, ci_high, lambda,
  cv_accuracy, n_train, n_test, chance, n_features, n_classes, converged);
* ``accuracy_by_layer.png`` / ``.svg``: held-out accuracy (95% Wilson band) against layer
  depth, with the chance (majority-class) line.

Every file is written to a temporary name in ``out_dir`` and renamed into place.
"""

from __future__ import annotations

import csv
import io
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lucidax.models.base import Model, normalize_layers, suggest

from .._files import atomic_write, save_json, save_plot
from .extract import Features, extract
from .linear import DEFAULT_LAMBDAS, ProbeResult, fit_probe

__all__ = ["CSV_COLUMNS", "default_layers", "format_results", "plot_results", "probe_layers",
           "resolve_target", "write_results"]

CSV_COLUMNS = (
    "layer", "depth", "accuracy", "ci_low", "ci_high", "lambda", "cv_accuracy", "n_train",
    "n_test", "chance", "n_features", "n_classes", "converged",
)


def default_layers(model: Model) -> tuple[str, ...]:
    """``"all"`` for probing: every layer except the ``*_pre_relu`` twins (and a wrapped
    module's ``"output"`` when it duplicates the logits)."""
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
      Other arguments go to :func:`extract` and :func:`lucidax.probes.fit_probe`.
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


def _row(res: ProbeResult, depth: int) -> dict[str, Any]:
    best = max(res.cv_scores) if res.cv_scores else float("nan")
    return {
        "layer": res.layer, "depth": depth, "accuracy": res.accuracy, "ci_low": res.ci_low,
        "ci_high": res.ci_high, "lambda": res.lambda_, "cv_accuracy": best,
        "n_train": res.n_train, "n_test": res.n_test, "chance": res.chance,
        "n_features": res.n_features, "n_classes": res.n_classes, "converged": res.converged,
    }


def write_results(
    results: Sequence[ProbeResult],
    out_dir: str | os.PathLike,
    *,
    model: Model,
    features: Features | None = None,
    target: str | None = None,
    class_names: Sequence[str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """Write results.json, results.csv and the accuracy plot; returns ``{kind: path}``."""
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    depth = {n: i for i, n in enumerate(model.layer_names)}
    rows = [_row(r, depth.get(r.layer, -1)) for r in results]
    doc: dict[str, Any] = {
        "model": model.name,
        "weights": model.weights_source,
        "target": target,
        "class_names": list(class_names) if class_names else None,
        "reduce": (None if features is None else
                   features.reduce if isinstance(features.reduce, str)
                   else list(features.reduce)),
        "layers": rows,
        "probes": [r.to_dict() for r in results],
    }
    if features is not None:
        doc["data"] = {
            "n_images": features.n,
            "n_seen": features.n_seen,
            "n_skipped": len(features.skipped),
            "skipped": [{"index": s.index, "path": s.path, "reason": s.reason}
                        for s in features.skipped],
            "cache_hits": list(features.cache_hits),
            "cache_misses": list(features.cache_misses),
        }
    if extra:
        doc.update(extra)
    paths = {
        "json": os.path.join(out_dir, "results.json"),
        "csv": os.path.join(out_dir, "results.csv"),
        "png": os.path.join(out_dir, "accuracy_by_layer.png"),
        "svg": os.path.join(out_dir, "accuracy_by_layer.svg"),
    }
    save_json(paths["json"], doc, allow_nan=False)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write(paths["csv"], buf.getvalue().encode())
    title = f"{model.name}: linear probe for {target or 'label'}"
    if features is not None:
        red = features.reduce if isinstance(features.reduce, str) else str(tuple(features.reduce))
        title += f" ({red}, n={features.n})"
    plot_results(results, paths["png"], title=title, depth=depth)
    plot_results(results, paths["svg"], title=title, depth=depth)
    return paths



def plot_results(
    results: Sequence[ProbeResult],
    path: str | os.PathLike,
    *,
    title: str = "linear probe accuracy by layer",
    depth: Mapping[str, int] | None = None,
) -> str:
    """Accuracy (with its 95% CI band) against layer depth, chance as a dashed line.

    The format follows the extension (.png, .svg, .pdf). Uses matplotlib's Agg canvas
    directly (no pyplot, no global backend change); the file is written atomically.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = os.fspath(path)
    order = sorted(results, key=lambda r: (depth or {}).get(r.layer, 0)) if depth else \
        list(results)
    x = np.arange(len(order))
    acc = np.asarray([r.accuracy for r in order])
    lo = np.asarray([r.ci_low for r in order])
    hi = np.asarray([r.ci_high for r in order])
    chance = np.asarray([r.chance for r in order])
    fig = Figure(figsize=(max(5.0, 0.6 * len(order) + 2.5), 4.0), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.fill_between(x, lo, hi, color="C0", alpha=0.2, linewidth=0, label="95% CI (Wilson)")
    ax.plot(x, acc, "o-", color="C0", label="held-out accuracy")
    if len(set(np.round(chance, 9))) == 1:
        ax.axhline(chance[0], color="0.4", linestyle="--", label=f"chance ({chance[0]:.3f})")
    else:
        ax.plot(x, chance, "--", color="0.4", label="chance (majority class)")
    ax.set_xticks(x)
    ax.set_xticklabels([r.layer or str(i) for i, r in enumerate(order)], rotation=45,
                       ha="right")
    ax.set_xlabel("layer (input \u2192 output)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0.0, 1.02)
    ax.grid(True, alpha=0.3)
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    save_plot(path, fig)
    return path


def format_results(results: Sequence[ProbeResult]) -> str:
    """A plain-text table for terminals (what the CLI prints)."""
    head = f"{'layer':<20} {'acc':>6} {'95% CI':>15} {'chance':>7} {'lambda':>8} {'dim':>6}"
    lines = [head, "-" * len(head)]
    for r in results:
        flag = "" if r.converged else "  (not converged)"
        lines.append(
            f"{(r.layer or '')[:20]:<20} {r.accuracy:6.3f} [{r.ci_low:5.3f}, {r.ci_high:5.3f}] "
            f"{r.chance:7.3f} {r.lambda_:8.0e} {r.n_features:6d}{flag}"
        )
    return "\n".join(lines)
