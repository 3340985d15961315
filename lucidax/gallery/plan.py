"""``plan_gallery``: what a gallery run would make, without rendering anything (``--dry-run``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from .build import _resolve_layers, _resolve_units
from .config import GalleryConfig
from .manifest import MANIFEST, read_manifest

__all__ = ["GalleryPlan", "plan_gallery"]


@dataclasses.dataclass(frozen=True)
class GalleryPlan:
    """The units a :class:`GalleryConfig` resolves to on its model (nothing is rendered).

    Attributes:
      config: the config with every preset field filled in for the model.
      model: the model's registry name.
      layer_units: ``{layer: units}`` in rendering order.
      done: units with an entry in an existing ``<out>/manifest.json`` (made with any
        settings: a resumed run skips those whose settings match).
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
            lines.append(f"  {self.done} units already in {Path(c.out) / MANIFEST}")
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
    and writes nothing.
    """
    if not isinstance(config, GalleryConfig):
        raise TypeError(f"plan_gallery takes a GalleryConfig, got {type(config).__name__}")
    if model is None:
        from lucidax.models import load

        model = load(config.model, config.weights)
    config = config.resolved(model.name)
    layers = _resolve_layers(model, config.layers)
    layer_units = _resolve_units(model, layers, config.units)
    manifest = read_manifest(Path(config.out) / MANIFEST) or {}
    done = sum(len(units) for units in manifest.get("units", {}).values()
               if isinstance(units, dict))
    return GalleryPlan(config=config, model=model.name, layer_units=layer_units, done=done)
