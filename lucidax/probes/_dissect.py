"""Network dissection (Bau et al., CVPR 2017): which units are detectors of which concepts?

For every unit ``k`` of the dissected (convolutional) layers:

1. **Threshold.** ``T_k`` is the top-``quantile`` level of the unit's activations over every
   (image, spatial position) of the dataset, *before* upsampling (as NetDissect):
   ``T_k = np.quantile(a_k, 1 - quantile, method="inverted_cdf")``, so
   ``P(a_k > T_k) <= quantile`` (default 0.5%).
2. **Unit mask.** The activation map ``S_k(x)`` is upsampled (bilinear, half-pixel centres:
   ``jax.image.resize(..., "linear")``) to the size of the concept masks and thresholded:
   ``M_k(x) = S_k(x) >= T_k`` (the paper's rule), except when ``T_k`` is the unit's smallest
   activation over the dataset -- a sparse ReLU unit silent on more than ``1 - quantile`` of
   all positions has ``T_k = 0 = min`` -- where ``M_k(x) = S_k(x) > T_k``, so a unit's resting
   level never counts as firing (and a constant unit never fires). Both comparisons allow a
   relative slack of 1e-6 (a few float32 ulps) for the rounding of the interpolation, so a
   plateau of activations equal to ``T_k`` stays in (or out of) the mask after upsampling.
3. **Dataset-level IoU.** For each concept ``c`` with per-pixel masks ``L_c(x)``::

       IoU_{k,c} = sum_x |M_k(x) & L_c(x)| / sum_x |M_k(x) | L_c(x)|

   where, as in NetDissect, the sums run over the images *labeled for c's category*: the
   images that carry at least one concept of the same category (an image annotated with no
   colour at all says nothing about colour units). Images that are labeled but where ``c`` is
   absent still count: there ``L_c(x)`` is empty and the unit's firing there adds to the union.
   For the builtin starter data every image is labeled for every category (every image has a
   digit, a colour and a background), so every image counts for every concept.
4. **Detector.** Unit ``k`` is reported with its best concept ``argmax_c IoU_{k,c}``; it is a
   detector when that IoU is ``>= iou_threshold`` (default 0.04).

Memory stays bounded by one batch whatever the dataset size: the images are streamed through
jitted passes. The thresholds are found by an exact streamed *radix select* on the float32
bit patterns of the activations (mapped to order-preserving uint32 keys): pass 1 histograms
the top 12 bits of every key per unit (4096 bins), pass 2 the next 12 bits inside the bin
that holds the target rank, pass 3 the last 8 bits. After 3 passes ``T_k`` is exactly the
order statistic above; with ``quantile_passes=2`` it is the lower edge of a bin of relative
width < 2^-15 (``T_approx <= T_k``, ``T_k - T_approx < 2^-15 |T_k|``); with 1 pass the
relative width is < 2^-3. Histogram memory: ``units x 4096`` int32 per layer. A last pass
accumulates the intersection and union pixel counts per (unit, concept).

Concept sources (``source=`` of :func:`dissect`):

* :class:`StarterConcepts`: the builtin starter composites (concepts
  :func:`starter_concepts`: ``stroke``, ``digit=<k>``, ``color=<c>``, ``background=<b>``).
* :class:`FolderConcepts`: your own images with binary masks, laid out as::

      root/images/<name>.<ext>                 the images (any imageio-readable format)
      root/masks/<concept>/<name>.<ext>        a mask of <concept> for image <name>

  A mask pixel is in the concept when any of its channels is non-zero. Concept folders named
  ``<category>=<value>`` (e.g. ``color=red``) form the category ``<category>``; any other
  folder name is its own category. An image is labeled for a category when it has a mask
  file for at least one of the category's concepts (an all-black mask file means "labeled,
  concept absent"; a missing file means "not labeled"). Images and masks are resized (shorter
  side) and centre-cropped to ``size`` (default: the model's input side); masks are resized
  bilinearly and kept where >= 0.5.
* :class:`ArrayConcepts`: in-memory arrays ``images [N,H,W,C]``, ``masks [N,H,W,n_concepts]``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lucidax._batching import pad_batch, valid_mask
from lucidax.models import Model, normalize_layers, suggest
from lucidax.models.fastgrad import apply as fast_apply

#: a unit is "on" where its activation is in its top 0.5% over the dataset (the paper's
#: threshold; ``quantile=`` / ``--quantile``)
DEFAULT_QUANTILE = 0.005
#: a unit detects a concept when their masks' intersection over union reaches 0.04
#: (``iou_threshold=`` / ``--iou-threshold``)
DEFAULT_IOU_THRESHOLD = 0.04

# radix-select schedule over the 32 key bits: (shift, bits) per pass
_RADIX = ((20, 12), (8, 12), (0, 8))
_SIGN = 0x80000000
_REL_TOL = 1e-6  # comparisons of upsampled maps with T_k: a few float32 ulps of slack

# ----------------------------------------------------------------------------------------------
# jitted kernels
# ----------------------------------------------------------------------------------------------
def _ordered_key(x: jax.Array) -> jax.Array:
    """float32 -> uint32 with the same order (-0.0 is folded into +0.0)."""
    x = x.astype(jnp.float32)
    x = jnp.where(x == 0, jnp.float32(0.0), x)
    b = jax.lax.bitcast_convert_type(x, jnp.uint32)
    return jnp.where((b >> 31) == 1, ~b, b | jnp.uint32(_SIGN))


def _key_to_float(key: np.ndarray) -> np.ndarray:
    key = np.asarray(key, np.uint32)
    bits = np.where(key >> 31 == 1, key & np.uint32(0x7FFFFFFF), ~key).astype(np.uint32)
    return bits.view(np.float32)


def _hist_fn(model: Model, layers: tuple[str, ...], shift: int, bits: int):
    """jit(params, images, valid [B], prefix {layer: [K] uint32}) -> {layer: (int32 counts
    [K, 2^bits], float32 minimum [K])}; one program per architecture
    (:meth:`lucidax.models.Model.program`)."""
    return model.program(("probes.dissect.hist", layers, shift, bits),
                         lambda shell: _hist_body(shell, layers, shift, bits))


def _hist_body(model: Model, layers: tuple[str, ...], shift: int, bits: int):
    nbins = 1 << bits

    def fn(params, images, valid, prefix):
        acts = fast_apply(model, params, images, layers)
        out = {}
        for name in layers:
            a = acts[name]
            k = a.shape[-1]
            key = _ordered_key(a).reshape(a.shape[0], -1, k)  # [B, P, K]
            ok = jnp.broadcast_to(valid[:, None, None], key.shape)
            if shift + bits < 32:
                ok = ok & ((key >> (shift + bits)) == prefix[name][None, None, :])
            bucket = ((key >> shift) & jnp.uint32(nbins - 1)).astype(jnp.int32)
            idx = jnp.where(ok, bucket + jnp.arange(k, dtype=jnp.int32) * nbins, k * nbins)
            counts = jnp.bincount(idx.ravel(), length=k * nbins + 1)[:-1]
            low = jnp.where(valid[:, None, None, None], a.astype(jnp.float32), jnp.inf)
            out[name] = (counts.reshape(k, nbins).astype(jnp.int32), low.min(axis=(0, 1, 2)))
        return out

    return fn


def _iou_fn(model: Model, layers: tuple[str, ...], mask_hw: tuple[int, int]):
    """jit(params, images, valid [B], masks [B,H,W,C], labeled [B,C], thresholds, strict) ->
    per layer (inter [K, C], union [K, C], fired [K]) int32 sums over the batch; one program
    per architecture (:meth:`lucidax.models.Model.program`)."""
    return model.program(("probes.dissect.iou", layers, mask_hw),
                         lambda shell: _iou_body(shell, layers, mask_hw))


def _iou_body(model: Model, layers: tuple[str, ...], mask_hw: tuple[int, int]):
    def fn(params, images, valid, masks, labeled, thresholds, strict):
        acts = fast_apply(model, params, images, layers)
        lab = labeled.astype(jnp.int32)  # [B, C]
        lmask = masks.reshape(masks.shape[0], -1, masks.shape[-1]).astype(jnp.float32)
        lcount = lmask.sum(axis=1).astype(jnp.int32)  # [B, C]
        out = {}
        for name in layers:
            a = acts[name]
            b, _, _, k = a.shape
            up = jax.image.resize(a.astype(jnp.float32), (b, *mask_hw, k), "linear")
            t = thresholds[name]
            tol = _REL_TOL * jnp.abs(t)  # interpolation rounding: a plateau at T stays >= T
            m = jnp.where(strict[name], up > t + tol, up >= t - tol)
            m = m.reshape(b, -1, k).astype(jnp.float32)  # [B, P, K]
            inter = jnp.einsum("bpk,bpc->bkc", m, lmask,
                               precision=jax.lax.Precision.HIGHEST).astype(jnp.int32)
            mcount = m.sum(axis=1).astype(jnp.int32)  # [B, K]
            inter_t = jnp.einsum("bkc,bc->kc", inter, lab)
            union_t = (jnp.einsum("bk,bc->kc", mcount, lab)
                       + jnp.einsum("bc,bc->c", lcount, lab)[None, :] - inter_t)
            out[name] = (inter_t, union_t, jnp.where(valid[:, None], mcount, 0).sum(0))
        return out

    return fn


# ----------------------------------------------------------------------------------------------
# pass 1: thresholds; pass 2: IoU counts
# ----------------------------------------------------------------------------------------------
def _bar(progress: bool, total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="img", desc=desc, disable=not progress, leave=False)


def unit_thresholds(
    model: Model,
    source: Any,
    layers: Sequence[str],
    *,
    params: Any = None,
    quantile: float = DEFAULT_QUANTILE,
    passes: int = 3,
    batch_size: int = 32,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Per-unit top-``quantile`` levels ``{layer: float32 [K]}`` over every (image, position)
    of ``source`` (streamed radix select; exact with ``passes=3``, see module docs).

    Args:
      model: a :class:`lucidax.models.Model`.
      source: a concept source (e.g. :class:`StarterConcepts`) or images.
      layers: the layers.
      params: parameters (None: ``model.params``).
      quantile: the top share of (image, position) activations above the threshold.
      passes: radix-select passes (3: exact).
      batch_size: images per step.
      progress: show tqdm progress bars.

    Example:
      >>> import lucidax.models as lm
      >>> from lucidax.probes import StarterConcepts, unit_thresholds
      >>> t = unit_thresholds(lm.load("starter"), StarterConcepts(n=16), ["conv2"])
      >>> t["conv2"].shape, t["conv2"].dtype
      ((32,), dtype('float32'))
    """
    return _thresholds(model, source, tuple(layers), params, quantile, passes, batch_size,
                       progress)[0]


