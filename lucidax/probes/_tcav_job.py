"""``lucidax tcav`` as a library call: :class:`TCAVJob` (the configuration) and
:func:`run_tcav` (load the model, build the image sets, run :func:`lucidax.probes.tcav`,
write the files).

>>> from lucidax.probes import TCAVJob, run_tcav
>>> run = run_tcav(TCAVJob(concepts=("color:red", "background:grass"), target_class="3",
...                        layers="conv2,conv4", out="runs/tcav"))
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from typing import Any

from lucidax._fields import MEMORY_HELP, WEIGHTS_HELP, flag, load_model
from lucidax._files import check_int, prepare_out_dir
from lucidax._storage import OUT_HELP, staged
from lucidax.models import Model, normalize_layers

from ._cav import CAV_METHODS
from ._data import ImageSet
from ._gradients import _check_model, _class_index
from ._report import format_tcav, write_tcav
from ._sweep import default_layers
from ._tcav import TCAVResult, tcav


@dataclasses.dataclass(frozen=True)
class TCAVJob:
    """What ``lucidax tcav`` does: TCAV scores of concepts for one class at some layers, with
    their significance tests, written to ``out`` (results.json/.csv, tcav.png/.svg).

    Attributes:
      model: registered model name, or a loaded Model.
      weights: checkpoint path (None: the model's default weights; only with a name).
      layers: ``"all"`` (every layer but ``*_pre_relu`` and the logits) or names.
      concepts: each ``family:value`` (starter images with that family fixed, e.g.
        ``color:red``, ``background:grass``, ``position:top-left``, ``size:large``), a folder
        of concept images, or ``name=folder``; a comma-separated string or a sequence.
      target_class: class index or label (starter: ``"0"`` to ``"9"``).
      random: ``"auto"`` (``builtin:starter`` for the starter model, ``builtin:photos`` for
        other RGB models; ``lucidax.models.photos.resolve_auto``),
        ``builtin:starter[:split]`` (random starter images), ``builtin:photos`` (random crops
        of real photos, ``lucidax.models.photos``, at the model's input side) or a folder.
      targets: ``"auto"`` (``builtin:starter`` for the starter model; for other RGB models
        ``builtin:photos``: crops of every photo, whatever the class, as stand-ins for
        natural inputs: the score is then the share of photos whose class logit rises along
        the concept), ``builtin:starter[:split]`` (starter images of the class, starter
        model only), ``builtin:photos[:<source>]`` (crops of the photos, or of one, e.g.
        ``builtin:photos:chelsea`` for an ImageNet cat class) or a folder of class images.
      runs, n_concept, n_random, n_targets: see :func:`lucidax.probes.tcav`; builtin pools
        are sized so that every run gets its own images.
      reduce, correction, alpha, equal_var, lam: see :func:`lucidax.probes.tcav`.
      cav: ``"logistic"`` (L2 logistic CAVs, the paper's) or ``"mean"`` (FastCAV:
        mean-difference CAVs, no solver), :func:`lucidax.probes.fit_cavs`.
      split: starter split of builtin sources (default ``test``: images the model was not
        trained on).
      seed: data and run-set seed.
      out: output folder, None: write nothing.
      cache_dir: feature + gradient cache (default ``<out>/cache``; a second run reuses it).
      batch_size: forward/backward batch.
      memory_check: refuse a feature extraction that cannot fit in memory.

    Example:
      >>> from lucidax.probes import TCAVJob, run_tcav
      >>> job = TCAVJob(model="starter", layers="conv4", concepts=("color:red",),
      ...               target_class=3, runs=3, n_concept=10, n_random=10, n_targets=20,
      ...               out="tcav-out")
      >>> run = run_tcav(job, progress=False)
      >>> [(r.concept, r.layer) for r in run.results]
      [('color:red', 'conv4')]
    """

    model: str | Model = flag("starter", "registered model name")
    weights: str | None = flag(None, WEIGHTS_HELP)
    layers: str | Sequence[str] = flag(
        "all", "'all' (every layer except *_pre_relu and the logits) or comma-separated names")
    concepts: str | Sequence[str] = flag(
        ("color:red",), "comma-separated: family:value (starter images with that family fixed: "
                        "color:red, background:grass, position:top-left, size:large), a folder "
                        "of concept images, or name=folder", required=True)
    target_class: int | str = flag(0, "class label or logit index (starter: 0..9)",
                                     required=True, name="class")
    random: str = flag(
        "auto", "random images: auto (builtin:starter for starter, builtin:photos for other "
                "RGB models), builtin:starter[:train|:test], builtin:photos (crops of real "
                "photos) or a folder")
    targets: str = flag(
        "auto", "inputs of the class: auto (starter: builtin:starter; other RGB models: "
                "builtin:photos, crops of every photo whatever the class; give class images "
                "for a per-class test), builtin:starter (starter digits of the class), "
                "builtin:photos[:<source>] (crops of the photos or of one, e.g. "
                "builtin:photos:chelsea) or a folder")
    runs: int = flag(20, "concept runs and random-vs-random runs")
    n_concept: int = flag(50, "concept images per run")
    n_random: int = flag(50, "random images per run")
    n_targets: int = flag(100, "class inputs of builtin targets")
    reduce: str = flag("mean", "CAV space: mean (channels) or flatten (H*W*C)",
                       choices=("mean", "flatten"))
    correction: str = flag("holm", "multiple-comparison adjustment over concepts x layers",
                           choices=("holm", "bh", "bonferroni", "none"))
    alpha: float = flag(0.05, "significance level")
    equal_var: bool = flag(
        False, "Student's pooled-variance t-test (the paper's) instead of Welch's")
    split: str = flag("test", "starter split of builtin sources", choices=("train", "test"))
    seed: int = flag(0, "data and run-set seed")
    out: str | None = flag("tcav-out", OUT_HELP)
    cache_dir: str | None = flag(None, "feature/gradient cache (default: <out>/cache)")
    batch_size: int = flag(50, "forward/backward batch")
    memory_check: bool = flag(True, MEMORY_HELP)
    lam: float = flag(0.01, "L2 strength of the CAV classifiers")
    cav: str = flag("logistic", "how CAVs are found: logistic (L2 logistic classifiers, the "
                                "paper's) or mean (FastCAV: normalized difference of the "
                                "concept and random mean activations, one pass, no solver)",
                    choices=CAV_METHODS)

    def check(self) -> None:
        """Bad input fails here, in one line naming the flag, before any work."""
        for f, least in (("runs", 2), ("n_concept", 2), ("n_random", 2), ("n_targets", 1),
                         ("batch_size", 1)):
            check_int(getattr(self, f), "--" + f.replace("_", "-"), minimum=least)
        if not (isinstance(self.alpha, int | float) and 0 < self.alpha < 1):
            raise ValueError(f"--alpha must be in (0, 1); got {self.alpha!r}")
        if self.cav not in CAV_METHODS:
            raise ValueError(f"--cav must be one of {', '.join(CAV_METHODS)}; got {self.cav!r}")


@dataclasses.dataclass(frozen=True, eq=False)
class TCAVRun:
    """What :func:`run_tcav` produced: results, output files, a printable table, timings
    and which cached entries were reused.

    Attributes:
      results: one :class:`TCAVResult` per (concept, layer).
      out: the output folder (None: nothing written).
      files: ``{kind: path}`` of the files written (CSV, JSON, figure).
      table: the printable table the CLI prints.
      timings_s: seconds per stage.
      cache: which cached features and gradients were reused.

    Example:
      >>> from lucidax.probes import TCAVJob, run_tcav
      >>> job = TCAVJob(model="starter", layers="conv4", concepts=("color:red",),
      ...               target_class=3, runs=3, n_concept=10, n_random=10, n_targets=20,
      ...               out="tcav-out")
      >>> run = run_tcav(job, progress=False)
      >>> sorted(run.files)[:2], "red" in run.table
      (['csv', 'json'], True)
    """

    results: tuple[TCAVResult, ...]
    out: str | None
    files: dict[str, str]
    table: str
    timings_s: dict[str, float]
    cache: dict[str, Any]


def _parse_source(spec: str, *, model: Model, n: int, split_default: str, seed: int,
                  what: str, exclude: tuple[str, ...] = ()) -> tuple[str, ImageSet]:
    """``family:value`` (starter concept), ``builtin:starter[:split]`` (random starter
    images), ``builtin:photos[:<source>]`` (crops of real photos), ``name=path`` or a folder
    path. ``exclude``: photo sources left out of ``builtin:photos`` (the concepts' own photos,
    so that random sets never hold concept images)."""
    from lucidax.models import photos, starter

    spec = os.fspath(spec)
    name = None
    if "=" in spec and not os.path.exists(spec):
        name, spec = spec.split("=", 1)
    builtin = photos.parse_builtin(spec, split_default)
    if builtin is not None and builtin.kind == "photos":
        one = None if spec == "builtin:photos" else builtin.sources  # builtin:photos:<source>
        if one is None and exclude:
            one = tuple(s for s in photos.available_sources() if s not in exclude) or None
            label = name or "random"
        else:
            label = name or (f"photos:{one[0]}" if one else "random")
        return label, ImageSet.photos(n, side=model.input_spec.side,
                                      channels=model.input_spec.channels, seed=seed,
                                      sources=one, name=label)
    if builtin is not None:
        return name or "random", ImageSet.starter(n, split=builtin.split, seed=seed, name=name)
    fam, sep, val = spec.partition(":")
    if sep and fam in starter.FAMILIES and not os.path.exists(spec):
        return name or spec, ImageSet.starter(n, split=split_default, seed=seed,
                                              fixed={fam: val}, name=name or spec)
    if os.path.exists(spec):
        side = model.input_spec.side
        if side is None:
            raise ValueError(f"model {model.name!r} has no natural input side to read images")
        s = ImageSet.from_folder(spec, size=side, channels=model.input_spec.channels,
                                 name=name)
        return s.name, s
    raise ValueError(
        f"{what} {spec!r} is neither a folder nor a starter concept. Valid: a folder of "
        f"images, name=folder, builtin:starter[:split], builtin:photos[:<source>], or "
        f"family:value with family one of "
        f"{', '.join(starter.FAMILIES)} (e.g. color:red, background:grass)")



@staged
def run_tcav(job: TCAVJob, *, progress: bool = True) -> TCAVRun:
    """Run ``job`` (``lucidax tcav``): the model is loaded after its input is checked, the
    image folders are checked before any extraction.

    Args:
      job: a :class:`TCAVJob`.
      progress: show tqdm progress bars.

    Returns:
      A :class:`TCAVRun`.

    Example:
      >>> from lucidax.probes import TCAVJob, run_tcav
      >>> job = TCAVJob(model="starter", layers="conv4", concepts=("color:red",),
      ...               target_class=3, runs=3, n_concept=10, n_random=10, n_targets=20,
      ...               out="tcav-out")
      >>> run = run_tcav(job, progress=False)
      >>> len(run.results), run.out
      (1, 'tcav-out')
    """
    from .._compile_cache import enable_for_job  # on unless turned off: see there

    enable_for_job()
    t0 = time.perf_counter()
    job.check()
    if job.out is not None:
        prepare_out_dir(job.out)
    if job.cache_dir is not None:
        prepare_out_dir(job.cache_dir, flag="--cache-dir")
    model = load_model(job.model, job.weights)
    _check_model(model)
    from lucidax.models import photos, starter

    runs, n_concept, n_random, n_targets = job.runs, job.n_concept, job.n_random, job.n_targets
    split, seed, concepts, layers = job.split, job.seed, job.concepts, job.layers
    random = photos.resolve_auto(job.random, model, "tcav_random")
    targets = photos.resolve_auto(job.targets, model, "tcav_targets")
    if layers is None or layers == "all":
        names = tuple(n for n in default_layers(model) if n != model.logits_layer)
    else:
        names = normalize_layers(layers, model.layer_names)
    if isinstance(concepts, str):
        concepts = [c.strip() for c in concepts.split(",") if c.strip()]
    k = _class_index(model, job.target_class)
    label = str(model.labels[k]) if model.labels else str(k)
    c_sets: dict[str, ImageSet] = {}
    concept_photos: list[str] = []  # photo sources of concepts: kept out of the random sets
    for spec in concepts:
        b = photos.parse_builtin(str(spec).split("=", 1)[-1], split)
        if b is not None and b.kind == "photos" and b.spec != "builtin:photos":
            concept_photos.extend(b.sources)
    for i, spec in enumerate(concepts):
        name, s = _parse_source(spec, model=model, n=runs * n_concept, split_default=split,
                                seed=seed * 1000 + 101 + i, what="concept")
        if name in c_sets:
            raise ValueError(f"concept {name!r} given twice")
        c_sets[name] = s
    _, r_set = _parse_source(random, model=model, n=runs * (2 * n_random + n_concept),
                             split_default=split, seed=seed * 1000 + 7, what="random",
                             exclude=tuple(concept_photos))
    t_builtin = photos.parse_builtin(targets, split)
    if t_builtin is not None and t_builtin.kind == "starter":
        t_split = t_builtin.split
        if model.labels != starter.LABELS:
            raise ValueError("builtin:starter targets are digit images: only for the starter "
                             "model; give a folder of class images instead")
        t_set = ImageSet.starter(n_targets, split=t_split, seed=seed * 1000 + 3,
                                 fixed={"digit": k}, name=f"digit {label}")
    else:
        _, t_set = _parse_source(targets, model=model, n=n_targets, split_default=split,
                                 seed=seed, what="targets")
    out_dir = None if job.out is None else os.fspath(job.out)
    cache = (os.path.join(out_dir, "cache") if out_dir else None) if job.cache_dir is None \
        else os.fspath(job.cache_dir)
    info: dict[str, Any] = {}
    results = tcav(
        model, model.params, c_sets, r_set, t_set, k, names, runs=runs, n_concept=n_concept,
        n_random=n_random, reduce=job.reduce, correction=job.correction, alpha=job.alpha,
        equal_var=job.equal_var, lam=job.lam, cav=job.cav, seed=seed, cache_dir=cache,
        batch_size=job.batch_size, progress=progress, stats=info,
        memory_check=job.memory_check)
    timings = dict(info.pop("timings_s", {}))
    timings["total_with_setup"] = round(time.perf_counter() - t0, 3)
    files: dict[str, str] = {}
    if out_dir:
        files = write_tcav(results, out_dir, extra={
            "model": model.name, "weights": model.weights_source, "target": label,
            "concepts": {c: s.key for c, s in c_sets.items()}, "random": r_set.key,
            "targets": t_set.key, "config": {
                "runs": runs, "n_concept": n_concept, "n_random": n_random,
                "n_targets": t_set.n, "reduce": job.reduce, "correction": job.correction,
                "alpha": job.alpha, "equal_var": job.equal_var, "lam": job.lam,
                "cav": job.cav, "seed": seed},
            "timings_s": timings, "cache": info})
    return TCAVRun(tuple(results), out_dir, files, format_tcav(results), timings, info)

