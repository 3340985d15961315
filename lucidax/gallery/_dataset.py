"""The images a gallery takes its top dataset examples from (``GalleryConfig.dataset``):
loaded, checked, resized to the model's side and captioned."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from lucidax._files import load_array

from ._config import GalleryConfig, GalleryConfigError


@dataclasses.dataclass(frozen=True)
class _Examples:
    images: np.ndarray  # float32 [N, S, S, C] at the model side
    captions: tuple[str, ...]
    source: str
    sha256: str
    groups: np.ndarray | None = None  # [N] builtin:photos: the source photo of each crop


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
    groups = None  # crops of one photo share more than a unit's feature (interpretability)
    if str(source).startswith("builtin:photos") and labels is not None \
            and not isinstance(labels, dict):
        groups = np.asarray(labels).reshape(-1)[: len(images)]
    return _Examples(images, captions, str(source), sha, groups)

