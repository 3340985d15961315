"""The static HTML site, written from the merged manifest alone.

Pages are Jinja2 templates (``lucidax/gallery/templates``) rendered with autoescape on: every
user-provided string (model, layer and label names, file names, JSON and CSV contents) is
escaped by the template engine; every link target goes through :func:`href`
(:func:`urllib.parse.quote` per path part); every written path through
:func:`lucidax.gallery.safe_path`.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2

from lucidax.visualize import describe_silence

from ._io import atomic_write_text, safe_path
from ._layout import grid_layout, sheet_layout, sheet_position

__all__ = ["ANALYSES", "analysis_dirs", "write_site"]

ANALYSES = ("probes", "tcav", "dissect", "invert", "attribution", "concepts")
_MAX_ROWS = 200
_MAX_PRE = 20_000


def href(*parts: Any) -> str:
    """A relative link: each path part percent-quoted, joined with ``/``."""
    return "/".join(quote(str(p)) for p in parts)


@functools.cache
def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("lucidax.gallery", "templates"),
        autoescape=True,  # every {{ value }} is HTML-escaped, in every template
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        keep_trailing_newline=True,
    )
    env.globals["href"] = href
    return env


def _render(template: str, **context: Any) -> str:
    return _env().get_template(template).render(**context)


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        if not math.isfinite(x):
            return str(x)
        return f"{x:.{digits}g}"
    return str(x)


def analysis_dirs(out: Path) -> list[str]:
    """Names in :data:`ANALYSES` that are real folders inside ``out`` holding result files."""
    found = []
    root = out.resolve()
    for name in ANALYSES:
        d = out / name
        if d.is_dir() and not d.is_symlink() and root in d.resolve().parents:
            if any(_analysis_files(out, name)) or _own_index(out, name) is not None:
                found.append(name)
    return found


def _own_index(out: Path, name: str) -> Path | None:
    """``<name>/index.html`` when the analysis wrote its own page (e.g. ``lucidax attribute
    --out <gallery>/attribution``) and it is a real file inside ``out``."""
    p = out / name / "index.html"
    if p.is_file() and not p.is_symlink() and out.resolve() in p.resolve().parents:
        return p
    return None


_FIGURES = (".png", ".svg", ".jpg", ".jpeg")


def _is_internal(rel: Path) -> bool:
    """A file inside a cache folder (``tcav/cache``, ``probes/feature-cache``, ...) or a hidden
    one: an analysis' internals, never one of its results."""
    return any(
        part.startswith((".", "_")) or part.lower() == "cache"
        or part.lower().endswith(("-cache", "_cache"))
        for part in rel.parts[:-1]
    ) or rel.name.startswith(".")


def _analysis_files(out: Path, name: str) -> list[Path]:
    """The result files of ``out/<name>`` (2 levels deep at most, caches left out) in page
    order: top-level files before those of subfolders; at each level the figures, then the
    tables (CSV), then the other results (JSON), alphabetical within each."""
    root = out.resolve()
    d = out / name
    files = []
    for p in sorted(d.rglob("*")):
        rel = p.relative_to(d)
        if len(rel.parts) > 2 or not p.is_file() or _is_internal(rel):
            continue
        if p.suffix.lower() not in (".json", ".csv", *_FIGURES):
            continue
        if root not in p.resolve().parents:  # a link pointing outside: never read it
            continue
        files.append(p)

    def order(p: Path) -> tuple:
        suffix = p.suffix.lower()
        kind = 0 if suffix in _FIGURES else 1 if suffix == ".csv" else 2
        return (len(p.relative_to(d).parts), kind, p.relative_to(d).as_posix())

    return sorted(files, key=order)


