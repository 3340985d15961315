"""What ``lucidax attribute`` calls: load a model and images, compute maps with several
methods, score them (deletion / insertion AUC against a random map), write overlay grids and
an ``index.html`` page.

>>> from lucidax.attribute import run_attribute_cli
>>> run = run_attribute_cli("starter", images="builtin:starter:test", methods="ig,gradcam",
...                         out="runs/attribution")
>>> run = run_attribute_cli("efficientnet_lite0", methods="ig")  # images: builtin:photos
>>> print(run.table)
"""

from __future__ import annotations

import dataclasses
import html
import inspect
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import numpy as np

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
from lucidax.models.base import Model, suggest

from ._registry import as_names, get_method
from ._targets import target_classes

__all__ = [
    "AttributeRun", "check_option", "load_images", "method_options", "parse_options",
    "run_attribute_cli",
]



@dataclasses.dataclass(frozen=True, eq=False)
class _Images:
    images: np.ndarray
    labels: np.ndarray | None  # class labels when the source has them
    names: tuple[str, ...]
    description: str


@dataclasses.dataclass(frozen=True, eq=False)
class AttributeRun:
    """What :func:`run_attribute_cli` produced.

    Attributes:
      out: the output folder.
      maps: ``{method: [N, H, W]}``.
      targets: ``[N]`` the class attributed in each image.
      metrics: ``{method: {"deletion_auc": .., "insertion_auc": .., "seconds": ..}}``
        (empty when ``evaluate=False``).
      files: ``{kind: path}`` written.
      table: printable summary.
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
    :func:`lucidax.models.photos.resolve_auto`), ``builtin:starter[:test|:train]`` (the
    starter dataset, with digit labels), ``builtin:photos[:<source>]`` (crops of real photos,
    :mod:`lucidax.models.photos`: the first ``n`` of a seeded deal, which starts with each
    source's whole photo; no class labels), a folder of image files, one image file, or a
    ``.npy`` array ``[N, H, W, C]`` in ``[0, 1]``. Files and photos are centre-cropped and
    resized to the model's input side (224 when it has none); at most ``n`` images are used."""
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
    strings). The method names are checked against the registry."""
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


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _legend_html(signed: bool, methods: Sequence[str]) -> str:
    """A colour bar of :func:`~.overlay.legend_strip` with its captions, for ``methods``."""
    from ._overlay import legend_css, legend_labels

    left, mid, right = legend_labels(signed)
    kind = ("signed: red = evidence for the target class, blue = against it" if signed
            else "unsigned: importance, grey = none, yellow = strongest")
    return (f'<div class="legend"><div class="bar" style="background:{legend_css(signed)}">'
            f'</div><div class="ticks"><span>{_e(left)}</span><span>{_e(mid)}</span>'
            f'<span>{_e(right)}</span></div><div class="muted">{_e(", ".join(methods))}: '
            f"{_e(kind)}</div></div>")


def _page(run_title: str, meta: Mapping[str, Any], methods: Sequence[str],
          metrics: Mapping[str, Mapping[str, float]], files: Mapping[str, str],
          rows: Sequence[tuple[str, str]], signed: Mapping[str, bool] | None = None) -> str:
    from ._overlay import SCALING_NOTE

    css = ("body{font-family:system-ui,sans-serif;margin:1.2em auto;max-width:1200px;"
           "padding:0 1em;color:#222;background:#fafafa}table{border-collapse:collapse;"
           "font-size:.9em}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left}"
           "th{background:#f0f0f0}img{image-rendering:pixelated;max-width:100%}"
           ".muted{color:#777}.legend{display:inline-block;margin:.3em 2em .6em 0;"
           "font-size:.85em;vertical-align:top}.legend .bar{width:280px;height:14px;"
           "border:1px solid #bbb}.legend .ticks{display:flex;justify-content:space-between;"
           "width:282px}")
    parts = [f"<h1>{_e(run_title)}</h1>", "<table>"]
    parts += [f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in meta.items()]
    parts.append("</table>")
    if metrics:
        parts.append("<h2>Faithfulness</h2><p class=muted>deletion AUC: lower is better; "
                     "insertion AUC: higher is better (class probability vs share of pixels "
                     "removed / inserted, most important first).</p><table><tr><th>method"
                     "</th><th>deletion AUC</th><th>insertion AUC</th><th>seconds</th></tr>")
        for m, r in metrics.items():
            parts.append(f"<tr><td>{_e(m)}</td><td>{r['deletion_auc']:.4f}</td>"
                         f"<td>{r['insertion_auc']:.4f}</td><td>{r['seconds']:.2f}</td></tr>")
        parts.append("</table>")
    signed = dict(signed or {})
    if signed:
        parts.append(f"<h2>Colour legend</h2><p class=muted>{_e(SCALING_NOTE)}.</p>")
        for flag in (True, False):
            group = [m for m in methods if signed.get(m) is flag]
            if group:
                parts.append(_legend_html(flag, group))
    if "figure" in files:
        parts.append(f'<h2>All methods</h2><img src="{quote(os.path.basename(files["figure"]))}"'
                     ' alt="attribution grid">')
    parts.append("<h2>Per method</h2><p class=muted>columns: image, map overlaid on the "
                 "image; rows: images (" + ", ".join(f"{_e(a)} &rarr; {_e(b)}" for a, b in rows)
                 + ")</p>")
    for m in methods:
        f = files.get(f"grid:{m}")
        if f:
            parts.append(f"<h3>{_e(m)}</h3><img src=\"{quote(os.path.basename(f))}\" "
                         f"alt=\"{_e(m)}\">")
            if m in signed:
                parts.append("<br>" + _legend_html(signed[m], [m]))
    links = " &middot; ".join(f'<a href="{quote(os.path.basename(p))}">{_e(os.path.basename(p))}'
                              "</a>" for k, p in files.items() if k in ("json", "maps"))
    parts.append(f"<p>{links}</p>")
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{_e(run_title)}</title><style>{css}</style></head>\n<body>\n"
            + "\n".join(parts) + "\n</body></html>\n")


def run_attribute_cli(
    model: str | Model = "starter",
    *,
    weights: str | os.PathLike | None = None,
    images: str | os.PathLike = "auto",
    methods: str | Sequence[str] = "gradient,grad_x_input,ig,gradcam,occlusion,lime",
    target: Any = "predicted",
    out: str | os.PathLike = "attribute-out",
    n: int = 8,
    seed: int = 0,
    evaluate: bool = True,
    steps: int = 16,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    progress: bool = True,
) -> AttributeRun:
    """``lucidax attribute --model M --images I --methods ig,gradcam --out O``.

    Args:
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
      options: ``{method: {option: value}}`` passed to the methods.
    """
    import jax.numpy as jnp

    from ._evaluate import deletion_curve, insertion_curve
    from ._overlay import attribution_grid, normalize_maps, save_figure

    # Bad input fails here, in one line, before the model is loaded.
    check_int(n, "--n")
    check_int(steps, "--steps")
    names = as_names(methods)
    options = {m: dict(o) for m, o in (options or {}).items()}
    for m, opts in options.items():
        for k, v in opts.items():
            check_option(m, k, v)
    _check_images_arg(images)
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
    atomic_write(files["html"], _page(f"Attribution: {model.name}", meta, names, metrics, files,
                                      rows, signed).encode())
    lines = [f"{'method':<16} {'deletion AUC':>12} {'insertion AUC':>13} {'seconds':>8}"]
    for m, r in metrics.items():
        lines.append(f"{m:<16} {r['deletion_auc']:>12.4f} {r['insertion_auc']:>13.4f} "
                     f"{r['seconds']:>8.2f}")
    if not metrics:
        lines = [f"{m}: {seconds[m]:.2f} s" for m in names]
    return AttributeRun(out, maps, targets, metrics, files, "\n".join(lines))

