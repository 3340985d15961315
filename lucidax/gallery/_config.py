"""The gallery's configuration (one frozen dataclass; every ``lucidax gallery`` flag maps to a
field) and the small parsers it needs."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

from lucidax._fields import flag
from lucidax._storage import OUT_HELP
from lucidax.visualize import default_init_sd, unit_list

__all__ = [
    "IMAGENET_SHOWCASE",
    "PRESETS",
    "PRESET_FIELDS",
    "GalleryConfig",
    "GalleryConfigError",
    "ManifestMismatchError",
    "parse_layer_units",
    "parse_units",
    "preset_for",
]


class GalleryConfigError(ValueError):
    """An invalid gallery setting (the message says which and what is allowed).

    A ``ValueError``, raised when a :class:`GalleryConfig` is made (syntax, ranges) or when
    it is resolved on its model (unknown layers, units out of range).

    Example:
      >>> from lucidax.gallery import GalleryConfig
      >>> GalleryConfig(model="starter", size=4)
      Traceback (most recent call last):
      ...
      lucidax.gallery._config.GalleryConfigError: size must be an integer >= 8, got 4
    """


class ManifestMismatchError(RuntimeError):
    """The output folder holds a gallery made with different settings.

    Raised by :func:`build_gallery` before anything is rendered; the message lists the
    settings that differ. Re-run with the same settings to resume, choose another ``out``,
    or pass ``force=True`` to re-render everything there.

    Example:
      >>> import dataclasses
      >>> from lucidax.gallery import GalleryConfig, build_gallery
      >>> config = GalleryConfig(model="starter", layers="conv1", units="0-1", size=32,
      ...                        top_k=0, dataset="none", transforms="none", rescue=False)
      >>> report = build_gallery(config, progress=False)
      >>> build_gallery(dataclasses.replace(config, steps=16), progress=False)
      Traceback (most recent call last):
      ...
      lucidax.gallery._config.ManifestMismatchError: ... (steps: 128 there, 16 now)...
    """


@dataclasses.dataclass(frozen=True)
class GalleryConfig:
    """What :func:`lucidax.gallery.build_gallery` makes.

    Attributes:
      model: registry name of the model (``lucidax.models.list_models()``); default
        ``efficientnet_lite0`` (ImageNet weights).
      weights: checkpoint path, or None for the model's default (shipped) weights.
      layers: ``"all"`` (every layer except the ``*_pre_relu`` twins), a comma-separated
        string ``"conv1,conv3"`` or a tuple of names. None: the model's preset (see
        ``PRESETS``; efficientnet_lite0: blocks.4, blocks.7, blocks.10, blocks.14 and
        logits; other models: all).
      units: ``"all"`` or ranges ``"0-15,20"`` (or a tuple of ints), applied to every layer;
        units past a layer's channel count are left out for that layer. Per-layer units
        follow ``;``: ``"0-7;logits=1,207,285"`` (layers not named take the first part;
        ``"logits=1,2"`` alone renders only the named layers' units). None: every unit of the
        layers given; with the preset's layers, the preset's units (efficientnet_lite0:
        units 0-7 of each block and 16 classes of logits).
      out: output folder.
      steps: optimization steps per render (None: preset, 128).
      size: render side in pixels (also the tile side of the PNG grids); None: preset
        (efficientnet_lite0: 128, starter and others: 48).
      model_side: side of the image the model sees: renders are bilinearly resized to it
        when smaller; 0 means the model's natural input side (e.g. 64 for the starter
        model). None: preset (efficientnet_lite0: 128, i.e. renders at their own side,
        2.5x faster than at 224; their class renders are still classified correctly at
        224, see the README's quality table; others: 0).
      variants: renders per unit (different random starts: unit ids ``unit * variants + v``);
        None: preset (efficientnet_lite0: 1, others: 2).
      lr: Adam learning rate.
      pre_relu: optimize a unit's pre-activation (``<layer>_pre_relu``) where the model
        exposes one instead of the unit's output. Off by default: the spatial mean of a
        pre-activation rewards pulling every background position up, and on sparse layers
        the optimum it finds is often "all inputs silent" (measured on the starter model:
        conv4 renders reached ~5% of the dataset maximum with it, >100% without).
        Activations reported (render vs dataset) are always the layer's own.
      init_sd: standard deviation of the random Fourier coefficients the renders start from.
        Lucid uses 0.01 (a flat grey start), but a model trained on high-contrast images,
        like the starter model, has whole layers silent on flat grey and its units' renders
        then never leave it (zero gradient through the ReLUs); 0.5 starts from a faint noise
        image, which wakes most units while keeping renders clean (see ``rescue`` for the
        rest). None: preset (efficientnet_lite0: Lucid's 0.01; others: 0.5).
      rescue: re-render, from a high-contrast start (clipped colours, Fourier sd 1.0), the
        batches where a unit's renders stayed silent (below 2% of its maximum over the
        dataset images), and keep the stronger result per unit (marked on its page).
      transforms: ``"standard"`` (Lucid's pad/jitter/scale/rotate robustness transforms) or
        ``"none"`` (faster to compile, noisier images).
      batch_size: units per render batch (``batch_size * variants`` images at once); a
        layer's last batch is padded so every batch of a layer has one shape (one compile).
        None: preset (efficientnet_lite0: 16, others: 32).
      top_k: dataset examples shown per unit (0: none).
      dataset: ``"auto"`` (the model's own dataset when it ships one, e.g. the starter
        model's test split, else ``builtin:photos`` for RGB models, else none), ``"none"``,
        ``"builtin:photos[:<source>]"`` (crops of the real photos shipped in installed
        packages, at the model's input side or 224), ``"builtin:starter[:train|:test]"``, or
        a ``.npz`` (``images`` [N,H,W,C], optional ``labels`` [N] int and ``label_names``) /
        ``.npy`` (images) path.
      dataset_size: images taken from the dataset for the top-k search.
      seed: seed of every random draw (renders and dataset sampling).
      force: re-render every requested unit, even finished ones or a folder made with
        different settings.
      distributed: run as one of several processes (``jax.distributed``); each claims the
        next unrendered batch (most expensive first) when it is free, process 0 writes the
        index once all are done.
      coordinator_address, num_processes, process_id: for ``distributed``; None reads the
        environment variables ``LUCIDAX_COORDINATOR``, ``LUCIDAX_NUM_PROCESSES``,
        ``LUCIDAX_PROCESS_ID``.
      shard_timeout: seconds process 0 waits for the other processes' results.
      interpretability: per-unit interpretability scores on the unit and layer pages: the
        fraction of tasks a simulated observer (another network's features: EfficientNet-Lite1
        ``avgpool`` for Lite0, from ``lucidax[imagenet]``; Lite0 for other models) answers
        with the unit's top / bottom dataset images as references (natural) and with its
        renders as the top references (synthetic); see
        :func:`lucidax.probes.interpretability_scores`. Needs at least 100 dataset images;
        skipped with a note (``GalleryReport.scores_note``) when the observer is not
        installed. Not part of the settings a gallery resumes by.
      memory_check: refuse, before the output folder is made, a gallery whose largest render
        batch needs more memory than is available (``--no-memory-check`` tries anyway). Not
        part of the settings a gallery resumes by.

    Raises:
      GalleryConfigError: an invalid field (checked when the config is made).

    Example:
      >>> from lucidax.gallery import GalleryConfig
      >>> config = GalleryConfig(model="starter", layers="conv2,conv3", units="0-7", size=48)
      >>> config.layers, config.steps  # None: left to the model's preset
      ('conv2,conv3', None)
      >>> full = config.resolved()
      >>> full.steps, full.variants, full.batch_size
      (128, 2, 32)
    """

    model: str = flag("efficientnet_lite0", "registered model name (lucidax models lists "
                                             "them)")
    weights: str | None = flag(
        None, "checkpoint file, or 'random' (default: the model's shipped weights)")
    layers: str | tuple[str, ...] | None = flag(
        None, "'all' (every layer except the *_pre_relu twins) or comma-separated layer names")
    units: str | tuple[int, ...] | None = flag(
        None, "'all' or ranges such as 0-15,20 for every layer (units past a layer's size are "
              "left out); per-layer units after ';': '0-7;logits=1,207,285' ('logits=1,2' "
              "alone: only the named layers). With --layers and no --units: every unit")
    out: str = flag("gallery", f"{OUT_HELP}; re-running the same command resumes there")
    steps: int | None = flag(None, "optimization steps per render")
    size: int | None = flag(None, "render side in pixels (also the tiles' side)")
    model_side: int | None = flag(
        None, "side of the image the model sees (renders are resized up to it; 0: the "
              "model's input side, e.g. 224 for EfficientNet-Lite0)")
    variants: int | None = flag(None, "renders per unit, from different random starts")
    lr: float = flag(0.05, "Adam learning rate")
    pre_relu: bool = flag(
        False, "optimize a unit's pre-activation (<layer>_pre_relu) where the model has one")
    init_sd: float | None = flag(
        None, "std of the random start (0.01: Lucid's flat grey; 0.5: faint noise, which "
              "wakes layers that are silent on flat grey)")
    rescue: bool = flag(
        True, "re-render from a high-contrast start the units whose renders stayed silent "
              "(below 2% of their dataset maximum) and keep the stronger result")
    transforms: str = flag("standard", "standard (Lucid's pad/jitter/scale/rotate) or none")
    batch_size: int | None = flag(None, "units per render batch (one compiled program per "
                                         "layer)")
    top_k: int = flag(8, "dataset examples shown per unit (0: none)")
    dataset: str = flag(
        "auto", "images for the top examples: auto (the model's own dataset, else "
                "builtin:photos for RGB models), none, builtin:photos[:<source>], "
                "builtin:starter[:train|:test], or a .npz (images [N,H,W,C], optional labels, "
                "label_names) / .npy file")
    dataset_size: int = flag(1000, "images taken from the dataset for the top-k search")
    seed: int = flag(0, "seed of every random draw (renders and dataset sampling)")
    force: bool = flag(
        False, "re-render every requested unit, even finished ones or an --out folder made "
               "with other settings")
    distributed: bool = flag(
        False, "one of several jax.distributed processes: each claims the next batch when it "
               "is free (costliest first), process 0 writes the site")
    coordinator_address: str | None = flag(
        None, "with --distributed: host:port of process 0 (default: $LUCIDAX_COORDINATOR)")
    num_processes: int | None = flag(
        None, "with --distributed: number of processes (default: $LUCIDAX_NUM_PROCESSES)")
    process_id: int | None = flag(
        None, "with --distributed: this process's index, 0 .. num-processes - 1 (default: "
              "$LUCIDAX_PROCESS_ID)")
    shard_timeout: float = flag(
        3600.0, "with --distributed: seconds process 0 waits for the others' results")
    interpretability: bool = flag(
        True, "per-unit interpretability scores (natural exemplars and renders, judged by "
              "another network: efficientnet_lite1 for efficientnet_lite0, from "
              "lucidax[imagenet]) on the unit and layer pages; skipped with a note when the "
              "observer is not installed (--no-interpretability: off)")
    memory_check: bool = flag(
        True, "refuse, before --out is made, a gallery whose largest render batch needs more "
              "memory than is available (--no-memory-check tries anyway)")

    def __post_init__(self) -> None:
        def fix(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        if not isinstance(self.model, str) or not self.model:
            raise GalleryConfigError(f"model must be a registered model name, got {self.model!r}")
        if self.weights is not None:
            fix("weights", os.fspath(self.weights))
        fix("out", os.fspath(self.out))
        if not self.out:
            raise GalleryConfigError("out must be a folder path, got ''")
        # layers
        if self.layers is not None and not isinstance(self.layers, str):
            layers = tuple(self.layers)
            if not layers or not all(isinstance(s, str) for s in layers):
                raise GalleryConfigError(
                    f"layers must be 'all', a comma-separated string or a sequence of names; "
                    f"got {self.layers!r}"
                )
            fix("layers", layers)
        # units: validate the syntax now (ranges are checked against the model later)
        if isinstance(self.units, str):
            parse_layer_units(self.units)
        elif self.units is not None:
            fix("units", parse_units(self.units))
        for name, lo in (
            ("steps", 1),
            ("size", 8),
            ("model_side", 0),
            ("variants", 1),
            ("batch_size", 1),
            ("top_k", 0),
            ("dataset_size", 1),
            ("seed", 0),
        ):
            v = getattr(self, name)
            if v is None and name in PRESET_FIELDS:
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise GalleryConfigError(f"{name} must be an integer >= {lo}, got {v!r}")
        if not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise GalleryConfigError(f"lr must be a positive number, got {self.lr!r}")
        fix("lr", float(self.lr))
        if self.init_sd is not None:
            if not isinstance(self.init_sd, (int, float)) or not self.init_sd >= 0:
                raise GalleryConfigError(f"init_sd must be a number >= 0, got {self.init_sd!r}")
            fix("init_sd", float(self.init_sd))
        if self.transforms not in TRANSFORMS:
            raise GalleryConfigError(
                f"transforms must be one of {', '.join(map(repr, TRANSFORMS))}; got "
                f"{self.transforms!r}"
            )
        if not isinstance(self.dataset, str) or not self.dataset:
            raise GalleryConfigError(
                f"dataset must be 'auto', 'none', 'builtin:photos', 'builtin:starter' or a "
                f".npz/.npy path, got {self.dataset!r}"
            )
        if self.dataset.startswith("builtin:"):  # a typo fails now, before any work
            from lucidax.models.photos import parse_builtin

            try:
                parse_builtin(self.dataset)
            except ValueError as e:
                raise GalleryConfigError(f"dataset: {e}") from None
        if self.num_processes is not None and (
            isinstance(self.num_processes, bool)
            or not isinstance(self.num_processes, int)
            or self.num_processes < 1
        ):
            raise GalleryConfigError(
                f"num_processes must be a positive integer, got {self.num_processes!r}"
            )
        if self.process_id is not None and (
            isinstance(self.process_id, bool)
            or not isinstance(self.process_id, int)
            or self.process_id < 0
        ):
            raise GalleryConfigError(
                f"process_id must be a non-negative integer, got {self.process_id!r}"
            )
        if not isinstance(self.shard_timeout, (int, float)) or self.shard_timeout <= 0:
            raise GalleryConfigError(
                f"shard_timeout must be a positive number of seconds, got {self.shard_timeout!r}"
            )

    def resolved(self, model_name: str | None = None) -> GalleryConfig:
        """This config with every unset (None) preset field filled from the preset of
        ``model_name`` (default ``self.model``); see :data:`PRESETS`."""
        preset = preset_for(model_name or self.model)
        if self.layers is not None:  # the user's layers: every unit unless units say otherwise
            preset["units"] = "all"
        fill = {k: v for k, v in preset.items() if getattr(self, k) is None}
        return dataclasses.replace(self, **fill) if fill else self

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


TRANSFORMS = ("standard", "none")

#: Fields that None leaves to the model's preset.
PRESET_FIELDS = ("layers", "units", "steps", "size", "model_side", "variants", "init_sd",
                 "batch_size")

#: 16 easily recognized ImageNet classes shown by default for EfficientNet-Lite (goldfish,
#: ostrich, flamingo, golden retriever, Egyptian cat, bee, balloon, basketball, cannon,
#: container ship, digital clock, golf ball, parachute, school bus, sports car, mushroom).
IMAGENET_SHOWCASE = (1, 9, 130, 207, 285, 309, 417, 430, 471, 510, 530, 574, 701, 779, 817, 947)

_GENERIC = {"layers": "all", "units": "all", "steps": 128, "size": 48, "model_side": 0,
            "variants": 2, "init_sd": default_init_sd("starter", rescue=True), "batch_size": 32}
_LITE = {
    "layers": "blocks.4,blocks.7,blocks.10,blocks.14,logits",
    "units": "0-7;logits=" + ",".join(map(str, IMAGENET_SHOWCASE)),
    "steps": 128, "size": 128, "model_side": 128, "variants": 1,
    "init_sd": default_init_sd("efficientnet_lite0", rescue=True),
    "batch_size": 16,
}
#: Per-model defaults of the ``PRESET_FIELDS`` (other models: the ``starter`` preset).
#: efficientnet_lite0's is sized for a 2-core CPU (48 units, ~6-9 minutes); ``layers="all"``
#: renders the whole network.
PRESETS: dict[str, dict[str, Any]] = {
    "starter": _GENERIC,
    "efficientnet_lite0": _LITE,
    "efficientnet_lite1": _LITE,
    "efficientnet_lite2": _LITE,
}


def preset_for(model_name: str) -> dict[str, Any]:
    """The :data:`PRESET_FIELDS` defaults of ``model_name`` (a copy)."""
    return dict(PRESETS.get(model_name, _GENERIC))


def parse_layer_units(
    spec: str | Sequence[int],
) -> tuple[tuple[int, ...] | None, dict[str, tuple[int, ...] | None]]:
    """``"0-7;logits=1,285"`` -> ``((0, ..., 7), {"logits": (1, 285)})``: the units of every
    layer not named, and per-layer units (each part as :func:`parse_units`). A spec made of
    layer parts only (``"logits=1,2"``) gives ``()`` for the rest (no units).

    Args:
      spec: the ``units`` setting: ``"all"``, ranges ``"0-15,20"``, per-layer parts after
        ``;`` (``"0-7;logits=1,285"``), or a sequence of non-negative ints.

    Returns:
      ``(default, per_layer)``: the units of the layers not named (None: every unit; ``()``:
      none) and ``{layer: units}`` (None: every unit of that layer).

    Raises:
      GalleryConfigError: for anything else (with what was wrong).

    Example:
      >>> from lucidax.gallery import parse_layer_units
      >>> parse_layer_units("0-3;logits=1,5")
      ((0, 1, 2, 3), {'logits': (1, 5)})
      >>> parse_layer_units("logits=1,2")
      ((), {'logits': (1, 2)})
    """
    if not isinstance(spec, str) or (";" not in spec and "=" not in spec):
        return parse_units(spec), {}
    default: tuple[int, ...] | None = ()
    per_layer: dict[str, tuple[int, ...] | None] = {}
    for i, part in enumerate(p.strip() for p in spec.split(";")):
        if not part:
            raise GalleryConfigError(f"units {spec!r}: empty part between ';'")
        if "=" in part:
            layer, _, units = (s.strip() for s in part.partition("="))
            if not layer or layer in per_layer:
                raise GalleryConfigError(
                    f"units {spec!r}: {'repeated' if layer else 'missing'} layer name in "
                    f"{part!r} (expected LAYER=UNITS)")
            per_layer[layer] = parse_units(units)
        elif i == 0:
            default = parse_units(part)
        else:
            raise GalleryConfigError(
                f"units {spec!r}: only the first part may omit LAYER= (got {part!r})")
    return default, per_layer


def parse_units(spec: str | Sequence[int]) -> tuple[int, ...] | None:
    """``"all"`` -> None; ``"0-3,7"`` -> ``(0, 1, 2, 3, 7)`` (sorted, unique); a sequence of
    non-negative ints -> the same, sorted (see :func:`lucidax.visualize.unit_list`).

    Args:
      spec: ``"all"``, comma-separated indices and ranges (``"0-15,20"``), or a sequence of
        non-negative ints.

    Returns:
      The units, sorted and unique, or None for ``"all"``.

    Raises:
      GalleryConfigError: for anything else (with what was wrong).

    Example:
      >>> from lucidax.gallery import parse_units
      >>> parse_units("0-3,7,2"), parse_units([5, 1, 1]), parse_units("all")
      ((0, 1, 2, 3, 7), (1, 5), None)
    """
    try:
        units = unit_list(spec)
    except ValueError as e:
        raise GalleryConfigError(str(e)) from None
    return None if units is None else tuple(sorted(units))
