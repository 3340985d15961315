"""``lucidax interpretability``: per-unit interpretability scores of some layers, natural and
synthetic (see :mod:`lucidax.probes._interpretability` for the task and the observer).

>>> from lucidax.gallery import InterpretabilityJob, run_interpretability
>>> run = run_interpretability(InterpretabilityJob(model="efficientnet_lite0",
...                            layers="blocks.10", units="0-15", synthetic=True))

The unit's activation on an image is its spatial **mean** by default (as the channel objective
the renders maximize; ``reduce="max"`` for the spatial maximum). The observer is another
network's pooled features (default: the ``avgpool`` of EfficientNet-Lite1 for Lite0 / Lite2,
of Lite0 for Lite1 and for any other model), cosine similarity: an approximation of MIS's
DreamSim observer, not the same number. Scoring a model with itself as observer needs
``allow_same_observer=True``.

Files in ``out``: ``interpretability.json`` (settings, observer, per-layer medians, per-unit
rows, timings), ``interpretability.csv`` (one row per layer and unit) and
``<layer>_scores.png`` (a histogram of the layer's scores).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from lucidax._fields import WEIGHTS_HELP, flag, load_model
from lucidax._files import atomic_write, check_int, prepare_out_dir, save_json, save_plot
from lucidax._storage import OUT_HELP, staged
from lucidax.models import Model

__all__ = ["InterpretabilityJob", "InterpretabilityRun", "default_observer",
           "run_interpretability"]

RENDER_PARAMS = ("image", "fft", "pixel", "maco")


def default_observer(model_name: str) -> str:
    """The observer network for ``model_name``: another EfficientNet-Lite (Lite1 for Lite0 and
    Lite2, Lite0 for Lite1 and for every other model).

    Args:
      model_name: the analysed model's registered name.

    Example:
      >>> from lucidax.gallery import default_observer
      >>> default_observer("efficientnet_lite0")
      'efficientnet_lite1'
    """
    return {"efficientnet_lite0": "efficientnet_lite1",
            "efficientnet_lite2": "efficientnet_lite1"}.get(model_name, "efficientnet_lite0")


@dataclasses.dataclass(frozen=True)
class InterpretabilityJob:
    """What ``lucidax interpretability`` does (see the module docstring).

    Attributes:
      model, weights: the analysed model (a registered name, or a loaded Model).
      layers: comma-separated layer names.
      units: ``all`` or ranges such as ``0-15,20`` (the same for every layer).
      data: ``auto`` (``builtin:starter`` for the starter model, ``builtin:photos`` for the
        others), ``builtin:photos[:<source>]``, ``builtin:starter[:train|:test]`` or a folder.
      n: number of images of builtin data.
      reduce: ``mean`` or ``max``: a unit's activation on an image.
      observer: the observer network's name (None: :func:`default_observer`).
      observer_layer: its layer whose (spatially averaged) features are compared by cosine.
      observer_size: image side fed to the observer (None: its input side).
      allow_same_observer: allow the analysed model as its own observer.
      n_tasks, k: tasks per unit, references per side.
      synthetic: also the synthetic score (renders as max references).
      renders: renders per unit (one batch with the diversity objective).
      params: comma-separated image parameterizations, one synthetic score each.
      steps, size, diversity, learning_rate: of the renders.
      randomize: also the control: the natural score with the analysed network's kernels
        randomized (each redrawn as Normal(0, its std); biases and batch norm kept).
      separate_groups: with ``builtin:photos`` data, each task's references come from other
        source photos than its queries (``groups`` of
        :func:`lucidax.probes.sample_tasks`).
      out: output folder. seed: data, task and render seed. batch_size: images per step.

    Example:
      >>> from lucidax.gallery import InterpretabilityJob, run_interpretability
      >>> job = InterpretabilityJob(model="starter", layers="conv3", units="0-1", n=60,
      ...                           n_tasks=20, out="interp-out")
      >>> run = run_interpretability(job, progress=False)
      >>> sorted(run.results)
      ['conv3']
    """

    model: str | Model = flag("starter", "analysed model: a registered name")
    weights: str | None = flag(None, WEIGHTS_HELP)
    layers: str = flag("conv4", "comma-separated layers whose units are scored")
    units: str = flag("0-7", "'all' or ranges such as 0-15,20 (for every layer)")
    data: str = flag("auto", "auto (builtin:starter for the starter model, builtin:photos for "
                             "the others), builtin:photos[:<source>], "
                             "builtin:starter[:train|:test] or an image folder")
    n: int = flag(1000, "images of builtin data")
    reduce: str = flag("mean", "a unit's activation on an image: its spatial mean (as the "
                               "renders' channel objective) or max", choices=("mean", "max"))
    observer: str | None = flag(
        None, "observer network, a registered name (default: efficientnet_lite1 for "
              "efficientnet_lite0/2, efficientnet_lite0 for the others); never the analysed "
              "model unless --allow-same-observer")
    observer_layer: str = flag("avgpool", "observer layer; its spatially averaged features are "
                                          "compared by cosine similarity")
    observer_size: int | None = flag(None, "image side fed to the observer (default: its "
                                           "input side)")
    allow_same_observer: bool = flag(False, "let the analysed model be its own observer")
    n_tasks: int = flag(500, "tasks per unit")
    k: int = flag(9, "reference images per side (max and min)")
    synthetic: bool = flag(False, "also the synthetic score: the unit's renders replace the "
                                  "natural max references")
    renders: int = flag(4, "renders per unit for the synthetic score (diversity objective)")
    params: str = flag("image", "comma-separated render parameterizations, one synthetic score "
                                "each: " + ", ".join(RENDER_PARAMS))
    steps: int = flag(128, "render optimization steps")
    size: int = flag(128, "render side in pixels")
    diversity: float = flag(1.0, "weight of the diversity objective of a unit's renders")
    learning_rate: float = flag(0.05, "render Adam learning rate")
    randomize: bool = flag(False, "also the control: the natural score with the analysed "
                                  "network's weights randomized (should fall to ~0.5)")
    separate_groups: bool = flag(True, "builtin:photos: draw each task's references from "
                                       "other photos than its two queries (else an observer "
                                       "that recognises the photo scores high)")
    out: str = flag("interpretability-out", OUT_HELP)
    seed: int = flag(0, "seed of the data, the tasks and the renders")
    batch_size: int = flag(32, "images per forward step")

    def check(self) -> None:
        """Bad input fails here, in one line naming the flag, before any work."""
        for name in ("n", "n_tasks", "k", "renders", "steps", "size", "batch_size"):
            check_int(getattr(self, name), f"--{name.replace('_', '-')}")
        check_int(self.observer_size, "--observer-size", optional=True)
        if self.reduce not in ("mean", "max"):
            raise ValueError(f"--reduce must be mean or max; got {self.reduce!r}")
        bad = [p for p in _split(self.params) if p not in RENDER_PARAMS]
        if bad or not _split(self.params):
            raise ValueError(f"--params: unknown parameterization {bad[0] if bad else ''!r}; "
                             f"valid: {', '.join(RENDER_PARAMS)}")
        if not _split(self.layers):
            raise ValueError("--layers: give at least one layer")
        if not (isinstance(self.diversity, int | float) and self.diversity >= 0):
            raise ValueError(f"--diversity must be >= 0; got {self.diversity!r}")
        if not (isinstance(self.learning_rate, int | float) and self.learning_rate > 0):
            raise ValueError(f"--learning-rate must be > 0; got {self.learning_rate!r}")
        if self.synthetic and self.renders < 1:
            raise ValueError("--renders must be >= 1")

    def observer_name(self) -> str:
        """The observer network; ValueError if it is the analysed model and that was not
        asked for."""
        name = self.model if isinstance(self.model, str) else self.model.name
        obs = self.observer or default_observer(name)
        if obs == name and not self.allow_same_observer:
            raise ValueError(
                f"--observer {obs!r} is the analysed model: the observer must be another "
                f"network (default {default_observer(name)!r}); --allow-same-observer scores "
                f"a model with its own features")
        return obs


@dataclasses.dataclass(frozen=True, eq=False)
class InterpretabilityRun:
    """What :func:`run_interpretability` produced: per-layer results, files, a table.

    Attributes:
      results: ``{layer: per-unit scores}``.
      summary: per-layer medians and the settings (what ``summary.json`` holds).
      out: the output folder.
      files: ``{kind: path}`` of the files written.
      table: the printable table the CLI prints.

    Example:
      >>> from lucidax.gallery import InterpretabilityJob, run_interpretability
      >>> job = InterpretabilityJob(model="starter", layers="conv3", units="0-1", n=60,
      ...                           n_tasks=20, out="interp-out")
      >>> run = run_interpretability(job, progress=False)
      >>> run.out, "conv3" in run.table
      ('interp-out', True)
    """

    results: dict[str, Any]
    summary: dict[str, Any]
    out: str
    files: dict[str, str]
    table: str


def _split(s: str | Sequence[str]) -> list[str]:
    if isinstance(s, str):
        return [p.strip() for p in s.split(",") if p.strip()]
    return [str(p) for p in s]


def _features(model: Model, params: Any, images: np.ndarray, layer: str | list[str],
              reduce: str, size: int | None, batch_size: int, progress: bool = False) -> Any:
    """``[N, D]`` features of ``layer`` (a list of layers: ``{layer: [N, D]}``, one pass)."""
    from lucidax.probes import extract

    names = [layer] if isinstance(layer, str) else list(layer)
    f = extract(model, params, images, names, reduce=reduce, size=size,
                batch_size=batch_size, progress=progress, memory_check=False)
    out = {n: np.array(f[n], np.float32) for n in names}
    return out[layer] if isinstance(layer, str) else out


def _render_layer(model: Model, layer: str, units: list[int], job: InterpretabilityJob,
                  param_name: str) -> np.ndarray:
    """``[U * renders, size, size, C]`` renders: ``renders`` per unit (unit-major), one
    batched program: channel objective plus ``diversity`` times Lucid's diversity (which
    couples the whole batch, so a unit's renders are also pushed apart from the other
    units')."""
    import jax

    from lucidax.visualize import PARAMS, channel, default_init_sd, diversity, render

    r = job.renders
    unit_arr = np.repeat(np.asarray(units, np.int32), r)
    ids = unit_arr * r + np.tile(np.arange(r, dtype=np.int32), len(units))
    objective = channel(layer, unit_arr)
    if job.diversity > 0 and r > 1:
        objective = objective + float(job.diversity) * diversity(layer)
    name = model.name if isinstance(job.model, Model) else job.model
    res = render(model, model.params, objective, param=PARAMS[param_name](default_init_sd(name)),
                 steps=job.steps, size=job.size, key=jax.random.key(job.seed), unit_ids=ids,
                 optimizer=float(job.learning_rate), progress=False, memory_check=False)
    images = np.asarray(res.images, np.float32)
    return np.where(np.isfinite(images), images, 0.5)


