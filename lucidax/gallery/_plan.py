"""What a gallery renders: layers and units resolved on the model, the global batch plan,
layer folders, and ``plan_gallery`` (``--dry-run``: nothing is rendered)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._config import GalleryConfig, GalleryConfigError, parse_layer_units
from ._io import safe_name
from ._manifest import MANIFEST, read_out_manifest

__all__ = ["GalleryPlan", "batch_costs", "layer_costs", "lpt_assign", "lpt_order",
           "measured_batch_s", "plan_batches", "plan_costs", "plan_gallery"]


@dataclasses.dataclass(frozen=True)
class _Batch:
    index: int  # position in the global plan
    layer: str
    units: tuple[int, ...]  # real units
    width: int  # padded number of units (same for every batch of the layer)


def plan_batches(layer_units: dict[str, Sequence[int]], batch_size: int) -> list[_Batch]:
    """Global, deterministic plan: each layer's units cut into batches of
    ``min(batch_size, n_units_of_layer)`` (the last one padded to that width).

    Args:
      layer_units: ``{layer: units}`` in rendering order (layers without units are skipped).
      batch_size: the most units per batch.

    Returns:
      The batches in plan order, each with ``index`` (its position in the plan), ``layer``,
      ``units`` (the real units) and ``width`` (the padded number of units, the same for
      every batch of a layer: one compiled program per layer).
    :rtype: list

    Example:
      >>> from lucidax.gallery import plan_batches
      >>> batches = plan_batches({"conv1": range(5), "logits": [1, 2]}, batch_size=2)
      >>> [(b.layer, b.units, b.width) for b in batches]
      [('conv1', (0, 1), 2), ('conv1', (2, 3), 2), ('conv1', (4,), 2), ('logits', (1, 2), 2)]
    """
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
# cost of a batch, and the order work is handed out in (uneven layers: a deep layer's batch
# costs many times an early one's)


def layer_costs(model, objective: dict[str, str], side: int) -> dict[str, float]:
    """Estimated relative cost of one image's render step for units of each layer:
    ``{layer: floats of every activation up to its objective layer + the input}`` at
    ``side`` px (forward and backward passes scale with them). ``objective`` maps a layer to
    the layer its render maximizes (its pre-ReLU twin, say). 1.0 for every layer when the
    model's shapes cannot be computed (one abstract trace; nothing is allocated)."""
    from lucidax._memory import _layer_floats

    floats = _layer_floats(model, list(dict.fromkeys(objective.values())), side)
    if not floats:
        return dict.fromkeys(objective, 1.0)
    base = float(side * side * model.input_spec.channels)
    cum, total = {}, base
    for name in model.layer_names:  # running sum in the model's order
        if name in floats:
            total += floats[name]
            cum[name] = total
    return {layer: cum.get(obj, total) for layer, obj in objective.items()}


