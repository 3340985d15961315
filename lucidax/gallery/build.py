"""``build_gallery``: plan units -> batches -> render + dataset examples -> PNGs -> HTML site."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import secrets
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np

from lucidax._files import check_array_file, load_array, png_bytes, prepare_out_dir, to_uint8
from lucidax.visualize.silence import SILENT_EPS, silent_on_data, stuck_renders

from .config import (
    GalleryConfig,
    GalleryConfigError,
    ManifestMismatchError,
    parse_layer_units,
)
from .examples import (
    ReceptiveField,
    example_tile,
    receptive_fields,
    top_k_examples,
    unit_activation,
)
from .files import (
    atomic_write_bytes,
    clean_stale_tmp,
    safe_name,
    safe_path,
)
from .layout import contact_sheet, dim_tile, first_tile, loss_png, unit_grid
from .manifest import (
    FORMAT,
    MANIFEST,
    merge_entries,
    package_versions,
    params_sha256,
    read_manifest,
    settings_fingerprint,
    shard_name,
    summarize,
    unit_done,
    write_manifest,
)
from .site import write_site

__all__ = ["GalleryReport", "build_gallery", "init_distributed", "plan_batches"]

ENV_COORDINATOR = "LUCIDAX_COORDINATOR"
ENV_NUM_PROCESSES = "LUCIDAX_NUM_PROCESSES"
ENV_PROCESS_ID = "LUCIDAX_PROCESS_ID"


@dataclasses.dataclass(frozen=True)
class GalleryReport:
    """What one :func:`build_gallery` call did (for this process).

    Attributes:
      out: the output folder.
      index: path of ``index.html`` (None on processes other than 0).
      manifest: path of the merged ``manifest.json``.
      process_id, num_processes: this process and how many took part.
      units_total: units requested (all processes).
      units_rendered: units this process rendered in this call.
      units_skipped: units of this process's share already finished (resume).
      failed_units: ``"layer/unit"`` of this process's renders that did not stay finite.
      elapsed_s: wall time of the call; render_s: of which rendering (batches incl. writes).
      silent_units: ``"layer/unit"`` of this process's share (rendered now or already done)
        that are silent: they never activate on the dataset images, or their renders never
        left their start (see :mod:`lucidax.visualize.silence`).
      rescue_needed: units of the share whose default-start renders stayed silent, so they
        were re-rendered from a high-contrast start (``GalleryConfig.rescue``).
      rescue_succeeded: those of ``rescue_needed`` that the rescue woke up (their kept
        renders reach 2% of the dataset maximum, or > 0 without a dataset).
    """

    out: str
    index: str | None
    manifest: str
    process_id: int
    num_processes: int
    units_total: int
    units_rendered: int
    units_skipped: int
    failed_units: tuple[str, ...]
    elapsed_s: float
    render_s: float
    silent_units: tuple[str, ...] = ()
    rescue_needed: tuple[str, ...] = ()
    rescue_succeeded: tuple[str, ...] = ()

    @property
    def units_per_s(self) -> float:
        return self.units_rendered / self.render_s if self.render_s > 0 else 0.0


@dataclasses.dataclass(frozen=True)
class _Batch:
    index: int  # position in the global plan
    layer: str
    units: tuple[int, ...]  # real units
    width: int  # padded number of units (same for every batch of the layer)


def plan_batches(layer_units: dict[str, Sequence[int]], batch_size: int) -> list[_Batch]:
    """Global, deterministic plan: each layer's units cut into batches of
    ``min(batch_size, n_units_of_layer)`` (the last one padded to that width)."""
    out: list[_Batch] = []
    for layer, units in layer_units.items():
        units = tuple(units)
        if not units:
            continue
        width = min(batch_size, len(units))
        for s in range(0, len(units), width):
            out.append(_Batch(len(out), layer, units[s : s + width], width))
    return out


# --------------------------------------------------------------------------------------------
# distributed setup


def _env_int(name: str) -> int | None:
    v = os.environ.get(name)
    if v is None or v == "":
        return None
    try:
        return int(v)
    except ValueError:
        raise GalleryConfigError(f"Environment variable {name}={v!r} is not an integer") from None


def init_distributed(config: GalleryConfig) -> tuple[int, int]:
    """Join the ``jax.distributed`` job described by ``config`` (or the ``LUCIDAX_*``
    environment variables); returns ``(process_id, num_processes)``.

    :func:`build_gallery` calls it when ``config.distributed``; call it yourself first when
    you build a model (or run any JAX computation) before ``build_gallery``, since JAX must
    join the job before its first computation. Does nothing if JAX already joined one.
    """
    import jax

    addr = config.coordinator_address or os.environ.get(ENV_COORDINATOR)
    n = config.num_processes if config.num_processes is not None else _env_int(ENV_NUM_PROCESSES)
    pid = config.process_id if config.process_id is not None else _env_int(ENV_PROCESS_ID)
    if jax.distributed.is_initialized():
        return jax.process_index(), jax.process_count()
    missing = [
        what
        for what, v in (
            (f"coordinator_address (or ${ENV_COORDINATOR})", addr),
            (f"num_processes (or ${ENV_NUM_PROCESSES})", n),
            (f"process_id (or ${ENV_PROCESS_ID})", pid),
        )
        if v is None
    ]
    if missing:
        raise GalleryConfigError(
            "distributed=True needs " + ", ".join(missing) + " (e.g. coordinator "
            "'10.0.0.1:1234', 2 processes, ids 0 and 1)"
        )
    if not 0 <= pid < n:
        raise GalleryConfigError(f"process_id must be in [0, {n}), got {pid}")
    # CPU collectives need gloo; the setting is ignored by GPU/TPU backends.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=addr, num_processes=n, process_id=pid)
    return jax.process_index(), jax.process_count()


def _shared_run_id(num_processes: int) -> str:
    """A random id all processes agree on (process 0's, broadcast); also a start barrier."""
    value = secrets.randbits(62)
    if num_processes > 1:
        from jax.experimental import multihost_utils

        value = int(np.asarray(multihost_utils.broadcast_one_to_all(np.int64(value))))
    return f"{value:016x}"


# --------------------------------------------------------------------------------------------
# model, layers, units, dataset


def _resolve_layers(model, spec: str | tuple[str, ...]) -> tuple[str, ...]:
    from lucidax.models.base import normalize_layers

    if isinstance(spec, str) and spec.strip().lower() == "all":
        names = tuple(n for n in model.layer_names if not model.layers[n].pre_relu)
        return names or tuple(model.layer_names)
    return normalize_layers(spec, model.layer_names)


def _resolve_units(model, layers: Sequence[str], spec) -> dict[str, tuple[int, ...]]:
    default, per_layer = parse_layer_units(spec)
    unknown = [layer for layer in per_layer if layer not in layers]
    if unknown:
        raise GalleryConfigError(
            f"units name layers that are not rendered: {', '.join(unknown)} (rendered layers: "
            f"{', '.join(layers)})")
    out = {}
    for layer in layers:
        c = model.layers[layer].channels
        wanted = per_layer.get(layer, default)
        if layer in per_layer and wanted is not None and any(u >= c for u in wanted):
            bad = [u for u in wanted if u >= c]
            raise GalleryConfigError(
                f"units {bad[:10]} of {layer} are out of range (valid: 0-{c - 1})")
        out[layer] = tuple(range(c)) if wanted is None else tuple(u for u in wanted if u < c)
    if default:
        rest = [layer for layer in layers if layer not in per_layer]
        top = max((model.layers[layer].channels for layer in rest), default=0)
        beyond = [u for u in default if u >= top]
        if rest and beyond:
            raise GalleryConfigError(
                f"units {beyond[:10]} are out of range: the requested layers have at most {top} "
                f"units (valid: 0-{top - 1})"
            )
    return {k: v for k, v in out.items() if v}


def _layer_dirs(layers: Sequence[str]) -> dict[str, str]:
    used: set[str] = set()
    out = {}
    for layer in layers:
        base = safe_name(layer)
        name, k = base, 2
        while name.lower() in used or name.lower() in ("probes", "tcav", "dissect"):
            name, k = f"{base}-{k}", k + 1
        used.add(name.lower())
        out[layer] = name
    return out


@dataclasses.dataclass(frozen=True)
class _Examples:
    images: np.ndarray  # float32 [N, S, S, C] at the model side
    captions: tuple[str, ...]
    source: str
    sha256: str


def _captions(n: int, labels: Any, label_names: Any) -> tuple[str, ...]:
    if labels is None:
        return ("",) * n
    if isinstance(labels, dict):
        names = label_names if isinstance(label_names, dict) else {}
        fams = list(labels)
        out = []
        for i in range(n):
            parts = []
            for f in fams:
                v = int(np.asarray(labels[f])[i])
                nm = names.get(f)
                parts.append(f"{f} {nm[v] if nm is not None and 0 <= v < len(nm) else v}")
            out.append(" · ".join(parts))
        return tuple(out)
    lab = np.asarray(labels).reshape(-1)
    names = list(label_names) if label_names is not None else None
    return tuple(
        str(names[int(v)]) if names is not None and 0 <= int(v) < len(names) else str(v)
        for v in lab[:n]
    )


def _own_dataset(config: GalleryConfig, model) -> tuple[Any, str] | None:
    """The dataset module shipped next to a zoo model (``lucidax.models.<name>.dataset``,
    e.g. the starter model's), its test split; None when the model ships none."""
    import importlib
    import re

    name = str(model.name)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        return None
    try:
        mod = importlib.import_module(f"lucidax.models.{name}")
    except ImportError:
        return None
    fn = getattr(mod, "dataset", None)
    if not callable(fn):
        return None
    dataset = fn(config.dataset_size, split="test", seed=config.seed)
    return dataset, f"lucidax.models.{name}.dataset(split='test', seed={config.seed})"


def _builtin_dataset(config: GalleryConfig, model, spec: str,
                     progress: bool) -> tuple[Any, str]:
    """``builtin:photos[:<source>]`` (crops of real photos at the model's input side, 224 when
    it has none) or ``builtin:starter[:train|:test]``."""
    from lucidax.models import photos

    try:
        builtin = photos.parse_builtin(spec)
        if builtin.kind == "photos":
            side = model.input_spec.side or photos.DEFAULT_SIDE
            data = photos.photos(config.dataset_size, side=side, seed=config.seed,
                                 sources=builtin.sources, channels=model.input_spec.channels,
                                 progress=progress)
            return data, f"{spec} (n={config.dataset_size}, side={side}, seed={config.seed})"
    except ValueError as err:
        raise GalleryConfigError(f"dataset: {err}") from None
    from lucidax.models import starter

    data = starter.dataset(config.dataset_size, split=builtin.split, seed=config.seed)
    return data, f"builtin:starter:{builtin.split} (seed={config.seed})"


_DATASET_EXPECT = ("a .npy array [N, H, W, C] in [0, 1], or a .npz with 'images' and "
                   "optionally 'labels', 'label_names'")


def _load_examples(config: GalleryConfig, model, dataset: Any,
                   progress: bool = False) -> _Examples | None:
    source = config.dataset
    if dataset is None:
        if source == "none" or config.top_k == 0:
            return None
        if source == "auto":  # the model's own dataset if it ships one, else photos (RGB)
            own = _own_dataset(config, model)
            if own is not None:
                dataset, source = own
            elif model.input_spec.channels == 3:
                dataset, source = _builtin_dataset(config, model, "builtin:photos", progress)
            else:
                return None
        elif source.startswith("builtin:"):
            dataset, source = _builtin_dataset(config, model, source, progress)
        else:
            path = Path(source)
            if not path.is_file():
                raise GalleryConfigError(
                    f"dataset {source!r} is not a file; use 'auto', 'none', builtin:photos, "
                    "builtin:starter or a .npz/.npy path"
                )
            if path.suffix in (".npy", ".npz"):
                dataset = load_array(path, expect=_DATASET_EXPECT)
                if isinstance(dataset, dict) and "images" not in dataset:
                    raise GalleryConfigError(
                        f"{source}: a .npz dataset needs an 'images' array; it has "
                        f"{', '.join(dataset) or 'none'}"
                    )
            else:
                raise GalleryConfigError(f"dataset {source!r}: expected a .npz or .npy file")
    else:
        source = getattr(dataset, "source", None) or "user-provided"
    if isinstance(dataset, dict):
        images, labels, names = dataset["images"], dataset.get("labels"), dataset.get("label_names")
    elif isinstance(dataset, np.ndarray):
        images, labels, names = dataset, None, None
    else:
        images = dataset.images
        labels = getattr(dataset, "labels", None)
        names = getattr(dataset, "label_names", None)
    images = np.asarray(images)
    if images.dtype == np.uint8:
        images = images.astype(np.float32) / 255.0
    images = np.asarray(images, np.float32)[: config.dataset_size]
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] != model.input_spec.channels:
        raise GalleryConfigError(
            f"dataset images must be [N, H, W, {model.input_spec.channels}], got {images.shape}"
        )
    side = model.input_spec.side
    if side is not None and images.shape[1:3] != (side, side):
        import jax

        images = np.asarray(
            jax.image.resize(images, (len(images), side, side, images.shape[3]), "bilinear")
        )
    captions = _captions(len(images), labels, names)
    sha = hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()
    return _Examples(images, captions, str(source), sha)