def _json_view(obj: Any) -> dict[str, Any]:
    """How a JSON result is shown: a key/value table, a table of records, or the text."""
    if isinstance(obj, dict) and obj and all(not isinstance(v, (dict, list)) for v in obj.values()):
        return {"kind": "pairs", "rows": [(k, _fmt(v)) for k, v in obj.items()]}
    if (
        isinstance(obj, list)
        and obj
        and all(isinstance(r, dict) for r in obj)
        and all(not isinstance(v, (dict, list)) for r in obj for v in r.values())
    ):
        cols: list[str] = []
        for r in obj:
            cols.extend(k for k in r if k not in cols)
        rows = [[_fmt(r.get(c)) for c in cols] for r in obj[:_MAX_ROWS]]
        return {"kind": "records", "cols": cols, "rows": rows,
                "more": max(0, len(obj) - _MAX_ROWS)}
    text = json.dumps(obj, indent=1, ensure_ascii=False)
    if len(text) > _MAX_PRE:
        text = text[:_MAX_PRE] + "\n..."
    return {"kind": "text", "text": text}


def _analysis_page(out: Path, name: str, analyses: list[str]) -> str:
    files = _analysis_files(out, name)
    shown = set(files)
    views = []
    for p in files:
        rel = p.relative_to(out)
        suffix = p.suffix.lower()
        if suffix == ".svg" and p.with_suffix(".png") in shown:  # linked from its PNG twin
            continue
        svg = p.with_suffix(".svg")
        view: dict[str, Any] = {
            "rel": rel.as_posix(), "href": href(*rel.parts), "error": None,
            "svg_href": (href(*svg.relative_to(out).parts)
                         if suffix == ".png" and svg in shown else None),
            "kind": "figure" if suffix in _FIGURES else suffix.lstrip("."),
        }
        if suffix == ".json":
            try:
                view["view"] = _json_view(json.loads(p.read_text(encoding="utf-8")))
            except (OSError, ValueError) as err:
                view["error"] = f"unreadable JSON: {err}"
        elif suffix == ".csv":
            try:
                rows = list(csv.reader(io.StringIO(p.read_text(encoding="utf-8"))))
                view["rows"] = rows[: _MAX_ROWS + 1]
            except (OSError, ValueError, csv.Error) as err:
                view["error"] = f"unreadable CSV: {err}"
        views.append(view)
    return _render("analysis.html", title=f"{name} results", name=name, analyses=analyses,
                   own_index=_own_index(out, name) is not None, files=views)


def _scores(m: dict[str, Any], layer: str) -> dict[str, Any] | None:
    """The layer's interpretability scores (``{unit: row}``), or None."""
    sec = m.get("interpretability")
    if not isinstance(sec, dict):
        return None
    rows = (sec.get("layers", {}).get(layer) or {}).get("rows")
    return rows if isinstance(rows, dict) else None


def _scores_about(m: dict[str, Any]) -> str:
    sec = m["interpretability"]
    return (f"the fraction of {sec['n_tasks']} tasks a simulated observer ("
            f"{sec['observer']} {sec['observer_layer']} features, cosine similarity) answers "
            f"correctly: given the unit's {sec['k']} most and {sec['k']} least activating "
            f"dataset images (natural) or its renders as the most activating ones (synthetic), "
            f"which of two dataset images activates the unit more? 0.5 is chance"
            + ("; references never come from the queries' photos"
               if sec.get("separate_groups") else ""))


def _score_text(row: dict[str, Any], name: str) -> str:
    v, lo, hi = row.get(name), row.get(f"{name}_lo"), row.get(f"{name}_hi")
    if v is None:
        return "–"
    return f"{v:.2f}" + (f" (95% CI {lo:.2f}–{hi:.2f})" if lo is not None else "")


def _unit_title(layer: str, unit: int, label: str | None) -> str:
    return f"{layer} · unit {unit}" + (f" · “{label}”" if label else "")


def _layer_label(info: dict[str, Any], unit: int) -> str | None:
    labels = info.get("unit_labels")
    if labels and 0 <= unit < len(labels):
        return str(labels[unit])
    return None