def batch_costs(batches: Sequence[_Batch], per_image: dict[str, float], *, variants: int = 1,
                measured: dict[str, float] | None = None) -> dict[int, float]:
    """``{batch index: cost}``. Estimated: ``per_image[layer] x width x variants`` (a batch
    costs its padded width). ``measured`` (``{layer: seconds per batch}``, e.g. from the
    ``time_s`` of a resumed gallery's entries) replaces the estimate of its layers; the other
    layers' estimates are then put in seconds by the median measured/estimated ratio."""
    est = {b.index: per_image.get(b.layer, 1.0) * b.width * variants for b in batches}
    measured = {k: v for k, v in (measured or {}).items() if v and v > 0}
    if not measured:
        return est
    ratios = sorted(measured[b.layer] / est[b.index] for b in batches
                    if b.layer in measured and est[b.index] > 0)
    scale = ratios[len(ratios) // 2] if ratios else 1.0
    return {b.index: measured[b.layer] if b.layer in measured else est[b.index] * scale
            for b in batches}


def measured_batch_s(entries: dict[str, dict[str, Any]], widths: dict[str, int]
                     ) -> dict[str, float]:
    """``{layer: seconds per batch}`` from finished entries' ``time_s`` (seconds per unit
    of their batch): the median over the layer's entries times the layer's batch width."""
    out = {}
    for layer, us in entries.items():
        ts = sorted(float(e["time_s"]) for e in us.values()
                    if isinstance(e, dict) and isinstance(e.get("time_s"), (int, float))
                    and e["time_s"] > 0)
        if ts and layer in widths:
            out[layer] = ts[len(ts) // 2] * widths[layer]
    return out


def plan_costs(config: GalleryConfig, model, batches: Sequence[_Batch],
               known: dict[str, dict[str, Any]] | None = None) -> dict[int, float]:
    """:func:`batch_costs` of ``batches`` for a resolved ``config``: estimated from the
    model's shapes at the side it sees, measured where ``known`` (a resumed gallery's
    entries) timed the layer."""
    from ._renderer import _objective_layer

    layers = list(dict.fromkeys(b.layer for b in batches))
    if not layers:
        return {}
    side = config.size + (12 if config.transforms != "none" else 0)
    target = config.model_side or model.input_spec.side
    side = max(side, int(target)) if target else side
    per_image = layer_costs(model, {k: _objective_layer(model, k, config) for k in layers}, side)
    widths = {b.layer: b.width for b in batches}
    measured = measured_batch_s({k: v for k, v in (known or {}).items() if k in widths}, widths)
    return batch_costs(batches, per_image, variants=config.variants, measured=measured)


def lpt_order(batches: Sequence[_Batch], costs: dict[int, float]) -> list[_Batch]:
    """Longest-processing-time first (ties: plan order). Handed out one at a time to
    whichever process is free, the last batch to start is the cheapest, so the processes
    finish within one (small) batch of each other."""
    return sorted(batches, key=lambda b: (-costs.get(b.index, 0.0), b.index))


def lpt_assign(batches: Sequence[_Batch], costs: dict[int, float],
               nproc: int) -> list[list[_Batch]]:
    """Static LPT: each batch, most costly first, to the least-loaded process (ties: the
    lowest id). The shares of a schedule without a shared queue."""
    load = [0.0] * nproc
    out: list[list[_Batch]] = [[] for _ in range(nproc)]
    for b in lpt_order(batches, costs):
        p = min(range(nproc), key=lambda i: (load[i], i))
        load[p] += costs.get(b.index, 0.0)
        out[p].append(b)
    return out


def _resolve_layers(model, spec: str | tuple[str, ...]) -> tuple[str, ...]:
    from lucidax.models import normalize_layers

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
class GalleryPlan:
    """The units a :class:`GalleryConfig` resolves to on its model (nothing is rendered).

    Attributes:
      config: the config with every preset field filled in for the model.
      model: the model's registry name.
      layer_units: ``{layer: units}`` in rendering order.
      done: units with an entry in an existing ``<out>/manifest.json`` (made with any
        settings: a resumed run skips those whose settings match).
      units: the number of units to render, all layers together.

    Example:
      >>> from lucidax.gallery import GalleryConfig, plan_gallery
      >>> plan = plan_gallery(GalleryConfig(model="starter", layers="conv1,logits", units="0-3"))
      >>> plan.model, plan.layer_units, plan.units, plan.done
      ('starter', {'conv1': (0, 1, 2, 3), 'logits': (0, 1, 2, 3)}, 8, 0)
      >>> plan.config.steps  # the preset's, filled in
      128
    """

    config: GalleryConfig
    model: str
    layer_units: dict[str, tuple[int, ...]]
    done: int = 0

    @property
    def units(self) -> int:
        return sum(len(u) for u in self.layer_units.values())

    def summary(self) -> str:
        """A few lines for the terminal."""
        c = self.config
        seen = f"seen at {c.model_side} px" if c.model_side else "seen at the model's side"
        lines = [f"gallery plan: {self.model}, {self.units} units in {len(self.layer_units)} "
                 f"layers -> {c.out}/"]
        width = max((len(layer) for layer in self.layer_units), default=0)
        for layer, units in self.layer_units.items():
            lines.append(f"  {layer:<{width}}  {len(units):>5} units ({_ranges(units)})")
        examples = (f"top {c.top_k} of {c.dataset_size} images of {c.dataset}"
                    if c.top_k and c.dataset != "none" else "no dataset examples")
        lines.append(f"  {c.steps} steps, {c.size} px ({seen}), {c.variants} variant(s) per "
                     f"unit, {c.batch_size} units per batch; {examples}")
        if self.done:
            lines.append(f"  {self.done} units already in {_where(c.out)}")
        return "\n".join(lines)


def _ranges(units: tuple[int, ...]) -> str:
    """``(0, 1, 2, 5)`` -> ``"0-2, 5"``."""
    parts: list[str] = []
    start = prev = None
    for u in sorted(units):
        if prev is not None and u == prev + 1:
            prev = u
            continue
        if start is not None:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = u
    if start is not None:
        parts.append(str(start) if start == prev else f"{start}-{prev}")
    return ", ".join(parts)


def plan_gallery(config: GalleryConfig, *, model: Any = None) -> GalleryPlan:
    """Resolve ``config`` on its model (loaded unless given) into the units it would render.

    Raises the same errors as :func:`build_gallery` for unknown layers or units out of range,
    and writes nothing (what ``lucidax gallery --dry-run`` prints).

    Args:
      config: the :class:`GalleryConfig` to resolve.
      model: a :class:`lucidax.models.Model` to resolve it on instead of loading
        ``config.model`` (with ``config.weights``).

    Returns:
      A :class:`GalleryPlan`: the config with its preset filled in and the units per layer.

    Raises:
      GalleryConfigError: unknown layers or units out of range.
      TypeError: ``config`` is not a :class:`GalleryConfig`.

    Example:
      >>> from lucidax.gallery import GalleryConfig, plan_gallery
      >>> plan = plan_gallery(GalleryConfig(model="starter", layers="conv3", units="0-15"))
      >>> print(plan.summary())
      gallery plan: starter, 16 units in 1 layers -> gallery/
        conv3     16 units (0-15)
        128 steps, 48 px (seen at the model's side), 2 variant(s) per unit, ...
    """
    if not isinstance(config, GalleryConfig):
        raise TypeError(f"plan_gallery takes a GalleryConfig, got {type(config).__name__}")
    if model is None:
        from lucidax.models import load

        model = load(config.model, config.weights)
    config = config.resolved(model.name)
    layers = _resolve_layers(model, config.layers)
    layer_units = _resolve_units(model, layers, config.units)
    manifest = read_out_manifest(config.out) or {}  # a folder or a URL
    done = sum(len(units) for units in manifest.get("units", {}).values()
               if isinstance(units, dict))
    return GalleryPlan(config=config, model=model.name, layer_units=layer_units, done=done)


def _where(out: str) -> str:
    """Where ``out``'s manifest is, for the user (a URL stays a URL)."""
    from lucidax._storage import is_url

    return f"{out.rstrip('/')}/{MANIFEST}" if is_url(out) else str(Path(out) / MANIFEST)