# --------------------------------------------------------------------------------------------
# rendering one batch


def _default_render() -> tuple[Callable, Callable]:
    try:
        from lucidax.visualize import channel, render
    except ImportError as err:
        raise RuntimeError(
            f"lucidax.gallery needs lucidax.visualize.render and channel ({err})"
        ) from err
    return render, channel


def _layer_prng_key(seed: int, layer: str):
    import jax

    return jax.random.fold_in(jax.random.key(seed), zlib.crc32(layer.encode()) & 0x7FFFFFFF)


def _finite_or_none(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _objective_layer(model, layer: str, config: GalleryConfig) -> str:
    """The layer the render maximizes for units of ``layer`` (its pre-ReLU twin if asked)."""
    twin = f"{layer}_pre_relu"
    if config.pre_relu and twin in model.layers and model.layers[twin].pre_relu:
        return twin
    return layer


RESCUE_SD = 1.0
RESCUE_BELOW = 0.02  # a render weaker than 2% of the dataset maximum counts as silent


def _rescue(
    renderer: _Renderer, b: _Batch, padded: list[int], res: dict[str, np.ndarray], topk
) -> tuple[dict[str, np.ndarray], set[int], dict[int, bool]]:
    """Re-render a batch whose units stayed silent (every render's activation below 2% of
    the unit's maximum over real images, or <= 0 without a dataset: the optimization never
    left the dead-ReLU region) from
    a high-contrast start (clipped colours, Fourier sd :data:`RESCUE_SD`), keeping, unit by
    unit, the start whose best render is stronger. Returns the merged results, the batch
    positions that were replaced and, for each position that needed the rescue, whether it
    worked (the kept renders are no longer silent by the same test)."""
    v = renderer.config.variants
    acts = res["acts"].reshape(-1, v)[: len(b.units)]
    stuck = []
    # units that real images barely excite (max < 10% of the layer's median max) are left
    # alone: they are (nearly) dead, and a second start rarely finds them
    floor = 0.0 if topk is None else 0.1 * float(np.median(np.maximum(topk.values[:, 0], 0)))

    def too_weak(j: int, best: float) -> bool:
        data_max = None if topk is None else float(topk.values[b.units[j], 0])
        if data_max is None:
            return best <= 0
        return data_max > max(floor, 0.0) and best <= RESCUE_BELOW * data_max

    stuck = [j for j in range(len(b.units)) if too_weak(j, float(np.nanmax(acts[j])))]
    if not stuck:
        return res, set(), {}
    res2 = renderer(b.layer, padded, rescue=True)
    acts2 = res2["acts"].reshape(-1, v)
    better = {j for j in stuck if np.nanmax(acts2[j]) > np.nanmax(acts[j])}
    woke = {j: j in better and not too_weak(j, float(np.nanmax(acts2[j]))) for j in stuck}
    if not better:
        return res, set(), woke
    merged = {}
    for k, a in res.items():
        a = np.array(a, copy=True)
        for j in better:
            cols = slice(j * v, (j + 1) * v)
            if k == "loss":
                a[:, cols] = res2[k][:, cols]
            else:
                a[cols] = res2[k][cols]
        merged[k] = a
    return merged, better, woke


class _Renderer:
    """Renders one batch: ``units`` (padded) x ``variants`` images in one ``render`` call."""

    def __init__(self, config: GalleryConfig, model, render_fn, channel_fn):
        self.config = config
        try:
            from lucidax.visualize import image

            # value-comparable params: one compile per (layer, param) shape
            self.param = image(sd=config.init_sd)
            self.rescue_param = image(sd=RESCUE_SD, output="clip")
        except ImportError:  # a custom render function without lucidax.visualize
            self.param = self.rescue_param = None
        self.model = model
        self.render_fn = render_fn
        self.channel_fn = channel_fn
        # a learning rate: render's shared Adam for that rate, so compiled programs are reused
        # across calls (a new optax object per call would compile again)
        self.optimizer = config.lr
        try:  # lucidax's render checks memory itself: the gallery did (or was told not to)
            from lucidax.visualize.render import render as lucidax_render

            self.own_render = render_fn is lucidax_render
        except ImportError:
            self.own_render = False

    def __call__(self, layer: str, units: Sequence[int], *, rescue: bool = False):
        v = self.config.variants
        unit_arr = np.repeat(np.asarray(units, np.int32), v)
        unit_ids = unit_arr * v + np.tile(np.arange(v, dtype=np.int32), len(units))
        objective = self.channel_fn(_objective_layer(self.model, layer, self.config), unit_arr)
        extra = {"transforms": None} if self.config.transforms == "none" else {}
        param = self.rescue_param if rescue else self.param
        if param is not None:
            extra["param"] = param
        elif rescue:
            extra["rescue"] = True  # lets a stand-in render function tell the two apart
        if self.own_render:
            extra["memory_check"] = False
        res = self.render_fn(
            self.model,
            self.model.params,
            objective,
            optimizer=self.optimizer,
            steps=self.config.steps,
            size=self.config.size,
            model_side=self.config.model_side or None,
            key=_layer_prng_key(self.config.seed, layer),
            unit_ids=unit_ids,
            progress=False,
            **extra,
        )
        images = np.asarray(res.images, np.float32)
        finite = np.asarray(res.finite, bool).reshape(-1) & np.all(
            np.isfinite(images.reshape(len(images), -1)), axis=1
        )
        safe_images = np.where(np.isfinite(images), images, 0.5)
        acts = unit_activation(self.model, safe_images, layer, unit_arr)
        return {
            "images": images,
            "loss": np.asarray(res.loss, np.float32).reshape(-1, len(unit_arr)),
            "objective": np.asarray(res.objective_values, np.float32).reshape(-1),
            "finite": finite,
            "acts": acts,
        }


# --------------------------------------------------------------------------------------------
# the build


def build_gallery(
    config: GalleryConfig,
    *,
    progress: bool = True,
    model: Any = None,
    dataset: Any = None,
) -> GalleryReport:
    """Render every requested unit and write the gallery site to ``config.out``.

    Args:
      config: what to make (:class:`GalleryConfig`; every CLI flag is a field).
      progress: show tqdm progress bars (units/s and ETA).
      model: a :class:`lucidax.models.Model` to use instead of loading ``config.model``
        (e.g. a wrapped user model); its name and parameter hash go into the manifest.
      dataset: images for the top-k examples instead of ``config.dataset``: an array
        ``[N, H, W, C]`` or an object with ``.images`` (and optionally ``.labels`` and
        ``.label_names``, as returned by ``lucidax.models.starter.dataset``).

    Re-running the same call resumes: finished units (manifest entry + decodable PNGs) are
    skipped. Output made with other settings raises :class:`ManifestMismatchError` unless
    ``config.force``. With ``config.distributed`` every process calls this function; each
    renders its share, process 0 merges the manifests and writes the site.

    Returns:
      :class:`GalleryReport` for this process.
    """
    return _build(config, progress=progress, model=model, dataset=dataset)


def _build(
    config: GalleryConfig,
    *,
    progress: bool = True,
    model: Any = None,
    dataset: Any = None,
    render_fn: Callable | None = None,
    channel_fn: Callable | None = None,
) -> GalleryReport:
    if not isinstance(config, GalleryConfig):
        raise TypeError(f"build_gallery takes a GalleryConfig, got {type(config).__name__}")
    # Bad paths fail here, in one line, before the model is loaded.
    prepare_out_dir(config.out)
    if dataset is None and config.dataset not in ("auto", "none") \
            and not config.dataset.startswith("builtin:") and Path(config.dataset).is_file():
        check_array_file(config.dataset, expect=_DATASET_EXPECT)
    t_start = time.perf_counter()
    pid, nproc = init_distributed(config) if config.distributed else (0, 1)
    tag = f"p{pid}"

    if model is None:
        from lucidax.models import load

        model = load(config.model, config.weights)
    if render_fn is None or channel_fn is None:
        r, c = _default_render()
        render_fn, channel_fn = render_fn or r, channel_fn or c
    config = config.resolved(model.name)  # unset fields from the model's preset

    layers = _resolve_layers(model, config.layers)
    layer_units = _resolve_units(model, layers, config.units)
    layers = tuple(layer_units)
    if config.memory_check:  # before the output folder or anything in it is made
        _check_memory(config, model, layer_units)

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    out = out.resolve()
    clean_stale_tmp(out, tag=tag)
    dirs = _layer_dirs(model.layer_names)
    examples = _load_examples(config, model, dataset, progress)
    top_k = min(config.top_k, len(examples.images)) if examples is not None else 0

    settings = {
        "format": FORMAT,
        "model": model.name,
        "params_sha256": params_sha256(model.params),
        "steps": config.steps,
        "size": config.size,
        "variants": config.variants,
        "lr": config.lr,
        "transforms": config.transforms,
        "pre_relu": config.pre_relu,
        "init_sd": config.init_sd,
        "rescue": RESCUE_SD if config.rescue else None,
        "seed": config.seed,
        "top_k": top_k,
        "dataset": None
        if examples is None
        else {"source": examples.source, "n": len(examples.images), "sha256": examples.sha256},
    }
    if config.model_side:  # only when set: galleries made before the field still resume
        settings["model_side"] = config.model_side
    fingerprint = settings_fingerprint(settings)

    # ---- what is already there
    base = read_manifest(out / MANIFEST)
    shards = [read_manifest(p) for p in sorted(out.glob("manifest.*.json"))]
    for m in [base, *shards]:
        if m is not None and m.get("fingerprint") != fingerprint and not config.force:
            raise ManifestMismatchError(_mismatch_message(out, m.get("settings", {}), settings))
    valid = [m for m in [base, *shards] if m is not None and m.get("fingerprint") == fingerprint]
    known = merge_entries(*valid)
    old_layers: dict[str, Any] = {}
    for m in valid:
        old_layers.update(m.get("layers", {}))

    batches = plan_batches(layer_units, config.batch_size)
    mine = [b for b in batches if b.index % nproc == pid]
    my_units = {(b.layer, u) for b in mine for u in b.units}

    def is_done(layer: str, u: int) -> bool:
        if config.force:
            return False
        return unit_done(out, known.get(layer, {}).get(str(u)))

    done_mine = {(layer, u) for (layer, u) in my_units if is_done(layer, u)}
    todo = [b for b in mine if any((b.layer, u) not in done_mine for u in b.units)]

    run_id = _shared_run_id(nproc)

    # ---- per-layer facts (receptive fields: cheap, deterministic, every process)
    layer_info = dict(old_layers)
    rfs: dict[str, ReceptiveField | None] = {}
    for layer in layers:
        cached = old_layers.get(layer, {}).get("rf")
        if cached:
            rfs[layer] = ReceptiveField.from_dict(cached)
    missing_rf = [layer for layer in layers if layer not in rfs]
    if missing_rf:
        rfs.update(receptive_fields(model, missing_rf, seed=config.seed))
    for layer in layers:
        rf = rfs[layer]
        labels = None
        if model.labels is not None and layer == model.logits_layer:
            if len(model.labels) == model.layers[layer].channels:
                labels = [str(s) for s in model.labels]
        layer_info[layer] = {
            "dir": dirs[layer],
            "channels": model.layers[layer].channels,
            "kind": model.layers[layer].kind,
            "objective_layer": _objective_layer(model, layer, config),
            "rf": rf.to_dict(),
            "unit_labels": labels,
        }
    ordered_info = {k: layer_info[k] for k in model.layer_names if k in layer_info}
    ordered_info.update({k: v for k, v in layer_info.items() if k not in ordered_info})

    header = {
        "format": FORMAT,
        "fingerprint": fingerprint,
        "settings": settings,
        "config": config.to_dict(),
        "versions": package_versions(),
        "model": {
            "name": model.name,
            "weights_source": getattr(model, "weights_source", None),
            "weights_sha256": _weights_file_sha(config, model),
            "params_sha256": settings["params_sha256"],
            "input_side": model.input_spec.side,
        },
        "dataset": settings["dataset"],
        "layout": {"tile": config.size, "variants": config.variants, "examples": top_k},
        "layers": ordered_info,
    }

    # my shard starts with what is already finished of my share
    my_entries: dict[str, dict[str, Any]] = {}
    for layer, u in sorted(done_mine):
        my_entries.setdefault(layer, {})[str(u)] = known[layer][str(u)]
    shard_path = out / shard_name(pid, nproc)
    # single process: the shard *is* manifest.json; keep every other valid entry in it
    keep_other = _without(known, my_units) if nproc == 1 else {}

    def write_shard(complete: bool) -> None:
        write_manifest(
            shard_path,
            header,
            merge_entries({"units": keep_other}, {"units": my_entries}),
            tag=tag,
            run_id=run_id,
            process=pid,
            num_processes=nproc,
            complete=complete,
        )

    write_shard(False)

    # ---- dataset examples for the layers this process renders: one streaming pass
    todo_layers = tuple(dict.fromkeys(b.layer for b in todo))
    topk = (
        top_k_examples(model, examples.images, todo_layers, top_k, progress=progress)
        if examples is not None and top_k and todo_layers
        else {}
    )

    # ---- render
    renderer = _Renderer(config, model, render_fn, channel_fn)
    n_todo = sum(1 for b in todo for u in b.units if (b.layer, u) not in done_mine)
    failed: list[str] = []
    rendered = 0
    t_render = time.perf_counter()
    bar = None
    if progress and n_todo:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=n_todo,
            unit="unit",
            desc=f"gallery {nproc}x" if nproc > 1 else "gallery",
            position=0,
            dynamic_ncols=True,
        )
    try:
        for b in todo:
            if bar is not None:
                bar.set_postfix_str(f"{b.layer} {b.units[0]}-{b.units[-1]}", refresh=False)
            t0 = time.perf_counter()
            padded = list(b.units) + [b.units[-1]] * (b.width - len(b.units))
            res = renderer(b.layer, padded)
            rescued: set[int] = set()
            woke: dict[int, bool] = {}
            if config.rescue:
                res, rescued, woke = _rescue(renderer, b, padded, res, topk.get(b.layer))
            new = [(j, u) for j, u in enumerate(b.units) if (b.layer, u) not in done_mine]
            dt = (time.perf_counter() - t0) / max(len(new), 1)
            for j, u in new:
                entry = _write_unit(
                    out,
                    config,
                    b,
                    j,
                    u,
                    res,
                    rfs.get(b.layer),
                    topk.get(b.layer),
                    examples,
                    dirs[b.layer],
                    top_k,
                    tag,
                )
                entry.update(
                    start="rescue" if j in rescued else "default",
                    rescue=None if j not in woke else "succeeded" if woke[j] else "failed",
                    batch=b.index,
                    process=pid,
                    time_s=round(dt, 4),
                )
                my_entries.setdefault(b.layer, {})[str(u)] = entry
                if entry["status"] == "failed":
                    failed.append(f"{b.layer}/{u}")
            rendered += len(new)
            write_shard(False)
            if bar is not None:
                bar.update(len(new))
    finally:
        if bar is not None:
            bar.close()
    render_s = time.perf_counter() - t_render
    write_shard(True)

    index = None
    manifest_path = out / MANIFEST
    if pid == 0:
        if nproc > 1:
            entries = _gather_shards(out, nproc, run_id, config.shard_timeout, my_entries, pid)
            merged = merge_entries({"units": known}, {"units": entries})
            write_manifest(manifest_path, header, merged, tag=tag, run_id=run_id, complete=True)
        # every shard (this run's, or a killed earlier run's, already read into `known`) is
        # now part of manifest.json
        for shard in out.glob("manifest.*.json"):
            try:
                shard.unlink()
            except FileNotFoundError:
                pass
        final = read_manifest(manifest_path)
        if final is None:
            raise RuntimeError(f"{manifest_path} could not be read back")
        _write_sheets(out, final, tag)
        index = str(write_site(out, final, tag=tag))

    share = summarize(my_entries)  # this process's share, rendered now or before
    return GalleryReport(
        out=str(out),
        index=index,
        manifest=str(manifest_path),
        process_id=pid,
        num_processes=nproc,
        units_total=sum(len(v) for v in layer_units.values()),
        units_rendered=rendered,
        units_skipped=len(done_mine),
        failed_units=tuple(failed),
        elapsed_s=time.perf_counter() - t_start,
        render_s=render_s,
        silent_units=tuple(share["silent"]),
        rescue_needed=tuple(share["rescue"]["needed"]),
        rescue_succeeded=tuple(share["rescue"]["succeeded"]),
    )