def _thresholds(model, source, layers, params, quantile, passes, batch_size, progress):
    """(thresholds {layer: [K]}, minimum {layer: [K]})."""
    _check_quantile(quantile)
    if passes not in (1, 2, 3):
        raise ValueError(f"quantile_passes must be 1, 2 or 3 (3 is exact); got {passes!r}")
    params = model.params if params is None else params
    minimum = {name: np.full(model.channels(name), np.inf, np.float32) for name in layers}
    prefix = {name: np.zeros(model.channels(name), np.uint32) for name in layers}
    rank: dict[str, np.ndarray] = {}
    for p, (shift, bits) in enumerate(_RADIX[:passes]):
        fn = _hist_fn(model, layers, shift, bits)
        counts = {name: np.zeros((model.channels(name), 1 << bits), np.int64) for name in layers}
        n_img, positions = 0, {}
        bar = _bar(progress, source.n, f"thresholds {p + 1}/{passes}")
        for batch in source.batches(batch_size, masks=False):
            nb = batch.images.shape[0]
            res = fn(params, pad_batch(batch.images, batch_size, fill="zeros"),
                     valid_mask(nb, batch_size), {k: jnp.asarray(v) for k, v in prefix.items()})
            for name in layers:
                counts[name] += np.asarray(res[name][0], np.int64)
                minimum[name] = np.minimum(minimum[name], np.asarray(res[name][1]))
            n_img += nb
            bar.update(nb)
        bar.close()
        if n_img == 0:
            raise ValueError("the concept source yielded no images")
        for name in layers:
            c = counts[name]
            if p == 0:
                total = int(c[0].sum())
                positions[name] = total
                r = max(1, min(total, math.ceil(total * (1.0 - quantile))))
                rank[name] = np.full(c.shape[0], r, np.int64)
            cs = np.cumsum(c, axis=1)
            b = np.argmax(cs >= rank[name][:, None], axis=1)
            rank[name] = rank[name] - (cs[np.arange(len(b)), b] - c[np.arange(len(b)), b])
            prefix[name] = ((prefix[name].astype(np.uint64) << np.uint64(bits))
                            | b.astype(np.uint64)).astype(np.uint32)
    rest = 32 - sum(bits for _, bits in _RADIX[:passes])
    out = {}
    for name in layers:
        key = (prefix[name].astype(np.uint64) << np.uint64(rest)).astype(np.uint32)
        out[name] = _key_to_float(key)
    return out, minimum


