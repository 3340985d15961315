"""``lucidax concepts`` as a library call: :class:`ConceptsJob` (the configuration) and
:func:`run_concepts` (load the model and the images, factor each layer's activations, find
each concept's top crops and heat-maps, render its direction, measure its importance for a
class and the stability of the factorization, write the files and pages).

>>> from lucidax.concepts import ConceptsJob, run_concepts
>>> run = run_concepts(ConceptsJob(model="starter", layers="conv3", k=8, n=200,
...                                out="runs/concepts"))

The work is done in stages, each written atomically with the fingerprint of what it depends
on (``<out>/<layer>/state.json``): a run that is killed resumes at the first stage not done,
and a run with other settings redoes only the stages those settings change (``force=True``:
all of them). Activations are cached by :func:`lucidax.probes.extract` in ``<out>/cache``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from lucidax._fields import MEMORY_HELP, WEIGHTS_HELP, flag, load_model
from lucidax._files import check_int, prepare_out_dir, save_json, to_uint8
from lucidax._storage import OUT_HELP, staged
from lucidax.models import Model, normalize_layers, suggest
from lucidax.visualize import PARAMS

from ._discover import layer_activations
from ._factorization import Factorization, codes
from ._importance import _check_model, _resolve_class
from ._page import class_figure
from ._stages import (
    _FORMAT,
    State,
    examples_stage,
    factorization_stage,
    fingerprint,
    importance_stage,
    layer_dir_name,
    renders_stage,
    split_list,
    stability_stage,
)

__all__ = ["ConceptsJob", "ConceptsRun", "LayerConcepts", "run_concepts"]

METHODS = ("nmf", "sae", "pca")


@dataclasses.dataclass(frozen=True)
class ConceptsJob:
    """What ``lucidax concepts`` does: for each layer, factor the activations of every
    spatial position of the images into ``k`` concepts (NMF, a TopK sparse autoencoder or
    PCA), and for each concept write its top image crops, heat-maps, a render of its direction
    and (with a class) its importance for the class; one page per layer (and per class) under
    ``out``, linked from a gallery when ``out`` is ``<gallery>/concepts``.

    Attributes:
      model: registered model name, or a loaded Model.
      weights: checkpoint path (None: the model's default weights; only with a name).
      layers: comma-separated layer names; None: the deepest conv layer (EfficientNet-Lite:
        ``head``).
      data: images whose activations are factored: ``auto`` (``builtin:starter:test`` for
        the starter model, ``builtin:photos`` for other RGB models), ``builtin:photos[:src]``,
        ``builtin:starter[:split]`` or a folder.
      n: number of images of builtin data.
      seed: seed of the data, the factorization and the renders.
      k: concepts per layer.
      method: ``nmf`` (non-negative: post-ReLU layers, CRAFT's choice), ``sae`` (TopK sparse
        autoencoder) or ``pca``.
      iterations: NMF iterations / SAE epochs (None: the method's default).
      topk: active concepts per position of the SAE.
      target_class: class index or label whose concept importance is measured (None: none).
      class_data: images for the importance (None: ``data``); the ``importance_images`` of
        them with the largest class logit are used.
      importance_images: images per class for the importance (Sobol costs ``(k + 2) *
        designs`` forward passes per image).
      designs: Sobol quasi-Monte-Carlo designs per image.
      stability: seeds per method for the stability table (0: skip; 3 is the usual).
      stability_methods: comma-separated methods of the stability table.
      resample: fraction of the rows each stability seed is fitted on (None: all rows).
      top: top crops per concept.
      heatmaps: heat-maps per concept (on its top images).
      steps: render steps (None: 128).
      size: render side in pixels (None: 128 for EfficientNet-Lite, the model's input side,
        at most 128, for the other models).
      param: render parameterization, a key of ``lucidax.visualize.PARAMS``.
      init_sd: std of the render's random start (None:
        :func:`lucidax.visualize.default_init_sd`).
      batch_size: images per forward pass.
      out: output folder.
      force: redo every stage.
      dry_run: load the model, resolve the layers, the data and the class, print what would
        be done (and which stages a resumed run would skip), and stop before any work.
      memory_check: refuse extraction and renders that cannot fit in memory.

    Example:
      >>> from lucidax.concepts import ConceptsJob, run_concepts
      >>> job = ConceptsJob(model="starter", layers="conv5", n=16, k=3, top=2, steps=16,
      ...                   size=32, out="concepts-out")
      >>> job.check()  # bad settings fail here, before any work
      >>> run = run_concepts(job, progress=False)
      >>> run.layers[0].factorization.W.shape, sorted(run.files)
      ((3, 128), ['index', 'page:conv5'])
    """

    model: str | Model = flag("efficientnet_lite0", "registered model name")
    weights: str | None = flag(None, WEIGHTS_HELP)
    layers: str | None = flag(
        None, "comma-separated layers to factor (default: the deepest conv layer, "
              "EfficientNet-Lite's head); NMF needs non-negative, post-ReLU layers")
    data: str = flag(
        "auto", "images to factor: auto (builtin:starter:test for starter, builtin:photos for "
                "other RGB models), builtin:photos[:source], builtin:starter[:split] or a folder")
    n: int = flag(1000, "images of builtin data")
    seed: int = flag(0, "seed of the data, the factorization and the renders")
    k: int = flag(24, "concepts per layer")
    method: str = flag("nmf", "factorization: nmf (non-negative, post-ReLU layers), sae (TopK "
                              "sparse autoencoder) or pca", choices=METHODS)
    iterations: int | None = flag(
        None, "NMF iterations / SAE epochs (default: the method's own)")
    topk: int = flag(4, "active concepts per position of the SAE")
    target_class: str | None = flag(
        None, "class label or logit index whose concept importance is measured (Sobol "
              "indices and gradient x concept; default: none)", name="class")
    class_data: str | None = flag(
        None, "images for the importance (default: --data); those with the largest class "
              "logit are used")
    importance_images: int = flag(8, "images of the class for the importance")
    designs: int = flag(32, "Sobol designs per image ((k + 2) x designs forward passes)")
    stability: int = flag(0, "seeds per method for the stability table (0: skip)")
    stability_methods: str = flag("nmf,sae,pca", "comma-separated methods of the stability "
                                                 "table")
    resample: float | None = flag(
        None, "fraction of the rows each stability seed is fitted on (a seeded random subset; "
              "default: all rows, so only the initialization differs and PCA is trivially "
              "stable)")
    top: int = flag(8, "top crops per concept")
    heatmaps: int = flag(3, "heat-maps per concept")
    steps: int | None = flag(None, "render steps (default: 128)")
    size: int | None = flag(None, "render side in pixels (default: 128 for EfficientNet-Lite, "
                                  "the model's input side, at most 128, for the others)")
    param: str = flag("image", "render parameterization: image (Lucid's decorrelated FFT), "
                               "fft, pixel, maco, cppn")
    init_sd: float | None = flag(
        None, "std of the render's random start (default: 0.01 for EfficientNet-Lite, 2.0 for "
              "the other models)")
    batch_size: int = flag(32, "images per forward pass")
    out: str = flag("concepts-out", f"{OUT_HELP} (index.html, <layer>/index.html, "
                                    "<layer>/class-<class>.html)")
    force: bool = flag(False, "redo every stage instead of resuming")
    dry_run: bool = flag(False, "load the model, resolve layers, data and class, print the "
                                "plan and stop before any work")
    memory_check: bool = flag(True, MEMORY_HELP)

    def check(self) -> None:
        """Bad input fails here, in one line naming the flag, before any work."""
        for value, name in ((self.n, "--n"), (self.k, "--k"), (self.topk, "--topk"),
                            (self.importance_images, "--importance-images"),
                            (self.designs, "--designs"), (self.top, "--top"),
                            (self.batch_size, "--batch-size")):
            check_int(value, name)
        check_int(self.heatmaps, "--heatmaps", minimum=0)
        check_int(self.stability, "--stability", minimum=0)
        check_int(self.iterations, "--iterations", optional=True)
        check_int(self.steps, "--steps", optional=True)
        check_int(self.size, "--size", optional=True)
        if self.method not in METHODS:
            raise ValueError(suggest(self.method, METHODS, what="--method"))
        for m in split_list(self.stability_methods):
            if m not in METHODS:
                raise ValueError(suggest(m, METHODS, what="--stability-methods entry"))
        if self.param not in PARAMS:
            raise ValueError(suggest(self.param, tuple(PARAMS), what="--param"))
        r = self.resample
        if r is not None and not (isinstance(r, int | float) and 0.0 < float(r) <= 1.0):
            raise ValueError(f"--resample must be in (0, 1]; got {r!r}")
        if self.stability == 1:
            raise ValueError("--stability needs at least 2 seeds to compare (0 skips it)")


@dataclasses.dataclass(frozen=True, eq=False)
class LayerConcepts:
    """One layer's concepts, as :func:`run_concepts` found them (``ConceptsRun.layers``).

    Attributes:
      layer: the layer name.
      factorization: its :class:`Factorization` (``W [k, C]``).
      concepts: one summary dict per concept, as in ``<layer>/concepts.json`` (``concept``,
        ``share``, ``frequency``, ``top_images``, ``top_positions``, ``top_values``, the
        render's ``render_*`` numbers...).
      importance: with a ``target_class``, the class's importance (``class``, ``label``,
        ``sobol``, ``gradient``, ``agreement``...); None without.
      stability: the stability table (one dict per method, as ``Stability.to_dict()``),
        or None when ``stability=0``.
      folder: the layer's output folder (``<out>/<layer>``).

    Example:
      >>> from lucidax.concepts import ConceptsJob, run_concepts
      >>> job = ConceptsJob(model="starter", layers="conv5", n=16, k=3, top=2, steps=16,
      ...                   size=32, out="concepts-out")
      >>> layer = run_concepts(job, progress=False).layers[0]
      >>> layer.layer, layer.factorization.W.shape, len(layer.concepts), layer.importance
      ('conv5', (3, 128), 3, None)
    """

    layer: str
    factorization: Factorization
    concepts: list[dict[str, Any]]
    importance: dict[str, Any] | None
    stability: list[dict[str, Any]] | None
    folder: str


@dataclasses.dataclass(frozen=True, eq=False)
class ConceptsRun:
    """What :func:`run_concepts` produced.

    Attributes:
      layers: a :class:`LayerConcepts` per layer (empty for a ``dry_run``).
      out: the output folder (or URL).
      files: the pages written, by name (``"index"``, ``"page:<layer>"``, ``"class:<layer>"``
        with a class) -> path.
      table: a printable summary (for a ``dry_run``: the plan).

    Example:
      >>> from lucidax.concepts import ConceptsJob, run_concepts
      >>> job = ConceptsJob(model="starter", layers="conv5", n=16, k=3, top=2, steps=16,
      ...                   size=32, out="concepts-out")
      >>> run = run_concepts(job, progress=False)
      >>> [r.layer for r in run.layers], run.out
      (['conv5'], 'concepts-out')
      >>> print(run.table)
      conv5: 3 concepts (nmf, relative error ...)
      ...
    """

    layers: list[LayerConcepts]
    out: str
    files: dict[str, str]
    table: str


def _default_layer(model: Model) -> str:
    convs = [n for n, info in model.layers.items()
             if info.kind == "conv" and not info.pre_relu and not n.endswith("_pre_relu")]
    if not convs:
        raise ValueError(f"model {model.name!r} has no conv layer; give --layers")
    return convs[-1]


def _target(model: Model, spec: Any) -> tuple[int, str]:
    """``(index, label)`` of ``--class`` (a label or an index), before any work."""
    _check_model(model)
    index, label = _resolve_class(model, spec)
    return index, label if label is not None else str(index)


def _images(spec: str, model: Model, n: int, seed: int) -> tuple[np.ndarray, str]:
    """uint8 ``[N, S, S, C]`` at the model's side, and a description."""
    from lucidax.probes import ImageSet, load_data

    side = model.input_spec.side or 224
    channels = model.input_spec.channels
    data = load_data(spec, n=n, seed=seed, side=side, channels=channels)
    if isinstance(data.data, str):
        arr = ImageSet.from_folder(data.data, size=side, channels=channels).images
    else:
        arr = np.asarray(data.data)
    return to_uint8(arr), data.description


# ----------------------------------------------------------------------------------------------
# the job
# ----------------------------------------------------------------------------------------------
@staged
def run_concepts(job: ConceptsJob, *, progress: bool = True) -> ConceptsRun:
    """Run ``job``: what ``lucidax concepts`` does.

    Input is checked before the model loads (``ConceptsJob.check()``); each stage resumes
    from ``<out>/<layer>/state.json``, so a second call with the same settings redoes nothing
    (``job.force``: everything). With ``job.dry_run`` nothing is written and
    ``ConceptsRun.table`` is the plan. A ``job.out`` URL runs in a local staging folder
    published at the end.

    Args:
      job: the configuration, a :class:`ConceptsJob`.
      progress: show tqdm progress bars.

    Returns:
      a :class:`ConceptsRun`: per layer its :class:`LayerConcepts`, the pages written
      (``<out>/index.html``, ``<out>/<layer>/index.html``, ``<out>/<layer>/class-<class>.html``)
      and a summary table.

    Raises:
      ValueError: a bad setting (``ConceptsJob.check()``), an unknown layer or class.
      FileNotFoundError: ``data`` or ``class_data`` is neither a builtin set nor a folder.

    Example:
      >>> from lucidax.concepts import ConceptsJob, run_concepts
      >>> job = ConceptsJob(model="starter", layers="conv5", n=16, k=3, top=2, steps=16,
      ...                   size=32, target_class="3", importance_images=2, designs=4,
      ...                   out="concepts-out")
      >>> run = run_concepts(job, progress=False)
      >>> sorted(run.files), len(run.layers[0].importance["sobol"]["mean"])
      (['class:conv5', 'index', 'page:conv5'], 3)
      >>> import os
      >>> os.path.exists("concepts-out/conv5/index.html")
      True
    """
    from .._compile_cache import enable_for_job  # on unless turned off: see there

    enable_for_job()
    from lucidax.models import photos

    from ._page import write_pages

    job.check()
    out = prepare_out_dir(job.out)
    data_spec = photos.resolve_auto(job.data, job.model, "concepts")  # before loading
    for spec in (data_spec, job.class_data):
        if spec is not None and spec != "auto" and photos.parse_builtin(spec) is None \
                and not os.path.exists(spec):
            raise FileNotFoundError(f"data not found: {spec!r} (a folder, or builtin:photos"
                                    "[:source] / builtin:starter[:split])")
    model = load_model(job.model, job.weights)
    layers = (normalize_layers(job.layers, tuple(model.layers)) if job.layers
              else (_default_layer(model),))
    target = _target(model, job.target_class) if job.target_class is not None else None
    if job.dry_run:
        return _plan(job, out, model, layers, target, data_spec)
    images, description = _images(data_spec, model, job.n, job.seed)
    class_images = images
    if target is not None and job.class_data is not None:
        class_spec = photos.resolve_auto(job.class_data, model, "concepts")
        class_images, _ = _images(class_spec, model, job.n, job.seed)
    base = {"format": _FORMAT, "model": model.name, "weights": model.weights_source,
            "data": data_spec, "n": job.n, "seed": job.seed, "images": len(images)}
    results = []
    for layer in layers:
        folder = os.path.join(out, layer_dir_name(layer))
        os.makedirs(folder, exist_ok=True)
        state = State(folder, job.force)
        rows, grid = layer_activations(model, model.params, images, layer,
                                       batch_size=job.batch_size,
                                       cache_dir=os.path.join(out, "cache"),
                                       progress=progress, memory_check=job.memory_check)
        fp_fact = fingerprint({**base, "layer": layer, "k": job.k, "method": job.method,
                               "iterations": job.iterations,
                               "topk": job.topk if job.method == "sae" else None})
        fact = factorization_stage(state, folder, fp_fact, layer, rows, job, progress)
        code_maps = codes(fact, rows).reshape(len(images), *grid, fact.W.shape[0])
        facts = examples_stage(folder, images, code_maps, grid, job)["concepts"]
        fp_render = fingerprint({"f": fp_fact, "steps": job.steps, "size": job.size,
                                 "param": job.param, "init_sd": job.init_sd})
        renders = renders_stage(state, folder, fp_render, model, layer, fact, rows,
                                len(images), job, progress)
        for row, r in zip(facts, renders["concepts"], strict=True):
            row.update({f"render_{k}": v for k, v in r.items() if k != "concept"})
        importance = None
        if target is not None:
            fp_imp = fingerprint({"f": fp_fact, "class": target[0], "class_data":
                                  job.class_data, "images": job.importance_images,
                                  "designs": job.designs})
            importance = importance_stage(state, folder, fp_imp, model, layer, fact,
                                          class_images, target, job, progress)
            class_figure(folder, importance, rows=min(6, job.k), crops=min(5, job.top))
        table = None
        if job.stability:
            fp_stab = fingerprint({**base, "layer": layer, "k": job.k, "seeds": job.stability,
                                   "resample": job.resample,
                                   "methods": job.stability_methods, "topk": job.topk,
                                   "iterations": job.iterations})
            table = stability_stage(state, folder, fp_stab, rows, job, progress)
        summary = {**base, "layer": layer, "grid": list(grid), "data_description": description,
                   "factorization": fact.to_dict(), "renders": {
                       k: v for k, v in renders.items() if k != "concepts"},
                   "concepts": facts}
        save_json(os.path.join(folder, "concepts.json"), summary)
        results.append(LayerConcepts(layer, fact, facts, importance, table, folder))
    files = write_pages(out, results, meta={**base, "data_description": description,
                                            "method": job.method, "k": job.k})
    return ConceptsRun(results, out, files, format_run(results))


def _plan(job: ConceptsJob, out: str, model: Model, layers: Sequence[str],
          target: tuple[int, str] | None, data_spec: str) -> ConceptsRun:
    """What :func:`run_concepts` would do (``dry_run``): nothing is written."""
    side = model.input_spec.side or 224
    lines = [f"dry run: {model.name}, data {data_spec} ({job.n} images if builtin) at {side} px, "
             f"{job.k} concepts by {job.method} per layer"]
    for layer in layers:
        shape = model.layer_shape(layer, side)
        positions = int(np.prod(shape[:-1])) if len(shape) == 3 else 1
        folder = os.path.join(out, layer_dir_name(layer))
        done = sorted(State(folder, job.force).done) if os.path.isdir(folder) else []
        lines.append(f"  {layer}: activations {tuple(shape)} -> {job.n * positions:,} rows x "
                     f"{shape[-1]} channels; stages already done: "
                     f"{', '.join(done) if done else 'none'}")
    if target is not None:
        lines.append(f"  class {target[0]} ({target[1]}): Sobol on {job.importance_images} "
                     f"images x {(job.k + 2) * job.designs} forward passes")
    if job.stability:
        lines.append(f"  stability: {job.stability} seeds of {job.stability_methods}")
    return ConceptsRun([], out, {}, "\n".join(lines))


def format_run(results: Sequence[LayerConcepts]) -> str:
    """A short printable summary of each layer's concepts."""
    lines = []
    for r in results:
        f = r.factorization
        lines.append(f"{r.layer}: {len(r.concepts)} concepts ({f.method}, relative error "
                     f"{f.error:.3f}, {f.l0:.1f} active per position, {f.seconds:.1f} s)")
        gains = [c.get("render_gain_vs_natural_max") for c in r.concepts]
        gains = [g for g in gains if g is not None]
        if gains:
            lines.append(f"  renders: median {np.median(gains):.2f}x the best natural image "
                         "on their own direction")
        if r.importance:
            imp = r.importance
            top = imp["sobol"]["ranking"][:3]
            lines.append(f"  class {imp['class']} ({imp['label']}): most important concepts "
                         f"(Sobol) {', '.join(map(str, top))}; Spearman with gradient x "
                         f"concept {imp['agreement'].get('spearman', float('nan')):.2f}")
        for s in r.stability or ():
            lines.append(f"  stability {s['method']}: matched cosine "
                         f"{s['mean']:.3f} over {len(s['seeds'])} seeds")
    return "\n".join(lines)