def _check_memory(config: GalleryConfig, model, layer_units: dict[str, Sequence[int]]) -> None:
    """Refuse a gallery whose largest render batch cannot fit in memory (see
    :mod:`lucidax._memory`)."""
    from lucidax._memory import check_memory, estimate_render

    worst, worst_layer = None, None
    for layer, units in layer_units.items():
        if not units:
            continue
        need = estimate_render(
            model, _objective_layer(model, layer, config),
            batch=min(config.batch_size, len(units)) * config.variants, size=config.size,
            model_side=config.model_side or None, transforms=config.transforms != "none")
        if need is not None and (worst is None or need > worst):
            worst, worst_layer = need, layer
    if worst_layer is None:
        return
    n = min(config.batch_size, len(layer_units[worst_layer])) * config.variants
    check_memory(worst, f"rendering {worst_layer} ({n} images at once) at {config.size} px",
                 hint="lower --size/--batch-size/--variants")


def _without(entries: dict[str, dict[str, Any]], drop: set[tuple[str, int]]) -> dict:
    return {
        layer: {u: e for u, e in us.items() if (layer, int(u)) not in drop}
        for layer, us in entries.items()
    }


def _weights_file_sha(config: GalleryConfig, model) -> str | None:
    from lucidax.models import weights_sha256

    path = config.weights
    if path is None:
        try:
            from lucidax.models.registry import get_entry

            path = get_entry(config.model).default_weights if model.name == config.model else None
            path = path() if callable(path) else path  # weights inside another package
        except (KeyError, ValueError, ImportError):
            path = None
    if path is None or not os.path.isfile(path):
        return None
    return weights_sha256(path)