def _same_bin(threshold: np.ndarray, minimum: np.ndarray, passes: int) -> np.ndarray:
    """Whether ``minimum`` lies in the radix bin whose lower edge is ``threshold``."""
    rest = 32 - sum(bits for _, bits in _RADIX[:passes])
    key = np.asarray(_ordered_key(jnp.asarray(minimum)))
    edge = np.asarray(_ordered_key(jnp.asarray(threshold)))
    return (key >> rest) == (edge >> rest)


def _check_quantile(quantile: float) -> None:
    if not (isinstance(quantile, int | float) and 0.0 < float(quantile) < 1.0):
        raise ValueError(f"quantile must be in (0, 1) (0.005 = top 0.5%); got {quantile!r}")


def _count_pass(model, source, layers, thresholds, strict, params, batch_size, progress):
    c = len(source.concepts)
    fn = _iou_fn(model, tuple(layers), tuple(source.mask_size))
    inter = {n: np.zeros((model.channels(n), c), np.int64) for n in layers}
    union = {n: np.zeros((model.channels(n), c), np.int64) for n in layers}
    fired = {n: np.zeros(model.channels(n), np.int64) for n in layers}
    th = {n: jnp.asarray(thresholds[n], jnp.float32) for n in layers}
    st = {n: jnp.asarray(strict[n], bool) for n in layers}
    bar = _bar(progress, source.n, "IoU")
    pixels = 0
    for batch in source.batches(batch_size, masks=True):
        nb = batch.images.shape[0]
        if tuple(batch.masks.shape[1:3]) != tuple(source.mask_size):
            raise ValueError(f"mask size {batch.masks.shape[1:3]} != {source.mask_size}")
        # padded rows are unlabeled and not valid: they never count
        res = fn(params, pad_batch(batch.images, batch_size, fill="zeros"),
                 valid_mask(nb, batch_size), pad_batch(batch.masks, batch_size, fill="zeros"),
                 pad_batch(batch.labeled, batch_size, fill="zeros"), th, st)
        for n in layers:
            i, u, f = res[n]
            inter[n] += np.asarray(i, np.int64)
            union[n] += np.asarray(u, np.int64)
            fired[n] += np.asarray(f, np.int64)
        pixels += nb * int(np.prod(source.mask_size))
        bar.update(nb)
    bar.close()
    return inter, union, fired, pixels


