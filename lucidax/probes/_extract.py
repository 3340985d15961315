"""Streamed activation extraction with an on-disk cache.

``extract(model, params, data, layers, reduce=...)`` runs images through ONE jitted forward
pass that returns every requested layer already reduced to a vector per image (spatial
mean / max / center / a position / a pooled grid; dense layers pass through), and appends each
batch's rows to one ``.npy`` file per layer as they come out, so memory stays bounded by a
batch whatever the dataset size. The result is a :class:`Features` whose arrays are read-only
memory maps of those files.

Data sources:

* a numpy array ``[N, H, W, C]`` (float in the model's value range, or uint8), with
  ``labels=`` an array ``[N]`` or a dict ``{family: [N]}``;
* an image folder: one sub-folder per class (family ``"label"``), or a CSV
  ``filename,label[,more columns...]`` (``labels.csv`` at the folder's top, or the path of the
  CSV itself; a header row names the families). Images are read with imageio, resized so the
  shorter side is ``size`` (default: the model's input side) and center-cropped; grayscale,
  RGB and alpha are converted to the model's number of input channels. Unreadable images are
  skipped and listed in ``Features.skipped``; labels stay aligned with the rows
  (``Features.index`` gives each row's position in the folder listing);
* an iterable of batches: arrays ``[B, H, W, C]``, ``(images, labels)`` pairs, or dicts with
  ``"image"``/``"images"`` and ``"label"``/``"labels"`` keys (cached only with ``data_key=``).

The cache (``cache_dir=``) stores one ``.npy`` + ``.json`` per layer, keyed by the model
name, its ``weights_source``, a hash of the parameters, the layer, the reduction, a hash of
the data (file paths + sizes + mtimes, or the array's bytes), the image size and the stored
dtype. A second run with the same inputs reads the files instead of running the model
(``Features.cache_hits``); anything that changes the key recomputes that layer
(``Features.cache_misses``). All cache writes go to a temporary file and are renamed into
place, so an interrupted run never leaves a partial entry.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import tempfile
import weakref
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lucidax._batching import pad_batch
from lucidax._files import (
    UnreadableImageError,
    load_image,
    none_left,
    warn_skipped,
)
from lucidax.models import Model, normalize_layers, suggest
from lucidax.models.fastgrad import apply as fast_apply

from ._cache import (
    _array_key,
    _atomic_write_text,
    _digest,
    _NpyWriter,
    _open_npy,
    _params_hash,
    _safe,
    _valid_entry,
)
from ._data import _Listing, _listing, _listing_key

#: how :func:`extract` reduces a conv activation ``[h, w, C]`` to features (``reduce=``)
REDUCTIONS = ("mean", "max", "center", "('position', y, x)", "('grid', g)")
_FORMAT = 1  # bump when the on-disk layout or the reductions change

# ----------------------------------------------------------------------------------------------
# public records
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Skipped:
    """An input that was not used: its position in the listing, its path, and why.

    Attributes:
      index: position of the file in the folder's listing.
      path: the file.
      reason: why it was skipped (one line).

    Example:
      >>> from lucidax.probes import Skipped
      >>> s = Skipped(index=3, path="images/broken.png", reason="not a readable image")
      >>> s.path, s.reason
      ('images/broken.png', 'not a readable image')
    """

    index: int
    path: str
    reason: str


@dataclasses.dataclass(frozen=True, eq=False)
class Features:
    """Per-layer feature matrices ``[N, D]`` for the images actually used.

    Attributes:
      arrays: ``{layer: array [N, D]}`` (read-only memory maps of ``files``).
      files: ``{layer: path of the .npy file}``.
      layers: the layers, in the order asked for.
      reduce: the canonical reduction (``"mean"``, ``("position", y, x)``, ...).
      index: ``[N]`` position of each row in the source (folder listing / array / stream).
      paths: image path of each row (folder sources), else None.
      labels: ``{family: [N]}`` aligned with the rows (integer codes for categorical
        families, floats for continuous CSV columns).
      label_names: ``{family: (name of code 0, name of code 1, ...)}`` (empty for continuous).
      skipped: inputs that could not be used, with the reason.
      n_seen: number of inputs looked at (``len(index) + len(skipped)``).
      cache_hits / cache_misses: layers read from / written to the cache.
      size: image side fed to the model (None: the arrays' own size).
      model_name: the model's name.

    Example:
      >>> import numpy as np
      >>> import lucidax.models as lm
      >>> from lucidax.probes import extract
      >>> model = lm.load("starter")
      >>> images = np.random.default_rng(0).random((10, 64, 64, 3), dtype=np.float32)
      >>> features = extract(model, model.params, images, "conv3,conv5", progress=False)
      >>> features.layers, features["conv5"].shape, len(features)
      (('conv3', 'conv5'), (10, 128), 10)
    """

    arrays: Mapping[str, np.ndarray]
    files: Mapping[str, str]
    layers: tuple[str, ...]
    reduce: Any
    index: np.ndarray
    paths: tuple[str, ...] | None
    labels: Mapping[str, np.ndarray]
    label_names: Mapping[str, tuple[str, ...]]
    skipped: tuple[Skipped, ...]
    n_seen: int
    cache_hits: tuple[str, ...]
    cache_misses: tuple[str, ...]
    size: int | None
    model_name: str

    @property
    def n(self) -> int:
        return len(self.index)

    def __getitem__(self, layer: str) -> np.ndarray:
        if layer not in self.arrays:
            raise KeyError(suggest(layer, self.layers, what="layer"))
        return self.arrays[layer]

    def __len__(self) -> int:
        return self.n

    def summary(self) -> dict[str, Any]:
        """JSON-ready description (no arrays)."""
        return {
            "model": self.model_name,
            "layers": list(self.layers),
            "reduce": self.reduce if isinstance(self.reduce, str) else list(self.reduce),
            "n": self.n,
            "n_seen": self.n_seen,
            "n_skipped": len(self.skipped),
            "skipped": [dataclasses.asdict(s) for s in self.skipped],
            "shapes": {k: list(v.shape) for k, v in self.arrays.items()},
            "label_families": {k: list(v) for k, v in self.label_names.items()},
            "cache_hits": list(self.cache_hits),
            "cache_misses": list(self.cache_misses),
            "files": dict(self.files),
        }


# ----------------------------------------------------------------------------------------------
# reductions (inside the jit)
# ----------------------------------------------------------------------------------------------
def _parse_reduce(reduce: Any) -> str | tuple:
    valid = ", ".join(REDUCTIONS)
    if isinstance(reduce, str):
        name = reduce.strip().lower()
        if name in ("mean", "max", "center"):
            return name
        m = re.fullmatch(r"grid[:=_ ]?(\d+)", name)
        if m:
            return _parse_reduce(("grid", int(m.group(1))))
        m = re.fullmatch(r"position[:=_ ]?([0-9.]+)[,:x ]([0-9.]+)", name)
        if m:
            y, x = (float(v) if "." in v else int(v) for v in m.groups())
            return _parse_reduce(("position", y, x))
        raise ValueError(suggest(reduce, ["mean", "max", "center"], what="reduction")
                         + f" (or {REDUCTIONS[3]}, {REDUCTIONS[4]}; also 'grid4', "
                           "'position:0.5,0.5')")
    if isinstance(reduce, Sequence) and len(reduce) >= 1 and isinstance(reduce[0], str):
        kind = reduce[0].lower()
        if kind == "grid" and len(reduce) == 2:
            g = reduce[1]
            if isinstance(g, bool) or not isinstance(g, int | np.integer) or g < 1:
                raise ValueError(f"('grid', g) needs an integer g >= 1; got {g!r}")
            return ("grid", int(g))
        if kind == "position" and len(reduce) == 3:
            out = []
            for v in reduce[1:]:
                if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating):
                    raise ValueError(f"('position', y, x) needs numbers; got {reduce!r}")
                if isinstance(v, float | np.floating) and not 0.0 <= float(v) <= 1.0:
                    raise ValueError(
                        f"('position', y, x): floats are fractions of the map in [0, 1], ints "
                        f"are grid indices; got {reduce!r}"
                    )
                out.append(float(v) if isinstance(v, float | np.floating) else int(v))
            return ("position", *out)
    raise ValueError(f"Unknown reduction {reduce!r}. Valid reductions: {valid}")


def _pos_index(v: int | float, extent: int, layer: str, what: str) -> int:
    if isinstance(v, float):
        return int(round(v * (extent - 1)))
    i = v + extent if v < 0 else v
    if not 0 <= i < extent:
        raise ValueError(
            f"('position', y, x): {what}={v} is outside layer {layer!r}'s {extent}-long axis "
            "(use a fraction in [0, 1] for a layer-independent position)"
        )
    return i


def _reduce_one(act: jax.Array, reduce: str | tuple, layer: str) -> jax.Array:
    if act.ndim == 2:  # dense layers pass through
        return act
    if act.ndim != 4:
        return act.reshape(act.shape[0], -1)
    n, h, w, c = act.shape
    if reduce == "mean":
        return jnp.mean(act, axis=(1, 2))
    if reduce == "max":
        return jnp.max(act, axis=(1, 2))
    if reduce == "center":
        return act[:, h // 2, w // 2, :]
    if reduce[0] == "position":
        return act[:, _pos_index(reduce[1], h, layer, "y"), _pos_index(reduce[2], w, layer, "x")]
    g = reduce[1]  # adaptive average pooling to g x g (PyTorch's bin boundaries)
    rows = []
    for i in range(g):
        h0, h1 = (i * h) // g, -(-((i + 1) * h) // g)
        cols = []
        for j in range(g):
            w0, w1 = (j * w) // g, -(-((j + 1) * w) // g)
            cols.append(jnp.mean(act[:, h0:h1, w0:w1, :], axis=(1, 2)))
        rows.append(jnp.stack(cols, axis=1))
    return jnp.stack(rows, axis=1).reshape(n, g * g * c)


def _resize_crop(images: jax.Array, size: int) -> jax.Array:
    n, h, w, c = images.shape
    if (h, w) == (size, size):
        return images
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    out = jax.image.resize(images, (n, nh, nw, c), "linear", antialias=True)
    top, left = (nh - size) // 2, (nw - size) // 2
    return out[:, top : top + size, left : left + size, :]


def _forward(model: Model, layers: tuple[str, ...], reduce, size: int | None, dtype: str):
    """The jitted forward of (layers, reduce, size, dtype): one program per architecture
    (:meth:`lucidax.models.Model.program`), shared by every ``with_params`` copy."""
    out_dtype = jnp.dtype(dtype)

    def build(shell: Model):
        def fwd(params, images):
            if size is not None:
                images = _resize_crop(images, size)
            acts = fast_apply(shell, params, images, layers)
            return {name: _reduce_one(acts[name], reduce, name).astype(out_dtype)
                    for name in layers}

        return fwd

    return model.program(("probes.extract", layers, reduce, size, dtype), build)


# ----------------------------------------------------------------------------------------------
# images
# ----------------------------------------------------------------------------------------------
def _short_reason(e: BaseException) -> str:
    if isinstance(e, UnreadableImageError):
        return e.reason
    if isinstance(e, FileNotFoundError):
        return "file not found"
    msg = str(e).strip().splitlines()
    text = f"{type(e).__name__}: {msg[0] if msg else ''}".strip()
    return text[:300]


def _load_or_reason(path: str, size: int, channels: int) -> tuple[np.ndarray | None, str]:
    try:
        if os.path.getsize(path) == 0:
            return None, "empty file"
        return load_image(path, size=size, channels=channels), ""
    except Exception as e:  # noqa: BLE001 - any decoder failure means "skip this file"
        return None, _short_reason(e)

# ----------------------------------------------------------------------------------------------
# sources: each yields (images float32 [b, H, W, C], index [b], labels {fam: [b]} | None)
# ----------------------------------------------------------------------------------------------

def _as_batch_images(x: Any, channels: int, what: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim == 3 and channels == 1:
        arr = arr[..., None]
    if arr.ndim != 4:
        raise ValueError(f"{what}: images must be [N, H, W, C]; got shape {arr.shape}")
    if arr.shape[-1] != channels:
        raise ValueError(
            f"{what}: the model takes {channels} input channel(s) (NHWC, channels last); got "
            f"shape {arr.shape}"
        )
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"{what}: images must be float (or uint8); got dtype {arr.dtype}")
    return arr.astype(np.float32, copy=False)


def _labels_dict(labels: Any, n: int | None, what: str) -> dict[str, np.ndarray]:
    if labels is None:
        return {}
    if isinstance(labels, Mapping):
        out = {str(k): np.asarray(v) for k, v in labels.items()}
    else:
        out = {"label": np.asarray(labels)}
    for k, v in out.items():
        if v.ndim != 1 or (n is not None and len(v) != n):
            raise ValueError(
                f"{what}: labels {k!r} must be 1-D with one label per image ({n}); got shape "
                f"{v.shape}"
            )
    return out


class _Skips:
    def __init__(self) -> None:
        self.items: list[Skipped] = []


def _folder_stream(lst: _Listing, size: int, channels: int, skips: _Skips, workers: int,
                   lookahead: int) -> Iterator[tuple[np.ndarray, np.ndarray, None]]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque = deque()
        it = iter(enumerate(lst.paths))

        def submit() -> None:
            nxt = next(it, None)
            if nxt is not None:
                pending.append((nxt[0], nxt[1], pool.submit(_load_or_reason, nxt[1], size,
                                                            channels)))

        for _ in range(lookahead):
            submit()
        while pending:
            i, path, fut = pending.popleft()
            submit()
            img, reason = fut.result()
            if img is None:
                skips.items.append(Skipped(i, path, reason))
                yield (np.zeros((0, size, size, channels), np.float32), np.zeros(0, np.int64),
                       None, 1)
            else:
                yield img[None], np.asarray([i], np.int64), None, 1


def _array_stream(arr: np.ndarray, channels: int, chunk: int):
    for i in range(0, len(arr), chunk):
        block = _as_batch_images(arr[i : i + chunk], channels, "data")
        yield block, np.arange(i, i + len(block), dtype=np.int64), None, len(block)


def _iterable_stream(items: Iterable, channels: int):
    start = 0
    for j, item in enumerate(items):
        labels = None
        if isinstance(item, Mapping):
            img_key = next((k for k in ("image", "images") if k in item), None)
            if img_key is None:
                raise ValueError(
                    f"batch {j}: a dict batch needs an 'image' or 'images' key; got "
                    f"{sorted(item)}"
                )
            images = item[img_key]
            lab = next((item[k] for k in ("label", "labels") if k in item), None)
        elif isinstance(item, tuple | list) and len(item) == 2:
            images, lab = item
        else:
            images, lab = item, None
        images = _as_batch_images(images, channels, f"batch {j}")
        if lab is not None:
            labels = _labels_dict(lab, len(images), f"batch {j}")
        yield images, np.arange(start, start + len(images), dtype=np.int64), labels, len(images)
        start += len(images)


def _rebatch(stream, batch_size: int):
    """Regroup a stream of variable-size chunks into batches of exactly ``batch_size``
    (the last one shorter); yields (images, index, labels, n_inputs_consumed)."""
    imgs, idxs, labs, consumed = [], [], [], 0
    have = 0
    families: list[str] | None = None

    def emit(k: int):
        nonlocal imgs, idxs, labs, have
        cat_i, cat_x = np.concatenate(imgs), np.concatenate(idxs)
        cat_l = ({f: np.concatenate([lb[f] for lb in labs]) for f in families}
                 if families else None)
        out = (cat_i[:k], cat_x[:k], {f: v[:k] for f, v in cat_l.items()} if cat_l else None)
        imgs, idxs = [cat_i[k:]], [cat_x[k:]]
        labs = [{f: v[k:] for f, v in cat_l.items()}] if cat_l else []
        have -= k
        return out

    for images, index, labels, n_inputs in stream:
        consumed += n_inputs
        if labels is not None:
            if families is None:
                families = sorted(labels)
            elif sorted(labels) != families:
                raise ValueError(
                    f"every batch must carry the same label families; got {sorted(labels)} "
                    f"after {families}"
                )
            labs.append(labels)
        elif families is not None and len(index):
            raise ValueError("some batches have labels and others do not")
        if len(index) == 0:
            continue
        imgs.append(images)
        idxs.append(index)
        have += len(index)
        while have >= batch_size:
            yield (*emit(batch_size), consumed)
            consumed = 0
    if have:
        yield (*emit(have), consumed)

# ----------------------------------------------------------------------------------------------
# extract
# ----------------------------------------------------------------------------------------------
def extract(
    model: Model,
    params: Any,
    data: Any,
    layers: str | Sequence[str],
    *,
    reduce: Any = "mean",
    labels: Any = None,
    batch_size: int = 64,
    size: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    dtype: str = "float32",
    data_key: str | None = None,
    progress: bool = True,
    workers: int = 4,
    memory_check: bool = True,
) -> Features:
    """Activations of ``layers`` for every image of ``data``, reduced to ``[N, D]`` per layer.

    Args:
      model: a :class:`lucidax.models.Model`.
      params: its parameters (usually ``model.params``).
      data: ``[N, H, W, C]`` array, image folder / CSV path, or iterable of batches (see the
        module docstring).
      layers: layer names, a comma-separated string, or ``"all"``.
      reduce: ``"mean"``, ``"max"``, ``"center"``, ``("position", y, x)`` (ints: indices into
        the activation grid; floats: fractions of it in [0, 1]), or ``("grid", g)``
        (average-pooled to g x g, flattened as (gy, gx, channel)). Dense layers are returned
        as they are.
      labels: for array / iterable data, ``[N]`` or ``{family: [N]}`` (folders bring their own).
      batch_size: images per forward pass (one compiled program: the last batch is padded).
      size: image side fed to the model. Folder images are always resized/cropped to it
        (default: ``model.input_spec.side``); arrays are resized only when it is given.
      cache_dir: folder of the feature cache; None writes to a private temporary folder
        deleted when the returned Features is garbage collected.
      dtype: ``"float32"`` or ``"float16"`` (stored features).
      data_key: identity of the data for the cache, overriding the computed hash (needed to
        cache an iterable source).
      progress: show a tqdm progress bar.
      workers: threads decoding folder images.
      memory_check: raise ``lucidax._memory.InsufficientMemoryError`` (a ValueError)
        before running the model or writing anything when the estimated memory need (a
        batch through the model and the stored features) exceeds the available memory;
        False: try anyway.

    Returns:
      :class:`Features`: ``features[layer]`` is ``[N, D]``.

    Example:
      >>> import numpy as np
      >>> import lucidax.models as lm
      >>> from lucidax.probes import extract
      >>> model = lm.load("starter")
      >>> images = np.random.default_rng(0).random((10, 64, 64, 3), dtype=np.float32)
      >>> grid = extract(model, model.params, images, "conv4", reduce=("grid", 2),
      ...                progress=False)
      >>> grid["conv4"].shape
      (10, 384)
    """
    if not isinstance(model, Model):
        raise TypeError(f"model must be a lucidax.models.Model; got {type(model).__name__}")
    names = normalize_layers(layers, model.layer_names)
    red = _parse_reduce(reduce)
    if dtype not in ("float32", "float16"):
        raise ValueError(f"Unknown dtype {dtype!r}. Valid dtypes: float32, float16")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
    channels = model.input_spec.channels
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ValueError(f"size must be a positive integer; got {size!r}")

    # ---- the source --------------------------------------------------------------------
    listing: _Listing | None = None
    feed_size = size  # resize inside the jit (arrays/iterables) when not None
    if isinstance(data, str | os.PathLike):
        listing = _listing(os.fspath(data))
        img_size = size or model.input_spec.side
        if img_size is None:
            raise ValueError(
                f"model {model.name!r} has no natural input side; pass size= to read images"
            )
        feed_size = None  # images are already resized on load
        n_total: int | None = len(listing.paths)
        src_labels, src_names = listing.labels, listing.label_names
        if labels is not None:
            raise ValueError("labels= is for array/iterable data; folders bring their labels")
        data_hash = data_key or _listing_key(listing)
        data_size: int | None = img_size
    elif isinstance(data, np.ndarray) or hasattr(data, "__array__") and hasattr(data, "shape"):
        arr = np.asarray(data)
        _as_batch_images(arr[:1], channels, "data")  # validate shape/dtype up front
        n_total = len(arr)
        src_labels = _labels_dict(labels, n_total, "data")
        src_names = {}
        data_hash = data_key or _array_key(arr)
        data_size = size
    elif isinstance(data, Iterable):
        arr = None
        n_total = None
        src_labels = None  # collected from the stream
        src_names = {}
        data_hash = data_key  # None: not cacheable
        data_size = size
        if labels is not None:
            raise ValueError("labels= is for array data; an iterable yields (images, labels)")
    else:
        raise TypeError(
            "data must be an array [N, H, W, C], an image folder / CSV path, or an iterable of "
            f"batches; got {type(data).__name__}"
        )

    if memory_check:
        _check_memory(model, names, red, batch_size, data_size, n_total, data)

    # ---- cache lookup ------------------------------------------------------------------
    use_cache = cache_dir is not None and data_hash is not None
    tmp_owner = None
    if use_cache:
        out_dir = os.fspath(cache_dir)
        os.makedirs(out_dir, exist_ok=True)
    else:  # no cache (or an iterable without data_key): a private folder
        out_dir = tempfile.mkdtemp(prefix="lucidax-features-")
        tmp_owner = out_dir
    model_id = {
        "format": _FORMAT,
        "model": model.name,
        "weights": model.weights_source,
        "params": _params_hash(params) if use_cache else None,
        "channels": channels,
        "size": data_size,
        "data": data_hash,
    }
    data_meta_path = os.path.join(out_dir, f"data-{_digest(model_id)[:24]}.json")
    layer_paths: dict[str, tuple[str, str]] = {}
    hits: list[str] = []
    data_meta: dict[str, Any] | None = None
    if use_cache and os.path.isfile(data_meta_path):
        try:
            with open(data_meta_path, encoding="utf-8") as f:
                data_meta = json.load(f)
        except (OSError, ValueError):
            data_meta = None
    for name in names:
        k = _digest({**model_id, "layer": name, "reduce": red, "dtype": dtype})
        base = os.path.join(out_dir, f"{_safe(name)}-{k[:24]}")
        layer_paths[name] = (base + ".npy", base + ".json")
        if use_cache and data_meta is not None and _valid_entry(*layer_paths[name],
                                                                 len(data_meta["index"])):
            hits.append(name)
    misses = [n for n in names if n not in hits]

    # ---- compute the misses ------------------------------------------------------------
    skipped: list[Skipped]
    if misses:
        index, skipped, stream_labels = _run(
            model, params, tuple(misses), red, dtype, batch_size, feed_size,
            listing, data if listing is None else None, n_total, channels,
            {n: layer_paths[n][0] for n in misses}, progress, workers,
            img_size=data_size,
        )
        if use_cache:
            meta = {"index": index.tolist(),
                    "skipped": [dataclasses.asdict(s) for s in skipped],
                    "n_seen": int(len(index) + len(skipped))}
            _atomic_write_text(data_meta_path, json.dumps(meta))
            for name in misses:
                _atomic_write_text(layer_paths[name][1], json.dumps(
                    {"layer": name, "reduce": red, "dtype": dtype, "rows": int(len(index)),
                     "model": model.name, "weights": model.weights_source,
                     "data": data_hash, "size": data_size}))
        if src_labels is None:
            src_labels = stream_labels
            src_index = np.arange(len(index))  # stream labels are already per kept row
        else:
            src_index = index
    else:
        assert data_meta is not None
        index = np.asarray(data_meta["index"], np.int64)
        skipped = [Skipped(**s) for s in data_meta["skipped"]]
        src_index = index

    arrays = {name: _open_npy(layer_paths[name][0]) for name in names}
    feats = Features(
        arrays=arrays,
        files={name: layer_paths[name][0] for name in names},
        layers=names,
        reduce=red,
        index=index,
        paths=tuple(listing.paths[i] for i in index) if listing is not None else None,
        labels={k: np.asarray(v)[src_index] for k, v in (src_labels or {}).items()},
        label_names=dict(src_names),
        skipped=tuple(skipped),
        n_seen=int(len(index) + len(skipped)),
        cache_hits=tuple(hits),
        cache_misses=tuple(misses),
        size=data_size,
        model_name=model.name,
    )
    if tmp_owner is not None:
        weakref.finalize(feats, shutil.rmtree, tmp_owner, True)
    return feats


def _check_memory(model: Model, names: tuple[str, ...], red, batch_size: int,
                  size: int | None, n_total: int | None, data: Any) -> None:
    """Refuse an extraction that cannot fit in memory (``lucidax._memory``)."""
    from lucidax._memory import check_memory, estimate_extraction

    side = size or (max(np.shape(data)[1:3]) if hasattr(data, "shape") and np.ndim(data) == 4
                    else model.input_spec.side)
    if side is None:
        return
    grid = red[1] if isinstance(red, tuple) and red[0] == "grid" else 1
    count = f"{n_total} images" if n_total is not None else "images"
    check_memory(estimate_extraction(model, names, batch=batch_size, side=int(side),
                                     n=n_total, grid=grid),
                 f"extracting features of {count} at {side} px from {len(names)} "
                 f"layer{'s' * (len(names) != 1)}",
                 hint="lower --batch-size or use fewer images or layers")

def _run(model, params, layers, red, dtype, batch_size, feed_size, listing, data, n_total,
         channels, out_paths, progress, workers, *, img_size):
    """Stream the source through the jitted forward, appending rows to per-layer files."""
    from tqdm.auto import tqdm

    fwd = _forward(model, layers, red, feed_size, dtype)
    skips = _Skips()
    if listing is not None:
        side = img_size
        stream = _folder_stream(listing, side, channels, skips, max(1, workers),
                                lookahead=2 * batch_size)
        probe_shape = (batch_size, side, side, channels)
    elif isinstance(data, np.ndarray) or hasattr(data, "shape"):
        arr = np.asarray(data)
        stream = _array_stream(arr, channels, batch_size)
        probe_shape = (batch_size, *arr.shape[1:])
    else:
        stream = _iterable_stream(data, channels)
        probe_shape = None

    writers: dict[str, _NpyWriter] = {}
    tmp_paths = {name: f"{path}.tmp-{os.getpid()}-{id(out_paths)}" for name, path in
                 out_paths.items()}
    index_parts: list[np.ndarray] = []
    label_parts: list[dict[str, np.ndarray]] = []

    def open_writers(shape: tuple[int, ...]) -> None:
        spec = jax.ShapeDtypeStruct(shape, jnp.float32)
        out = jax.eval_shape(fwd, params, spec)  # also validates the reduction per layer
        for name in layers:
            writers[name] = _NpyWriter(tmp_paths[name], np.dtype(dtype), int(out[name].shape[1]))

    def write(result, k: int) -> None:
        host = jax.device_get(result)
        for name in layers:
            writers[name].append(np.asarray(host[name])[:k])

    bar = tqdm(total=n_total, unit="img", desc=f"extract {model.name}", disable=not progress,
               leave=False)
    pending = None
    try:
        if probe_shape is not None:
            open_writers(probe_shape)
        for images, index, labels, consumed in _rebatch(stream, batch_size):
            k = len(index)
            if not writers:
                open_writers((batch_size, *images.shape[1:]))
            images = pad_batch(images, batch_size)  # the last batch too: one compiled shape
            result = fwd(params, jnp.asarray(images))  # dispatched asynchronously
            if pending is not None:
                write(*pending)
            pending = (result, k)
            index_parts.append(index)
            if labels is not None:
                label_parts.append(labels)
            bar.update(consumed)
        if pending is not None:
            write(*pending)
        if not index_parts and skips.items:  # every file unreadable: nothing to cache
            bad = sorted(skips.items, key=lambda s: s.index)
            raise none_left([(b.path, b.reason) for b in bad],
                             f"data folder {listing.root if listing else 'the data'!r}")
        if not writers:  # nothing usable at all: empty files with the right widths
            side = img_size or model.input_spec.side or 64
            open_writers((batch_size, side, side, channels))
        for name in layers:
            writers[name].finish()
            os.replace(tmp_paths[name], out_paths[name])
    except BaseException:
        for w in writers.values():
            try:
                w.abort()
            except OSError:
                pass
        raise
    finally:
        bar.close()
    index = np.concatenate(index_parts) if index_parts else np.zeros(0, np.int64)
    stream_labels = (
        {f: np.concatenate([p[f] for p in label_parts]) for f in label_parts[0]}
        if label_parts else {}
    )
    skipped = sorted(skips.items, key=lambda s: s.index)
    if skipped:
        root = listing.root if listing is not None else "the data"
        warn_skipped([(s.path, s.reason) for s in skipped], f"data folder {root!r}")
    return index, skipped, stream_labels