def _mismatch_message(out: Path, old: dict[str, Any], new: dict[str, Any]) -> str:
    diffs = [
        f"{k}: {old.get(k)!r} there, {new.get(k)!r} now"
        for k in sorted(set(old) | set(new))
        if old.get(k) != new.get(k)
    ]
    shown = "; ".join(d if len(d) < 200 else d[:200] + "..." for d in diffs) or "format changed"
    return (
        f"{out} holds a gallery made with different settings ({shown}). Re-run with the same "
        f"settings to resume it, choose another output folder, or pass force=True (--force) to "
        f"re-render everything there."
    )


def _write_unit(
    out: Path,
    config: GalleryConfig,
    b: _Batch,
    j: int,
    unit: int,
    res: dict[str, np.ndarray],
    rf: ReceptiveField | None,
    topk,
    examples: _Examples | None,
    layer_dir: str,
    top_k: int,
    tag: str,
) -> dict[str, Any]:
    v = config.variants
    cols = slice(j * v, (j + 1) * v)
    renders = to_uint8(res["images"][cols], rgb=True, nan=0.5)  # failed: grey
    ex_tiles = None
    ex_list: list[dict[str, Any]] = []
    dataset_max = None
    # silent on the data: no top examples (they would be arbitrary images at activation 0)
    data_silent = topk is not None and examples is not None and silent_on_data(
        topk.values[unit, :top_k])
    if data_silent:
        dataset_max = _finite_or_none(topk.values[unit, 0])
    elif topk is not None and examples is not None:
        tiles = []
        for r in range(top_k):
            idx = int(topk.index[unit, r])
            val = float(topk.values[unit, r])
            if idx < 0 or not math.isfinite(val) or abs(val) <= SILENT_EPS:
                continue  # an image at activation 0 is one of many ties: arbitrary
            pos = int(topk.pos[unit, r])
            tiles.append(example_tile(examples.images[idx], rf, pos, config.size))
            box = None
            if rf is not None and not rf.full:
                box = list(rf.box_at(*divmod(pos, rf.shape[1])))
            ex_list.append(
                {"index": idx, "value": val, "caption": examples.captions[idx], "box": box}
            )
        if tiles:
            ex_tiles = to_uint8(np.stack(tiles), rgb=True, nan=0.5)
        dataset_max = _finite_or_none(topk.values[unit, 0])
    grid = unit_grid(renders, ex_tiles, top_k)
    d = safe_path(out, layer_dir)
    d.mkdir(exist_ok=True)
    grid_path = safe_path(out, layer_dir, f"{unit}.png")
    loss_path = safe_path(out, layer_dir, f"{unit}_loss.png")
    atomic_write_bytes(grid_path, png_bytes(grid), tag=tag)
    atomic_write_bytes(
        loss_path, loss_png(res["loss"][:, cols], title=f"{b.layer} unit {unit}"), tag=tag
    )
    acts = [float(a) for a in res["acts"][cols]]
    finite = bool(np.all(res["finite"][cols]))
    render_silent = finite and bool(np.all(stuck_renders(res["loss"][:, cols])))
    reasons = [r for r, on in (("dataset", data_silent), ("render", render_silent)) if on]
    best = max((a for a in acts if math.isfinite(a)), default=None)
    ratio = None
    if best is not None and dataset_max is not None and dataset_max > 0:
        ratio = best / dataset_max
    return {
        "status": "done" if finite else "failed",
        "grid": f"{layer_dir}/{unit}.png",
        "loss_png": f"{layer_dir}/{unit}_loss.png",
        "page": f"{layer_dir}/{unit}.html",
        "render_act": [_finite_or_none(a) for a in acts],
        "objective": [_finite_or_none(a) for a in res["objective"][cols]],
        "finite": [bool(f) for f in res["finite"][cols]],
        "dataset_max": dataset_max,
        "ratio": _finite_or_none(ratio) if ratio is not None else None,
        "examples": ex_list,
        "silent": bool(reasons),
        "silent_reasons": reasons,
    }


