"""What ``lucidax attribute`` calls: load a model and images, compute maps with several
methods, score them (deletion / insertion AUC against a random map), write overlay grids and
an ``index.html`` page.

>>> from lucidax.attribute import AttributeJob, run_attribute
>>> run = run_attribute(AttributeJob("starter", images="builtin:starter:test",
...                                  methods="ig,gradcam", out="runs/attribution"))
>>> run = run_attribute(AttributeJob("efficientnet_lite0", methods="ig"))  # builtin:photos
>>> print(run.table)
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lucidax._fields import WEIGHTS_HELP, flag
from lucidax._files import (
    IMAGE_EXTENSIONS,
    UnreadableImageError,
    atomic_write,
    check_image,
    check_int,
    load_array,
    load_image,
    prepare_out_dir,
    read_images,
    readable_images,
    save_json,
    save_png,
)
from lucidax._storage import OUT_HELP, staged
from lucidax.models import Model, suggest

from ._registry import as_names, get_method
from ._report import page
from ._targets import target_classes

__all__ = [
    "AttributeJob", "AttributeRun", "check_option", "load_images", "method_options",
    "parse_options", "run_attribute",
]



@dataclasses.dataclass(frozen=True, eq=False)
class _Images:
    images: np.ndarray
    labels: np.ndarray | None  # class labels when the source has them
    names: tuple[str, ...]
    description: str


@dataclasses.dataclass(frozen=True, eq=False)
class AttributeRun:
    """What :func:`run_attribute` produced.

    Attributes:
      out: the output folder.
      maps: ``{method: [N, H, W]}``.
      targets: ``[N]`` the class attributed in each image.
      metrics: ``{method: {"deletion_auc": .., "insertion_auc": .., "seconds": ..}}``
        (empty when ``evaluate=False``).
      files: ``{kind: path}`` written.
      table: printable summary.

    Example:
      >>> from lucidax.attribute import AttributeJob, run_attribute
      >>> job = AttributeJob(model="starter", methods="gradient,gradcam", n=2, steps=4,
      ...                    out="attribute-out")
      >>> run = run_attribute(job, progress=False)
      >>> run.targets.shape, sorted(run.metrics["gradient"])[:2]
      ((2,), ['deletion_auc', 'insertion_auc'])
    """

    out: str
    maps: dict[str, np.ndarray]
    targets: np.ndarray
    metrics: dict[str, dict[str, float]]
    files: dict[str, str]
    table: str


def load_images(spec: str | os.PathLike, model: Model, *, n: int = 8, seed: int = 0) -> _Images:
    """Resolve an ``--images`` argument: ``"auto"`` (the model's images:
    ``builtin:starter:test`` for the starter model, ``builtin:photos`` for other RGB models;
    ``lucidax.models.photos.resolve_auto``), ``builtin:starter[:test|:train]`` (the
    starter dataset, with digit labels), ``builtin:photos[:<source>]`` (crops of real photos,
    ``lucidax.models.photos``: the first ``n`` of a seeded deal, which starts with each
    source's whole photo; no class labels), a folder of image files, one image file, or a
    ``.npy`` array ``[N, H, W, C]`` in ``[0, 1]``. Files and photos are centre-cropped and
    resized to the model's input side (224 when it has none); at most ``n`` images are used.

    Args:
      spec: the ``--images`` argument (above).
      model: the :class:`lucidax.models.Model` the images are for (its input side).
      n: at most this many images.
      seed: the draw of built-in images.

    Returns:
      An object with ``images`` (``[N, H, W, C]`` float32 in [0, 1]) and ``names``.

    Example:
      >>> import lucidax.models as lm
      >>> from lucidax.attribute import load_images
      >>> loaded = load_images("builtin:starter:test", lm.load("starter"), n=3)
      >>> loaded.images.shape
      (3, 64, 64, 3)
    """
    s = os.fspath(spec)
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    from lucidax.models import photos, starter

    s = photos.resolve_auto(s, model, "attribute")
    side = model.input_spec.side or 224
    builtin = photos.parse_builtin(s)
    if builtin is not None and builtin.kind == "photos":
        ph = photos.photos(int(n), side=side, seed=seed, sources=builtin.sources,
                           channels=model.input_spec.channels)
        names = tuple(f"{src}-{i}" for i, src in enumerate(ph.names()))
        return _Images(ph.images, None, names, f"{s} (n={n}, seed={seed})")
    if builtin is not None:
        ds = starter.dataset(int(n), split=builtin.split, seed=seed)
        names = tuple(f"{builtin.split}-{i}" for i in range(len(ds)))
        return _Images(ds.images, np.asarray(ds.labels["digit"]), names,
                       f"builtin:starter:{builtin.split} (n={n}, seed={seed})")
    if not os.path.exists(s):
        raise FileNotFoundError(f"images not found: {s!r} (a folder of images, an image file, "
                                f"a .npy array, builtin:starter[:test|:train] or "
                                f"builtin:photos[:<source>])")
    if s.endswith((".npy", ".npz")):
        arr = _load_npy(s)[:n]
        return _Images(arr, None, tuple(f"{i}" for i in range(len(arr))), s)
    c = model.input_spec.channels
    if os.path.isdir(s):
        files = sorted(f for f in os.listdir(s) if f.lower().endswith(IMAGE_EXTENSIONS))
        if not files:
            raise ValueError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in folder {s!r}")
        where = f"--images folder {s!r}"
        paths = readable_images([os.path.join(s, f) for f in files], where, limit=n)
        images, paths = read_images(paths, size=side, channels=c, where=where)
    else:
        images, paths = load_image(s, size=side, channels=c)[None], [s]
    return _Images(images.astype(np.float32), None, tuple(os.path.basename(p) for p in paths),
                   s)


_NPY_EXPECT = "an array [N, H, W, C] (or one image [H, W, C]) in [0, 1]"


def _load_npy(path: str) -> np.ndarray:
    """A ``.npy`` of images ``[N, H, W, C]`` (or one ``[H, W, C]``) in [0, 1]; one-line
    ValueError for anything else."""
    arr = load_array(path, expect=_NPY_EXPECT)
    if isinstance(arr, dict):
        raise ValueError(f"cannot read {path!r} as images: it is a .npz archive "
                         f"({', '.join(arr) or 'empty'}); expected a .npy with {_NPY_EXPECT}")
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or not (np.issubdtype(arr.dtype, np.floating)
                             or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{path!r}: expected {_NPY_EXPECT}; got a {arr.dtype} array of shape "
                         f"{arr.shape}")
    if len(arr) == 0:
        raise ValueError(f"{path!r} holds no images (shape {arr.shape})")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    arr = arr.astype(np.float32)
    if not np.all(np.isfinite(arr)) or arr.min() < 0 or arr.max() > 1:
        raise ValueError(f"{path!r}: pixel values must be finite and in [0, 1]; got "
                         f"[{np.nanmin(arr):g}, {np.nanmax(arr):g}]")
    return arr


def parse_options(items: Sequence[str] | None) -> dict[str, dict[str, Any]]:
    """``["occlusion.patch=16", "ig.steps=64", "lime.baseline=blur"]`` ->
    ``{"occlusion": {"patch": 16}, ...}`` (values parsed as JSON when they are, else kept as
    strings). The method names are checked against the registry.

    Args:
      items: ``METHOD.KEY=VALUE`` strings (the ``--option`` flags), or None.

    Example:
      >>> from lucidax.attribute import parse_options
      >>> parse_options(["occlusion.patch=16", "lime.baseline=blur"])
      {'occlusion': {'patch': 16}, 'lime': {'baseline': 'blur'}}
    """
    import json

    out: dict[str, dict[str, Any]] = {}
    for item in items or ():
        head, sep, value = str(item).partition("=")
        method, dot, key = head.partition(".")
        if not sep or not dot or not method or not key:
            raise ValueError(f"method option {item!r} must look like METHOD.OPTION=VALUE "
                             "(e.g. occlusion.patch=16)")
        method, key = method.strip(), key.strip()
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = value
        check_option(method, key, parsed, given=str(item))
        out.setdefault(method, {})[key] = parsed
    return out


#: Keyword arguments of the methods that are not options (they change what a method returns).
_NOT_OPTIONS = frozenset({"return_raw"})


def method_options(method: str) -> dict[str, inspect.Parameter]:
    """``{option: parameter}``: the keyword arguments ``--option method.<name>=`` can set."""
    params = inspect.signature(get_method(method)).parameters
    return {k: p for k, p in params.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and k not in _NOT_OPTIONS}


_TYPES = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,),
          "tuple": (list, tuple), "list": (list, tuple), "None": (type(None),)}


def check_option(method: str, key: str, value: Any, *, given: str | None = None) -> None:
    """Refuse, in one line, an option ``method.key=value`` that ``method`` does not take (with
    a "did you mean" and the valid options) or whose value has the wrong type."""
    import difflib

    what = given or f"{method}.{key}={value!r}"
    valid = method_options(method)  # an unknown method raises with the valid methods
    if key not in valid:
        close = sorted((o for o in valid if o in key or key in o), key=len, reverse=True) \
            or difflib.get_close_matches(key, list(valid), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(f"--option {what}: {method} has no option {key!r}; {hint}valid "
                         f"options of {method}: {', '.join(valid) or 'none'}")
    ann = valid[key].annotation
    ann = ann if isinstance(ann, str) else getattr(ann, "__name__", str(ann))
    names = [t.strip().split("[")[0].split(".")[-1] for t in ann.split("|")]
    if any(t not in _TYPES for t in names):  # Any, arrays, objects: the method checks
        return
    kinds = tuple(k for t in names for k in _TYPES[t])
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if not ok:
        raise ValueError(f"--option {what}: {method}.{key} takes {ann.replace(' | ', ' or ')}; "
                         f"got {value!r} ({type(value).__name__})")


def _check_images_arg(images: Any) -> None:
    """An ``--images`` file given explicitly is read (.npy) or checked (image) before the
    model is loaded; folders are checked file by file when read."""
    s = os.fspath(images)
    if not os.path.isfile(s):
        return
    if s.endswith((".npy", ".npz")):
        _load_npy(s)
        return
    why = check_image(s)
    if why is not None:
        raise UnreadableImageError(s, why)


def _targets(model: Model, target: Any, src: _Images) -> np.ndarray:
    """``--target``: ``label`` (the builtin labels), a class index given as text, or anything
    :func:`~lucidax.attribute.target_classes` takes (``predicted``, a class label)."""
    if target == "label":
        if src.labels is None:
            raise ValueError("target 'label' needs labelled images (builtin:starter); use "
                             "'predicted' or a class")
        return np.asarray(src.labels)
    if isinstance(target, str) and target.lstrip("-").isdigit():
        target = int(target)
    valid = ("predicted", "label", *(model.labels or ()))
    if isinstance(target, str) and target not in valid:
        raise ValueError(suggest(target, valid, what="target") + " (or a class index)")
    return target_classes(model, target, len(src.images), params=model.params,
                          images=src.images)


@dataclasses.dataclass(frozen=True)
class AttributeJob:
    """What ``lucidax attribute`` does: maps of several methods for some images, scored with
    deletion / insertion curves against a random map, written as overlay grids, ``figure.png``,
    ``maps.npz``, ``results.json`` and ``index.html`` to ``out`` (:func:`run_attribute`).

    Checked when made (one line naming the flag): ``n``, ``steps``, the method names and their
    options.

    Attributes:
      model: registered model name or a Model.
      weights: checkpoint path (None: the model's default weights).
      images: ``"auto"`` (``builtin:starter:test`` for the starter model,
        ``builtin:photos`` for other RGB models), ``builtin:starter[:test|:train]``,
        ``builtin:photos[:<source>]``, a folder of images, an image, or a ``.npy``.
      methods: comma-separated names (``lucidax.attribute.METHODS``) or ``"all"``.
      target: ``"predicted"`` (each image's top class), ``"label"`` (builtin labels), a class
        index or a class label.
      out: output folder (index.html, figure.png, <method>.png, results.json, maps.npz).
      n: number of images.
      seed: seed of the builtin images.
      evaluate: also compute deletion / insertion AUC for every method and a random map.
      steps: points of the deletion / insertion curves.
      options: ``{method: {option: value}}`` passed to the methods (``--option
        METHOD.KEY=VALUE``, see :func:`parse_options`).

    Example:
      >>> from lucidax.attribute import AttributeJob, run_attribute
      >>> job = AttributeJob(model="starter", methods="gradient,gradcam", n=2, steps=4,
      ...                    out="attribute-out")
      >>> run = run_attribute(job, progress=False)
      >>> sorted(run.maps), run.maps["gradcam"].shape
      (['gradcam', 'gradient', 'random'], (2, 64, 64))
    """

    model: str | Model = flag("starter", "registered model name")
    weights: str | None = flag(None, WEIGHTS_HELP)
    images: str = flag(
        "auto", "auto (builtin:starter:test for starter, builtin:photos for other RGB models), "
                "builtin:starter[:test|:train], builtin:photos[:<source>] (real photos, whole "
                "ones first, then crops), a folder of images, an image file or a .npy "
                "[N,H,W,C] array in [0,1]")
    methods: str | Sequence[str] = flag(
        "gradient,grad_x_input,ig,gradcam,occlusion,lime",
        "comma-separated: gradient, grad_x_input, smoothgrad, ig, gradcam, guided_backprop, "
        "lrp, occlusion, lime, kernelshap, random; or 'all'")
    target: str | int = flag(
        "predicted", "'predicted' (each image's top class), 'label' (builtin labels), a class "
                     "index or a class label")
    out: str = flag("attribute-out", OUT_HELP)
    n: int = flag(8, "number of images")
    seed: int = flag(0, "seed of the builtin images")
    evaluate: bool = flag(True, "deletion/insertion AUC for every method and a random map")
    steps: int = flag(16, "points per deletion/insertion curve")
    options: Mapping[str, Mapping[str, Any]] | None = flag(
        None, "method options, {method: {option: value}}")

    def __post_init__(self):
        # Bad input fails here, in one line, before the model is loaded.
        check_int(self.n, "--n")
        check_int(self.steps, "--steps")
        as_names(self.methods)
        for m, opts in (self.options or {}).items():
            for k, v in opts.items():
                check_option(m, k, v)


@staged
def run_attribute(job: AttributeJob, *, progress: bool = True) -> AttributeRun:
    """Run ``job`` (see :class:`AttributeJob`): ``lucidax attribute``.

    Args:
      job: an :class:`AttributeJob`.
      progress: show tqdm progress bars.

    Returns:
      An :class:`AttributeRun`.

    Example:
      >>> from lucidax.attribute import AttributeJob, run_attribute
      >>> job = AttributeJob(model="starter", methods="gradient,gradcam", n=2, steps=4,
      ...                    out="attribute-out")
      >>> run = run_attribute(job, progress=False)
      >>> run.out, "gradient" in run.table
      ('attribute-out', True)
    """
    from .._compile_cache import enable_for_job  # on unless turned off: see there

    enable_for_job()
    import jax.numpy as jnp

    from ._evaluate import deletion_curve, insertion_curve
    from ._overlay import attribution_grid, normalize_maps, save_figure

    model, weights, images, target, out = job.model, job.weights, job.images, job.target, job.out
    n, seed, evaluate, steps = job.n, job.seed, job.evaluate, job.steps
    names = as_names(job.methods)
    options = {m: dict(o) for m, o in (job.options or {}).items()}
    _check_images_arg(images)  # an explicit file is read before the model is loaded
    prepare_out_dir(out)
    if isinstance(model, str):
        import lucidax.models as lm

        model = lm.load(model, weights)
    elif weights is not None:
        raise ValueError("weights= is only used with a model name")
    if model.logits_layer is None:
        raise ValueError(f"{model.name} has no logits layer; lucidax attribute explains classes")
    src = load_images(images, model, n=n, seed=seed)
    x = jnp.asarray(src.images)
    targets = _targets(model, target, src)
    out = os.fspath(out)
    os.makedirs(out, exist_ok=True)
    maps: dict[str, np.ndarray] = {}
    metrics: dict[str, dict[str, float]] = {}
    seconds: dict[str, float] = {}
    todo = list(names) + (["random"] if evaluate and "random" not in names else [])
    for m in todo:
        if progress:
            print(f"  {m} ...", flush=True)
        t0 = time.perf_counter()
        maps[m] = np.asarray(get_method(m)(model, model.params, x, targets,
                                           **options.get(m, {})), np.float32)
        seconds[m] = time.perf_counter() - t0
        if evaluate:
            d = deletion_curve(model, model.params, x, maps[m], targets, steps=steps)
            i = insertion_curve(model, model.params, x, maps[m], targets, steps=steps)
            metrics[m] = {"deletion_auc": d.mean_auc, "insertion_auc": i.mean_auc,
                          "seconds": seconds[m]}
    shown = {m: maps[m] for m in names}
    files: dict[str, str] = {}
    for m in names:
        p = os.path.join(out, f"{m}.png")
        save_png(p, attribution_grid(src.images, {m: shown[m]}))
        files[f"grid:{m}"] = p
    labels = model.labels or tuple(str(i) for i in range(model.channels(model.logits_layer)))
    rows = [(nm, labels[int(t)]) for nm, t in zip(src.names, targets, strict=True)]
    files["figure"] = os.path.join(out, "figure.png")
    save_figure(files["figure"], src.images, shown,
                row_labels=[f"{a} → {b}" for a, b in rows])
    files["maps"] = os.path.join(out, "maps.npz")

    def write_npz(f):
        np.savez_compressed(f, images=src.images, targets=targets, **maps)

    atomic_write(files["maps"], write_npz)
    files["json"] = os.path.join(out, "results.json")
    meta = {"model": model.name, "images": src.description, "target": str(target),
            "methods": list(names)}
    save_json(files["json"], {**meta, "image_names": list(src.names),
                              "targets": targets.tolist(), "metrics": metrics,
                              "curve_steps": steps if evaluate else None})
    files["html"] = os.path.join(out, "index.html")
    signed = {m: normalize_maps(shown[m])[1] for m in names}
    atomic_write(files["html"], page(f"Attribution: {model.name}", meta, names, metrics, files,
                                      rows, signed).encode())
    lines = [f"{'method':<16} {'deletion AUC':>12} {'insertion AUC':>13} {'seconds':>8}"]
    for m, r in metrics.items():
        lines.append(f"{m:<16} {r['deletion_auc']:>12.4f} {r['insertion_auc']:>13.4f} "
                     f"{r['seconds']:>8.2f}")
    if not metrics:
        lines = [f"{m}: {seconds[m]:.2f} s" for m in names]
    return AttributeRun(out, maps, targets, metrics, files, "\n".join(lines))