def _unit_page(
    m: dict[str, Any],
    layer: str,
    info: dict[str, Any],
    units: list[int],
    pos: int,
    analyses: list[str],
) -> str:
    unit = units[pos]
    entry = m["units"][layer][str(unit)]
    label = _layer_label(info, unit)
    lay = m["layout"]
    title = _unit_title(layer, unit, label)
    geo = grid_layout(lay["variants"], lay["examples"], lay["tile"])
    scale = 2 if geo["width"] <= 600 else 1
    n_images = (m.get("dataset") or {}).get("n")
    reasons = entry.get("silent_reasons") or []
    ratio = entry.get("ratio")
    rescue = entry.get("rescue")
    objective_layer = info.get("objective_layer") or layer
    facts = [
        ("status", str(entry.get("status")) + (" · silent" if entry.get("silent") else "")),
        ("render activation (max over space)", ", ".join(_fmt(v) for v in entry["render_act"])),
        ("renders maximize", f"the mean of channel {unit} of {objective_layer}"
         + (" (pre-activation)" if objective_layer != layer else "")),
        ("objective (final)", ", ".join(_fmt(v) for v in entry.get("objective", []))),
        ("max activation over dataset images", _fmt(entry.get("dataset_max"))),
        ("best render / dataset max", "–" if ratio is None else f"{ratio * 100:.0f}%"),
    ]
    if rescue:
        facts.append(("rescue", "needed (default start silent); "
                      + ("it woke the unit" if rescue == "succeeded"
                         else "it did not wake the unit")))
    scores = _scores(m, layer)
    row = (scores or {}).get(str(unit))
    if row:
        facts.append(("interpretability: natural exemplars", _score_text(row, "natural")))
        facts.append(("interpretability: renders (synthetic)", _score_text(row, "synthetic")))
    rf = info.get("rf")
    if rf:
        facts.append(("receptive field",
                      f"{rf['size'][0]}×{rf['size'][1]} px of a {rf['input_side']} px input"))
    examples = [
        {"index": ex["index"], "caption": ex.get("caption", ""), "value": _fmt(ex.get("value")),
         "box": ex.get("box") or "whole image"}
        for ex in entry.get("examples") or []
    ]
    return _render(
        "unit.html",
        title=f"{title} — {m['model']['name']}",
        heading=title,
        layer=layer,
        unit=unit,
        prev=units[pos - 1] if pos > 0 else None,
        next=units[pos + 1] if pos + 1 < len(units) else None,
        failed=entry.get("status") == "failed",
        rescued_start=entry.get("start") == "rescue",
        silent=bool(entry.get("silent")),
        silent_text=describe_silence(reasons, n_images=n_images) if entry.get("silent") else "",
        width=geo["width"] * scale,
        height=geo["height"] * scale,
        facts=facts,
        examples=examples,
        few_examples=bool(n_images) and len(examples) < lay["examples"],
        n_images=n_images,
        silent_on_data="dataset" in reasons,
        has_dataset=bool(m.get("dataset")),
        scores_about=_scores_about(m) if row else "",
        analyses=analyses,
    )


def _layer_page(
    m: dict[str, Any],
    layer: str,
    info: dict[str, Any],
    units: list[int],
    order: list[str],
    analyses: list[str],
) -> str:
    tile = m["layout"]["tile"]
    i = order.index(layer)
    done = m["units"].get(layer, {})
    n_img = (m.get("dataset") or {}).get("n")
    cards = []
    n = len(units)
    for k, u in enumerate(units):
        x, y = sheet_position(k, n, tile)
        e = done[str(u)]
        ratio = e.get("ratio")
        label = _layer_label(info, u)
        tip = f"unit {u}" + (f" “{label}”" if label else "")
        if ratio is not None:
            tip += f": render reaches {ratio * 100:.0f}% of the dataset max"
        cls = " failed" if e.get("status") == "failed" else ""
        if e.get("silent"):
            tip += " — silent: " + describe_silence(e.get("silent_reasons") or [], n_images=n_img)
            cls += " silent"
        cards.append({
            "unit": u, "x": x, "y": y, "tip": tip, "cls": cls, "silent": bool(e.get("silent")),
            "caption": str(u) + (f" {label}" if label else ""),
            "pct": "" if ratio is None else f"{ratio * 100:.0f}%",
            "ratio": "" if ratio is None else ratio,
        })
    scores = _scores(m, layer)
    table = []
    for c in cards if scores else []:
        row = scores.get(str(c["unit"]))
        if not row:
            continue
        cells = [(row.get(k), "–" if row.get(k) is None else f"{row[k]:.2f}")
                 for k in ("natural", "synthetic", "gap")]
        table.append({**c, "cells": cells})
    plot = ((m.get("interpretability") or {}).get("layers", {}).get(layer) or {}).get("plot")
    cols, _ = sheet_layout(n)

    def near(j: int) -> dict[str, str] | None:
        if 0 <= j < len(order):
            return {"name": order[j], "dir": m["layers"][order[j]]["dir"]}
        return None

    return _render(
        "layer.html",
        title=f"{layer} — {m['model']['name']}",
        layer=layer,
        prev=near(i - 1),
        next=near(i + 1),
        channels=info["channels"],
        kind=info["kind"],
        n_failed=sum(1 for u in units if done[str(u)].get("status") == "failed"),
        n_silent=sum(1 for u in units if done[str(u)].get("silent")),
        rf=info.get("rf"),
        cards=cards,
        tile=tile,
        sheet_width=cols * (tile + 2) + 2,
        scores=table,
        scores_plot=plot if table else None,
        scores_about=_scores_about(m) if table else "",
        analyses=analyses,
    )