def _randomized(params: Any, seed: int) -> Any:
    """The control's weights: every convolution / dense kernel (a leaf named ``kernel``, or
    any leaf of 2+ dimensions) redrawn as Normal(0, the array's std) (NumPy, seeded);
    biases and batch-norm statistics kept (redrawing a variance could make it negative)."""
    import jax
    import jax.numpy as jnp

    leaves, tree = jax.tree_util.tree_flatten_with_path(params)
    out = []
    for i, (path, leaf) in enumerate(leaves):
        name = str(getattr(path[-1], "key", getattr(path[-1], "name", ""))) if path else ""
        arr = np.asarray(leaf)
        if name == "kernel" or (arr.ndim >= 2 and name not in ("mean", "var", "scale")):
            rng = np.random.default_rng([int(seed), i])
            arr = (rng.standard_normal(arr.shape) * float(arr.std())).astype(arr.dtype)
            out.append(jnp.asarray(arr))
        else:
            out.append(leaf)
    return jax.tree_util.tree_unflatten(tree, out)


def _histogram(path: str, layer: str, rows: dict[str, np.ndarray]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    bins = np.linspace(0, 1, 21)
    for name, vals in rows.items():
        ax.hist(vals, bins=bins, alpha=0.5, label=f"{name} (median {np.median(vals):.2f})")
    ax.axvline(0.5, color="k", lw=0.8, ls="--")
    ax.set_xlabel("interpretability score (fraction of tasks correct)")
    ax.set_ylabel("units")
    ax.set_title(layer)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_plot(path, fig, dpi=100)


def _table(summary: dict[str, Any]) -> str:
    lines = [f"observer: {summary['observer']} {summary['observer_layer']} (cosine)"]
    for layer, s in summary["layers"].items():
        parts = [f"natural {s['median_natural']:.3f}"]
        for p, v in s.get("median_synthetic", {}).items():
            parts.append(f"synthetic[{p}] {v:.3f}")
        if "median_random_natural" in s:
            parts.append(f"random-weights {s['median_random_natural']:.3f}")
        lines.append(f"{layer}: {s['units']} units, median " + ", ".join(parts))
    return "\n".join(lines)


@staged
def run_interpretability(job: InterpretabilityJob, *, progress: bool = True
                         ) -> InterpretabilityRun:
    """Run ``job``: extract unit activations and observer features of the data, render the
    units (``synthetic``), score, write the files.

    Args:
      job: an :class:`InterpretabilityJob`.
      progress: show tqdm progress bars.

    Returns:
      An :class:`InterpretabilityRun`.

    Example:
      >>> from lucidax.gallery import InterpretabilityJob, run_interpretability
      >>> job = InterpretabilityJob(model="starter", layers="conv3", units="0-1", n=60,
      ...                           n_tasks=20, out="interp-out")
      >>> run = run_interpretability(job, progress=False)
      >>> isinstance(run.summary, dict)
      True
    """
    from .._compile_cache import enable_for_job

    enable_for_job()
    from lucidax.models import photos
    from lucidax.probes import interpretability_scores, load_data
    from lucidax.visualize import parse_units

    job.check()
    obs_name = job.observer_name()  # before loading anything
    prepare_out_dir(job.out)
    t0 = time.perf_counter()
    data_spec = photos.resolve_auto(job.data, job.model, "probe")
    model = load_model(job.model, job.weights)
    import lucidax.models as lm

    observer = lm.load(obs_name)
    if job.observer_layer not in observer.layers:
        from lucidax.models import suggest

        raise ValueError("--observer-layer: " + suggest(job.observer_layer,
                                                        list(observer.layers), what="layer"))
    layers = _split(job.layers)
    for layer in layers:
        if layer not in model.layers:
            from lucidax.models import suggest

            raise ValueError("--layers: " + suggest(layer, list(model.layers), what="layer"))
    unit_sets = {layer: parse_units(job.units, model.channels(layer)) for layer in layers}
    data = load_data(data_spec, n=job.n, seed=job.seed, side=model.input_spec.side,
                     channels=model.input_spec.channels)
    images = data.data
    groups = None  # builtin:photos crops: their source photo
    if str(data_spec).startswith("builtin:photos") and data.labels and "source" in data.labels:
        groups = np.asarray(data.labels["source"])
    if isinstance(images, str):
        from lucidax._files import read_images
        from lucidax.probes import list_image_folder

        paths = list_image_folder(images)[0][: job.n]
        images, _ = read_images(paths, size=model.input_spec.side or 224,
                                channels=model.input_spec.channels, where=data_spec)
    images = np.asarray(images)
    images = images / np.float32(255) if images.dtype == np.uint8 else images.astype(np.float32)
    obs_size = job.observer_size or observer.input_spec.side
    t_obs = time.perf_counter()
    obs_feats = _features(observer, observer.params, images, job.observer_layer, "mean",
                          obs_size, job.batch_size, progress)
    t_obs = time.perf_counter() - t_obs
    t_acts = time.perf_counter()
    all_acts = _features(model, model.params, images, layers, job.reduce, None,
                         job.batch_size, progress)
    t_acts = time.perf_counter() - t_acts
    results: dict[str, Any] = {}
    summary: dict[str, Any] = {"model": model.name, "observer": obs_name,
                               "observer_layer": job.observer_layer, "observer_size": obs_size,
                               "reduce": job.reduce, "data": data.description,
                               "separate_groups": groups is not None and job.separate_groups,
                               "n_images": int(len(images)), "layers": {}}
    timings: dict[str, Any] = {"observer_features_s": t_obs, "unit_activations_s": t_acts}
    rand_acts = None
    if job.randomize:
        rand_acts = _features(model, _randomized(model.params, job.seed), images, layers,
                              job.reduce, None, job.batch_size, progress)
        for layer in layers:  # a random network can overflow: an overflowed image says 0
            bad = ~np.isfinite(rand_acts[layer])
            summary.setdefault("random_nonfinite", {})[layer] = int(bad.sum())
            rand_acts[layer] = np.where(bad, 0.0, rand_acts[layer])
    grouping = {"groups": groups, "separate_groups": job.separate_groups}
    for layer in layers:
        units = unit_sets[layer]
        t = time.perf_counter()
        acts = all_acts[layer][:, units]
        synthetic: dict[str, Any] = {}
        render_s: dict[str, float] = {}
        if job.synthetic:
            for p in _split(job.params):
                tr = time.perf_counter()
                ims = _render_layer(model, layer, units, job, p)
                rf = _features(observer, observer.params, ims, job.observer_layer, "mean",
                               obs_size, job.batch_size)
                synthetic[p] = list(rf.reshape(len(units), job.renders, -1))
                render_s[p] = time.perf_counter() - tr
        res = interpretability_scores(acts, obs_feats, n_tasks=job.n_tasks, k=job.k,
                                      seed=job.seed, units=units, **grouping)
        syn = {p: interpretability_scores(acts, obs_feats, n_tasks=job.n_tasks, k=job.k,
                                          seed=job.seed, units=units, synthetic_refs=r,
                                          **grouping)
               for p, r in synthetic.items()}
        rnd = None
        if rand_acts is not None:
            rnd = interpretability_scores(rand_acts[layer][:, units], obs_feats,
                                          n_tasks=job.n_tasks, k=job.k, seed=job.seed,
                                          units=units, **grouping)
        rows = res.rows()
        for p, r in syn.items():
            for row, s, ci in zip(rows, r.synthetic, r.synthetic_ci, strict=True):
                row[f"synthetic_{p}"] = float(s)
                row[f"synthetic_{p}_lo"], row[f"synthetic_{p}_hi"] = map(float, ci)
                row[f"gap_{p}"] = row["natural"] - float(s)
        if rnd is not None:
            for row, s in zip(rows, rnd.natural, strict=True):
                row["random_natural"] = float(s)
        s = res.summary()
        if syn:
            s["median_synthetic"] = {p: float(np.median(r.synthetic)) for p, r in syn.items()}
            s["median_gap"] = {p: float(np.median(r.natural - r.synthetic))
                               for p, r in syn.items()}
        if rnd is not None:
            s["median_random_natural"] = float(np.median(rnd.natural))
        if groups is not None and job.separate_groups:  # what the grouping changes: cheap
            plain = {"n_tasks": job.n_tasks, "k": job.k, "seed": job.seed, "units": units}
            s["median_natural_without_groups"] = float(np.median(
                interpretability_scores(acts, obs_feats, **plain).natural))
            if rand_acts is not None:
                s["median_random_natural_without_groups"] = float(np.median(
                    interpretability_scores(rand_acts[layer][:, units], obs_feats,
                                            **plain).natural))
        elapsed = time.perf_counter() - t
        timings[layer] = {"scoring_and_render_s": elapsed, "render_s": render_s,
                          "render_per_unit_s": {p: v / len(units) for p, v in render_s.items()}}
        summary["layers"][layer] = s
        results[layer] = {"natural": res, "synthetic": syn, "random": rnd, "rows": rows}
        hist = {"natural": res.natural, **{f"synthetic {p}": r.synthetic for p, r in syn.items()}}
        if rnd is not None:
            hist["random weights"] = rnd.natural
        _histogram(os.path.join(job.out, f"{layer.replace('/', '_')}_scores.png"), layer, hist)
    timings["total_s"] = time.perf_counter() - t0
    n_units = sum(len(u) for u in unit_sets.values())
    timings["per_unit_s"] = timings["total_s"] / n_units
    summary["timings"] = timings
    files = {"json": os.path.join(job.out, "interpretability.json"),
             "csv": os.path.join(job.out, "interpretability.csv")}
    job_dict = {f.name: (getattr(job, f.name) if f.name != "model" or isinstance(job.model, str)
                         else model.name) for f in dataclasses.fields(job)}
    save_json(files["json"], {"job": job_dict, "summary": summary,
                              "units": {layer: r["rows"] for layer, r in results.items()},
                              "note": "observer: cosine similarity of another network's "
                                      "features, an approximation of MIS's DreamSim "
                                      "observer, not the same number"})
    columns = ["layer"] + list(dict.fromkeys(k for r in results.values() for row in r["rows"]
                                             for k in row))
    buf = io.StringIO()
    w = csv.DictWriter(buf, columns, restval="")
    w.writeheader()
    for layer, r in results.items():
        for row in r["rows"]:
            w.writerow({"layer": layer, **row})
    atomic_write(files["csv"], buf.getvalue().encode())
    for layer in layers:
        files[f"{layer}_plot"] = os.path.join(job.out, f"{layer.replace('/', '_')}_scores.png")
    return InterpretabilityRun(results, summary, os.fspath(job.out), files, _table(summary))