def _gather_shards(
    out: Path, nproc: int, run_id: str, timeout: float, mine: dict, pid: int
) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    got: dict[int, dict[str, Any]] = {pid: {"units": mine}}
    while True:
        for p in range(nproc):
            if p in got:
                continue
            m = read_manifest(out / shard_name(p, nproc))
            if m is not None and m.get("run_id") == run_id and m.get("complete"):
                got[p] = m
        missing = [p for p in range(nproc) if p not in got]
        if not missing:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"Processes {missing} did not finish their share within {timeout:.0f}s (no "
                f"complete {', '.join(shard_name(p, nproc) for p in missing)} in {out}). Their "
                f"finished units are kept; re-run every process to complete the gallery."
            )
        time.sleep(0.25)
    return merge_entries(*(got[p] for p in range(nproc)))


def _write_sheets(out: Path, m: dict[str, Any], tag: str) -> None:
    tile = m["layout"]["tile"]
    for layer, units in m["units"].items():
        if not units or layer not in m["layers"]:
            continue
        d = m["layers"][layer]["dir"]
        tiles = []
        for u in sorted(units, key=int):
            try:
                grid = iio.imread(safe_path(out, d, f"{u}.png"), plugin="pillow")
                t = first_tile(grid, tile)
                tiles.append(dim_tile(t) if units[u].get("silent") else t)
            except Exception:  # noqa: BLE001 - a missing/broken file shows as blank
                tiles.append(np.full((tile, tile, 3), 200, np.uint8))
        atomic_write_bytes(
            safe_path(out, d, "sheet.png"), png_bytes(contact_sheet(tiles, tile)), tag=tag
        )