def iou_counts(unit_masks: Any, concept_masks: Any, labeled: Any = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dataset-level ``(intersection [K, C], union [K, C], IoU [K, C])`` of binary masks.

    Args:
      unit_masks: bool ``[N, H, W, K]`` (``M_k(x)``).
      concept_masks: bool ``[N, H, W, C]`` (``L_c(x)``).
      labeled: bool ``[N, C]``: images counted for each concept (default: all).

    The same arithmetic as the dissection's last pass: sums over the counted images of
    ``|M & L|`` and ``|M | L|``; IoU is 0 where the union is empty.

    Example:
      >>> import numpy as np
      >>> from lucidax.probes import iou_counts
      >>> unit = np.zeros((1, 4, 4, 1), bool); unit[0, :2, :, 0] = True     # top half
      >>> concept = np.zeros((1, 4, 4, 1), bool); concept[0, :, :2, 0] = True  # left half
      >>> inter, union, iou = iou_counts(unit, concept)
      >>> int(inter[0, 0]), int(union[0, 0]), round(float(iou[0, 0]), 3)
      (4, 12, 0.333)
    """
    m = np.asarray(unit_masks).astype(bool)
    lm = np.asarray(concept_masks).astype(bool)
    if m.ndim != 4 or lm.ndim != 4 or m.shape[:3] != lm.shape[:3]:
        raise ValueError(f"unit_masks [N,H,W,K] and concept_masks [N,H,W,C] must share N, H, W;"
                         f" got {m.shape} and {lm.shape}")
    lab = np.ones((m.shape[0], lm.shape[-1]), bool) if labeled is None else \
        np.asarray(labeled).astype(bool)
    inter_b = np.einsum("bpk,bpc->bkc", m.reshape(m.shape[0], -1, m.shape[-1]).astype(np.int64),
                        lm.reshape(lm.shape[0], -1, lm.shape[-1]).astype(np.int64))
    mc = m.sum(axis=(1, 2)).astype(np.int64)
    lc = lm.sum(axis=(1, 2)).astype(np.int64)
    inter = np.einsum("bkc,bc->kc", inter_b, lab.astype(np.int64))
    union = (np.einsum("bk,bc->kc", mc, lab.astype(np.int64))
             + (lc * lab).sum(0)[None, :] - inter)
    return inter, union, _safe_iou(inter, union)


def _safe_iou(inter: np.ndarray, union: np.ndarray) -> np.ndarray:
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


# ----------------------------------------------------------------------------------------------
# results
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class UnitDissection:
    """One unit: its best concept and IoU, its threshold, whether it is a detector.

    ``coverage`` is the share of (counted) mask pixels where the unit's upsampled map
    exceeds its threshold (about ``quantile`` unless upsampling spreads or thins it).

    Attributes:
      layer: the unit's layer.
      unit: its channel index.
      concept: its best concept (highest IoU), and ``category`` that concept's category.
      iou: the IoU of that concept.
      threshold: the unit's top-quantile activation level.
      detector: whether ``iou`` reaches the dissection's ``iou_threshold``.
      coverage: see above.

    Example:
      >>> import lucidax.models as lm
      >>> from lucidax.probes import StarterConcepts, dissect
      >>> model = lm.load("starter")
      >>> result = dissect(model, StarterConcepts(n=32), layers="conv3")
      >>> u = result.units[0]
      >>> u.layer, u.unit, u.concept in result.concepts, isinstance(u.detector, bool)
      ('conv3', 0, True, True)
    """

    layer: str
    unit: int
    concept: str
    category: str
    iou: float
    threshold: float
    detector: bool
    coverage: float


@dataclasses.dataclass(frozen=True, eq=False)
class Dissection:
    """The dissection of some layers of a model.

    Attributes:
      model: model name.
      layers: dissected layers (forward order).
      concepts / categories: the concepts (and their categories) units were compared with.
      units: one :class:`UnitDissection` per (layer, unit).
      iou: ``{layer: float64 [K, n_concepts]}`` every IoU.
      thresholds: ``{layer: float32 [K]}``.
      quantile, iou_threshold, quantile_passes: the settings.
      n_images: images used; data: description of the concept source.
      skipped_layers: ``{layer: why}`` for layers of ``"all"`` that cannot be dissected.

    Example:
      >>> import lucidax.models as lm
      >>> from lucidax.probes import StarterConcepts, dissect
      >>> model = lm.load("starter")
      >>> result = dissect(model, StarterConcepts(n=32), layers="conv3")
      >>> result.layers, result.iou["conv3"].shape[1] == len(result.concepts)
      (('conv3',), True)
    """

    model: str
    layers: tuple[str, ...]
    concepts: tuple[str, ...]
    categories: tuple[str, ...]
    units: tuple[UnitDissection, ...]
    iou: Mapping[str, np.ndarray]
    thresholds: Mapping[str, np.ndarray]
    quantile: float
    iou_threshold: float
    quantile_passes: int
    n_images: int
    data: str
    skipped_layers: Mapping[str, str]

    def unit(self, layer: str, unit: int) -> UnitDissection:
        if layer not in self.layers:
            raise KeyError(suggest(layer, self.layers, what="layer"))
        for u in self.units:
            if u.layer == layer and u.unit == unit:
                return u
        raise IndexError(f"layer {layer!r} has units 0..{len(self.thresholds[layer]) - 1}; "
                         f"got {unit!r}")

    def detectors(self, layer: str | None = None) -> tuple[UnitDissection, ...]:
        """Detector units (of ``layer``, or of every layer), best IoU first."""
        if layer is not None and layer not in self.layers:
            raise KeyError(suggest(layer, self.layers, what="layer"))
        out = [u for u in self.units if u.detector and (layer is None or u.layer == layer)]
        return tuple(sorted(out, key=lambda u: -u.iou))

    def summary(self) -> dict[str, dict[str, int]]:
        """``{layer: {concept: number of detector units}}`` (concepts with >= 1 detector)."""
        out: dict[str, dict[str, int]] = {name: {} for name in self.layers}
        for u in self.units:
            if u.detector:
                out[u.layer][u.concept] = out[u.layer].get(u.concept, 0) + 1
        return {k: dict(sorted(v.items(), key=lambda kv: (-kv[1], kv[0])))
                for k, v in out.items()}

    def category_summary(self) -> dict[str, dict[str, int]]:
        """``{layer: {category: number of detector units}}``."""
        cat = dict(zip(self.concepts, self.categories, strict=True))
        out: dict[str, dict[str, int]] = {}
        for layer, d in self.summary().items():
            acc: dict[str, int] = {}
            for concept, n in d.items():
                acc[cat[concept]] = acc.get(cat[concept], 0) + n
            out[layer] = acc
        return out

    def to_dict(self, *, all_ious: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "model": self.model, "data": self.data, "n_images": self.n_images,
            "quantile": self.quantile, "iou_threshold": self.iou_threshold,
            "quantile_passes": self.quantile_passes, "layers": list(self.layers),
            "units_per_layer": {n: int(len(self.thresholds[n])) for n in self.layers},
            "skipped_layers": dict(self.skipped_layers),
            "concepts": list(self.concepts), "categories": list(self.categories),
            "detectors_per_layer": {n: len(self.detectors(n)) for n in self.layers},
            "summary": self.summary(), "category_summary": self.category_summary(),
            "units": [dataclasses.asdict(u) for u in self.units],
        }
        if all_ious:
            d["iou"] = {n: np.round(self.iou[n], 6).tolist() for n in self.layers}
        return d


def _default_layers(model: Model) -> tuple[tuple[str, ...], dict[str, str]]:
    keep, skipped = [], {}
    for n in model.layer_names:
        info = model.layers[n]
        if info.pre_relu or n.endswith("_pre_relu"):
            continue
        if info.kind != "conv":
            skipped[n] = f"{info.kind} layer: no spatial map to segment"
            continue
        keep.append(n)
    return tuple(keep), skipped


def _resolve_layers(model: Model, layers: Any) -> tuple[tuple[str, ...], dict[str, str]]:
    conv = [n for n in model.layer_names if model.layers[n].kind == "conv"]
    if layers is None or (isinstance(layers, str) and layers == "all"):
        keep, skipped = _default_layers(model)
        if not keep:
            raise ValueError(f"model {model.name!r} has no convolutional layer to dissect")
        return keep, skipped
    names = normalize_layers(layers, model.layer_names)
    bad = [n for n in names if model.layers[n].kind != "conv"]
    if bad:
        raise ValueError(
            f"cannot dissect {bad}: {model.layers[bad[0]].kind} layers have no spatial map. "
            f"Layers with spatial maps: {', '.join(conv)}")
    return tuple(sorted(names, key=model.layer_names.index)), {}


def _check_memory(model: Model, source: Any, names: tuple[str, ...], batch_size: int) -> None:
    """Refuse a dissection whose batches cannot fit in memory (``lucidax._memory``): a
    batch through the model (as a feature extraction), its units' maps upsampled to the mask
    size (float and mask, 8 bytes a value) and the batch's concept masks (4 bytes a value)."""
    from lucidax._memory import check_memory, estimate_extraction

    mh, mw = (int(v) for v in source.mask_size)
    need = estimate_extraction(model, names, batch=batch_size, side=max(mh, mw))
    if need is None:
        return
    units = sum(model.layers[n].channels for n in names)
    need += batch_size * mh * mw * (8 * units + 4 * len(source.concepts))
    check_memory(need, f"dissecting {len(names)} layer{'s' * (len(names) != 1)} with masks "
                       f"of {mh}x{mw} px ({batch_size} images at once)",
                 hint="lower --batch-size or --size, or dissect fewer layers")


def dissect(
    model: Model,
    source: Any,
    *,
    layers: str | Sequence[str] = "all",
    params: Any = None,
    quantile: float = DEFAULT_QUANTILE,
    iou_threshold: float = DEFAULT_IOU_THRESHOLD,
    quantile_passes: int = 3,
    batch_size: int = 32,
    progress: bool = False,
    memory_check: bool = True,
) -> Dissection:
    """Dissect ``layers`` of ``model`` against the concepts of ``source`` (see module docs).

    Args:
      model: any :class:`~lucidax.models.Model` (zoo, starter, ``wrap``-ped).
      source: :class:`StarterConcepts`, :class:`FolderConcepts`, :class:`ArrayConcepts` (or
        anything with ``n``, ``concepts``, ``categories``, ``mask_size``, ``description``
        and ``batches(batch_size, masks=bool)``).
      layers: ``"all"`` (every conv layer except ``*_pre_relu``; dense layers are skipped and
        listed in ``skipped_layers``) or names; naming a dense layer is an error.
      params: parameters (default ``model.params``).
      quantile: top quantile of activations that forms a unit's mask (0.005 = 0.5%).
      iou_threshold: a unit is a detector of its best concept when IoU >= this.
      quantile_passes: 3 (exact thresholds), 2 (relative error < 2^-15) or 1 (< 2^-3).
      batch_size: images per jitted step (the last batch is zero-padded, never counted).
      memory_check: raise ``lucidax._memory.InsufficientMemoryError`` (a ValueError)
        before any pass over the data when a batch's estimated memory need exceeds the
        available memory; False: try anyway.
      progress: show tqdm progress bars.

    Returns:
      A :class:`Dissection`.

    Example:
      >>> import lucidax.models as lm
      >>> from lucidax.probes import StarterConcepts, dissect
      >>> model = lm.load("starter")
      >>> result = dissect(model, StarterConcepts(n=32), layers="conv3")
      >>> len(result.units), result.thresholds["conv3"].shape
      (64, (64,))
    """
    _check_quantile(quantile)
    if not (isinstance(iou_threshold, int | float) and 0.0 <= iou_threshold <= 1.0):
        raise ValueError(f"iou_threshold must be in [0, 1]; got {iou_threshold!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
    names, skipped = _resolve_layers(model, layers)
    params = model.params if params is None else params
    if memory_check:
        _check_memory(model, source, names, batch_size)
    thresholds, minimum = _thresholds(model, source, names, params, quantile, quantile_passes,
                                      batch_size, progress)
    # the exact threshold equals the minimum only at the unit's resting level; with fewer
    # passes the lower bin edge can sit just below it
    strict = {n: thresholds[n] <= minimum[n] if quantile_passes == 3 else
              _same_bin(thresholds[n], minimum[n], quantile_passes) for n in names}
    inter, union, fired, pixels = _count_pass(model, source, names, thresholds, strict, params,
                                              batch_size, progress)
    units, ious = [], {}
    for n in names:
        iou = _safe_iou(inter[n], union[n])
        ious[n] = iou
        best = np.argmax(iou, axis=1)
        for k, c in enumerate(best):
            v = float(iou[k, c])
            units.append(UnitDissection(
                layer=n, unit=k, concept=source.concepts[c], category=source.categories[c],
                iou=v, threshold=float(thresholds[n][k]), detector=bool(v >= iou_threshold),
                coverage=float(fired[n][k]) / max(pixels, 1)))
    return Dissection(
        model=model.name, layers=names, concepts=tuple(source.concepts),
        categories=tuple(source.categories), units=tuple(units), iou=ious,
        thresholds=thresholds, quantile=float(quantile), iou_threshold=float(iou_threshold),
        quantile_passes=int(quantile_passes), n_images=int(source.n),
        data=str(source.description), skipped_layers=skipped)


# ----------------------------------------------------------------------------------------------
# files, plot, table