def _index_page(m: dict[str, Any], order: list[str], analyses: list[str]) -> str:
    model = m["model"]
    settings = m["settings"]
    ds = m.get("dataset")
    entries = [e for layer in order for e in m["units"].get(layer, {}).values()]
    n_failed = sum(1 for e in entries if e.get("status") == "failed")
    n_silent = sum(1 for e in entries if e.get("silent"))
    rows = [
        (
            "renders",
            f"{settings['variants']} per unit, {settings['steps']} steps, {settings['size']} px, "
            f"Adam lr {settings['lr']}, seed {settings['seed']}",
        ),
        (
            "units",
            f"{len(entries)} in {len(order)} layers"
            + (f", {n_failed} not finite" if n_failed else "")
            + (f", {n_silent} silent (greyed on the sheets)" if n_silent else ""),
        ),
        (
            "dataset examples",
            f"top {settings['top_k']} of {ds['n']} images from {ds['source']}" if ds else "none",
        ),
    ]
    sec = m.get("interpretability")
    if isinstance(sec, dict) and sec.get("layers"):
        rows.append((
            "interpretability scores",
            f"natural and synthetic per unit (observer {sec['observer']} "
            f"{sec['observer_layer']}, {sec['n_tasks']} tasks per unit): on the unit and layer "
            f"pages"))
    layers = []
    for layer in order:
        info = m["layers"][layer]
        units = m["units"].get(layer, {})
        rf = info.get("rf")
        extra = f", RF {rf['size'][0]}×{rf['size'][1]} px" if rf else ""
        silent = sum(1 for e in units.values() if e.get("silent"))
        extra += f", {silent} silent" if silent else ""
        layers.append({"name": layer, "dir": info["dir"], "done": len(units),
                       "channels": info["channels"], "extra": extra})
    versions = ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items())
    return _render(
        "index.html",
        title=f"Gallery — {model['name']}",
        model={"name": model["name"], "weights_source": model.get("weights_source"),
               "params_sha256": str(model.get("params_sha256"))[:16]},
        rows=rows,
        analyses=analyses,
        layers=layers,
        versions=versions,
    )


def write_site(out: Path, m: dict[str, Any], *, tag: str = "p0") -> Path:
    """Write ``index.html``, ``<layer>/index.html``, ``<layer>/<unit>.html`` and the analysis
    pages for manifest ``m``; returns the index path."""
    analyses = analysis_dirs(out)
    order = [layer for layer in m["layers"] if m["units"].get(layer)]
    for layer in order:
        info = m["layers"][layer]
        units = sorted(int(u) for u in m["units"][layer])
        for pos, u in enumerate(units):
            atomic_write_text(
                safe_path(out, info["dir"], f"{u}.html"),
                _unit_page(m, layer, info, units, pos, analyses),
                tag=tag,
            )
        atomic_write_text(
            safe_path(out, info["dir"], "index.html"),
            _layer_page(m, layer, info, units, order, analyses),
            tag=tag,
        )
    for name in analyses:
        atomic_write_text(
            safe_path(out, f"{name}.html"), _analysis_page(out, name, analyses), tag=tag
        )
    index = safe_path(out, "index.html")
    atomic_write_text(index, _index_page(m, order, analyses), tag=tag)
    return index
