"""The probes' result files and text tables: results.json / .csv of a layer sweep, of TCAV
and of a dissection (with their figures, :mod:`lucidax.probes._plots`). Every file is written
to a temporary name and renamed into place."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lucidax.models import Model

from .._files import atomic_write, save_json
from ._dissect import Dissection
from ._extract import Features
from ._linear import ProbeResult
from ._plots import _stars, plot_dissection, plot_results, plot_tcav
from ._tcav import TCAVResult

#: the columns of ``results.csv`` written by :func:`write_results`
CSV_COLUMNS = (
    "layer", "depth", "accuracy", "ci_low", "ci_high", "lambda", "cv_accuracy", "n_train",
    "n_test", "chance", "n_features", "n_classes", "converged",
)

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
    """Write results.json, results.csv and the accuracy plot; returns ``{kind: path}``.

    Args:
      results: :class:`ProbeResult` of each layer.
      out_dir: the output folder (created).
      model: the :class:`lucidax.models.Model` probed (its name and layer depths).
      features: the :class:`Features` the probes were fitted on (their facts go in the JSON).
      target: the label family probed.
      class_names: names of the label values.
      extra: more entries for results.json.

    Example:
      >>> import lucidax.models as lm
      >>> from lucidax.probes import write_results
      >>> import numpy as np
      >>> from lucidax.probes import fit_probe
      >>> rng = np.random.default_rng(0)
      >>> y = np.repeat([0, 1], 40)
      >>> results = [fit_probe(rng.normal(size=(80, 4)) + s * y[:, None], y, layer=name)
      ...            for s, name in ((0.2, "conv1"), (2.0, "conv5"))]
      >>> files = write_results(results, "probe-out", model=lm.load("starter"), target="toy")
      >>> sorted(files)  # doctest: +ELLIPSIS
      [...'csv'...'json'...]
    """
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

def format_results(results: Sequence[ProbeResult]) -> str:
    """A plain-text table for terminals (what the CLI prints).

    Args:
      results: :class:`ProbeResult` of each layer.

    Example:
      >>> from lucidax.probes import format_results
      >>> import numpy as np
      >>> from lucidax.probes import fit_probe
      >>> rng = np.random.default_rng(0)
      >>> y = np.repeat([0, 1], 40)
      >>> results = [fit_probe(rng.normal(size=(80, 4)) + s * y[:, None], y, layer=name)
      ...            for s, name in ((0.2, "conv1"), (2.0, "conv5"))]
      >>> table = format_results(results)
      >>> "conv1" in table and "conv5" in table
      True
    """
    head = f"{'layer':<20} {'acc':>6} {'95% CI':>15} {'chance':>7} {'lambda':>8} {'dim':>6}"
    lines = [head, "-" * len(head)]
    for r in results:
        flag = "" if r.converged else "  (not converged)"
        lines.append(
            f"{(r.layer or '')[:20]:<20} {r.accuracy:6.3f} [{r.ci_low:5.3f}, {r.ci_high:5.3f}] "
            f"{r.chance:7.3f} {r.lambda_:8.0e} {r.n_features:6d}{flag}"
        )
    return "\n".join(lines)

_TCAV_CSV_COLUMNS = ("concept", "layer", "target", "mean", "std", "null_mean", "null_std",
               "statistic", "df", "p", "p_adj", "significant", "cav_accuracy", "runs",
               "independent_runs", "cav")  # new columns go last (readers index by name)

def format_tcav(results: Sequence[TCAVResult]) -> str:
    """A plain-text table (what the CLI prints).

    Args:
      results: :class:`TCAVResult` of each (concept, layer).

    Example:
      >>> from lucidax.probes import format_tcav
      >>> import numpy as np
      >>> from lucidax.probes import tcav_from_features
      >>> rng = np.random.default_rng(0)
      >>> results = tcav_from_features(
      ...     {"stripes": {"conv4": rng.normal(size=(40, 8)) + np.eye(8)[0]}},
      ...     {"conv4": rng.normal(size=(80, 8))},
      ...     {"conv4": rng.normal(size=(30, 8)) + np.eye(8)[0]},
      ...     runs=5, n_concept=10, n_random=10, target="3")
      >>> "stripes" in format_tcav(results)
      True
    """
    head = (f"{'concept':<22} {'layer':<14} {'class':>5} {'TCAV':>13} {'random':>13} "
            f"{'p':>9} {'p_adj':>9} {'sig':>4} {'CAV acc':>7}")
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(
            f"{r.concept[:22]:<22} {r.layer[:14]:<14} {r.target[:5]:>5} "
            f"{r.mean:5.2f} ± {r.std:4.2f} {r.null_mean:5.2f} ± {r.null_std:4.2f} "
            f"{r.p:9.2e} {r.p_adj:9.2e} {_stars(r):>4} {r.cav_accuracy:7.2f}")
    if any(r.cav == "mean" for r in results):
        lines.append("CAVs: mean difference (FastCAV); CAV acc: held-out accuracy of "
                     "sign(v . (a - mean))")
    if results and not all(r.independent_runs for r in results):
        lines.append("note: some runs share images (pool too small); p-values are optimistic")
    return "\n".join(lines)

def write_tcav(results: Sequence[TCAVResult], out_dir: str | os.PathLike, *,
               extra: Mapping[str, Any] | None = None) -> dict[str, str]:
    """results.json, results.csv and tcav.png/.svg in ``out_dir``; returns ``{kind: path}``.

    Args:
      results: :class:`TCAVResult` of each (concept, layer).
      out_dir: the output folder (created).
      extra: more entries for results.json.

    Example:
      >>> from lucidax.probes import write_tcav
      >>> import numpy as np
      >>> from lucidax.probes import tcav_from_features
      >>> rng = np.random.default_rng(0)
      >>> results = tcav_from_features(
      ...     {"stripes": {"conv4": rng.normal(size=(40, 8)) + np.eye(8)[0]}},
      ...     {"conv4": rng.normal(size=(80, 8))},
      ...     {"conv4": rng.normal(size=(30, 8)) + np.eye(8)[0]},
      ...     runs=5, n_concept=10, n_random=10, target="3")
      >>> sorted(write_tcav(results, "tcav-out"))  # doctest: +ELLIPSIS
      [...'csv'...'json'...]
    """
    import csv

    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    paths = {kind: os.path.join(out_dir, name) for kind, name in (
        ("json", "results.json"), ("csv", "results.csv"), ("png", "tcav.png"),
        ("svg", "tcav.svg"))}
    save_json(paths["json"], {**(extra or {}), "results": [r.to_dict() for r in results]},
              allow_nan=False)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=_TCAV_CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in results:
        d = r.to_dict()
        w.writerow({c: (f"{d[c]:.6g}" if isinstance(d[c], float) else d[c])
                    for c in _TCAV_CSV_COLUMNS})
    atomic_write(paths["csv"], buf.getvalue().encode())
    plot_tcav(results, paths["png"])
    plot_tcav(results, paths["svg"])
    return paths

_DISSECT_CSV_COLUMNS = ("layer", "unit", "concept", "category", "iou", "threshold", "detector",
                "coverage")

def write_dissection(result: Dissection, out: str | os.PathLike) -> dict[str, str]:
    """results.json (settings, summary, every unit), units.csv, iou.npz (every IoU and
    threshold), summary.png/.svg. Returns ``{kind: path}``.

    Args:
      result: a :class:`Dissection`.
      out: the output folder (created).

    Example:
      >>> from lucidax.probes import write_dissection
      >>> import lucidax.models as lm
      >>> from lucidax.probes import StarterConcepts, dissect
      >>> result = dissect(lm.load("starter"), StarterConcepts(n=32), layers="conv3")
      >>> sorted(write_dissection(result, "dissect-out"))  # doctest: +ELLIPSIS
      [...]
    """
    out = os.fspath(out)
    paths = {k: os.path.join(out, f) for k, f in (
        ("json", "results.json"), ("csv", "units.csv"), ("npz", "iou.npz"),
        ("png", "summary.png"), ("svg", "summary.svg"))}
    save_json(paths["json"], result.to_dict())
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(_DISSECT_CSV_COLUMNS)
    for u in result.units:
        w.writerow([u.layer, u.unit, u.concept, u.category, f"{u.iou:.6f}",
                    f"{u.threshold:.9g}", int(u.detector), f"{u.coverage:.6f}"])
    atomic_write(paths["csv"], buf.getvalue().encode())
    arrays = {f"iou/{n}": result.iou[n] for n in result.layers}
    arrays.update({f"threshold/{n}": result.thresholds[n] for n in result.layers})
    arrays["concepts"] = np.asarray(result.concepts)
    nbuf = io.BytesIO()
    np.savez(nbuf, **arrays)
    atomic_write(paths["npz"], nbuf.getvalue())
    plot_dissection(result, paths["png"])
    plot_dissection(result, paths["svg"])
    return paths


def format_dissection(result: Dissection, *, top: int = 10) -> str:
    """Plain-text summary: detectors per layer by concept, then the best units.

    Args:
      result: a :class:`Dissection`.
      top: how many of the best units to list.

    Example:
      >>> import lucidax.models as lm
      >>> from lucidax.probes import StarterConcepts, dissect
      >>> result = dissect(lm.load("starter"), StarterConcepts(n=32), layers="conv3")
      >>> from lucidax.probes import format_dissection
      >>> print(format_dissection(result, top=3))  # doctest: +ELLIPSIS
      layer            detectors  concepts (units)
      ...
      top 3 units:
      ...
    """
    lines = [f"{'layer':<16} {'detectors':>9}  concepts (units)"]
    lines.append("-" * 60)
    summary = result.summary()
    for n in result.layers:
        k = len(result.thresholds[n])
        d = summary[n]
        text = ", ".join(f"{c} ({v})" for c, v in d.items()) or "-"
        lines.append(f"{n[:16]:<16} {sum(d.values()):>4}/{k:<4}  {text}")
    best = result.detectors()[:top]
    if best:
        lines.append("")
        lines.append(f"top {len(best)} units:")
        for u in best:
            lines.append(f"  {u.layer}:{u.unit:<4} {u.concept:<20} IoU {u.iou:.3f}")
    for n, why in result.skipped_layers.items():
        lines.append(f"skipped {n}: {why}")
    return "\n".join(lines)
