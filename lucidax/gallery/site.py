"""The static HTML site, written from the merged manifest alone.

Every user-provided string (model, layer and label names, file names, JSON contents) goes
through :func:`html.escape`; every link target through :func:`urllib.parse.quote`; every
written path through :func:`lucidax.gallery.files.safe_path`.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from pathlib import Path
from typing import Any
from urllib.parse import quote

from lucidax.visualize.silence import describe as describe_silence

from .files import atomic_write_text, safe_path
from .layout import grid_layout, sheet_layout, sheet_position

__all__ = ["ANALYSES", "analysis_dirs", "write_site"]

ANALYSES = ("probes", "tcav", "dissect", "invert", "attribution")
_MAX_ROWS = 200
_MAX_PRE = 20_000

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.2em auto;
max-width:1200px;padding:0 1em;color:#222;background:#fafafa}
a{color:#1558b0;text-decoration:none}a:hover{text-decoration:underline}
nav{margin:.4em 0 1em;font-size:.95em}nav a{margin-right:1em}
h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.15em;margin:1.2em 0 .4em}
table{border-collapse:collapse;font-size:.9em;margin:.4em 0}
td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f0f0f0}
img.px{image-rendering:pixelated}
.layers{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:1em}
.layer{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.6em}
.layer img{max-width:100%;height:auto;display:block;margin-top:.4em}
.cards{display:flex;flex-wrap:wrap;gap:6px}
.card{display:flex;flex-direction:column;align-items:center;font-size:.75em;background:#fff;
border:1px solid #ddd;border-radius:4px;padding:3px}
.card .thumb{display:block;image-rendering:pixelated}
.failed{color:#b00}.muted{color:#777}
.silent{color:#666}.card.silent{border-style:dashed;background:#f0f0f0}
.tag{font-size:.85em;background:#ddd;color:#444;border-radius:3px;padding:0 .3em}
pre{background:#fff;border:1px solid #ddd;padding:.6em;overflow:auto;max-height:40em}
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _href(*parts: str) -> str:
    return "/".join(quote(str(p)) for p in parts)


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        if not math.isfinite(x):
            return str(x)
        return f"{x:.{digits}g}"
    return _e(x)


def _page(title: str, body: str, *, depth: int = 0) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n<body>\n{body}\n"
        "</body></html>\n"
    )


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


def _analysis_nav(analyses: list[str], depth: int) -> str:
    if not analyses:
        return ""
    up = "../" * depth
    links = " · ".join(f'<a href="{up}{_href(a)}.html">{_e(a)}</a>' for a in analyses)
    return f'<p class="muted">Analyses: {links}</p>'


def _json_html(obj: Any) -> str:
    if isinstance(obj, dict) and obj and all(not isinstance(v, (dict, list)) for v in obj.values()):
        rows = "".join(f"<tr><th>{_e(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in obj.items())
        return f"<table>{rows}</table>"
    if (
        isinstance(obj, list)
        and obj
        and all(isinstance(r, dict) for r in obj)
        and all(not isinstance(v, (dict, list)) for r in obj for v in r.values())
    ):
        cols: list[str] = []
        for r in obj:
            cols.extend(k for k in r if k not in cols)
        head = "".join(f"<th>{_e(c)}</th>" for c in cols)
        body = "".join(
            "<tr>" + "".join(f"<td>{_fmt(r.get(c))}</td>" for c in cols) + "</tr>"
            for r in obj[:_MAX_ROWS]
        )
        more = (
            f"<p class='muted'>{len(obj) - _MAX_ROWS} more rows</p>" if len(obj) > _MAX_ROWS else ""
        )
        return f"<table><tr>{head}</tr>{body}</table>{more}"
    text = json.dumps(obj, indent=1, ensure_ascii=False)
    if len(text) > _MAX_PRE:
        text = text[:_MAX_PRE] + "\n..."
    return f"<pre>{_e(text)}</pre>"


def _analysis_page(out: Path, name: str, analyses: list[str]) -> str:
    parts = [
        '<nav><a href="index.html">gallery index</a></nav>',
        f"<h1>{_e(name)} results</h1>",
        _analysis_nav(analyses, 0),
    ]
    if _own_index(out, name) is not None:
        parts.append(f'<p><a href="{_href(name, "index.html")}">open the {_e(name)} page</a></p>')
    files = _analysis_files(out, name)
    shown = set(files)
    for p in files:
        rel = p.relative_to(out)
        href = _href(*rel.parts)
        suffix = p.suffix.lower()
        png = p.with_suffix(".png")
        if suffix == ".svg" and png in shown:  # the PNG twin is shown: link the SVG there
            continue
        svg = p.with_suffix(".svg")
        also = (f' <small>(<a href="{_href(*svg.relative_to(out).parts)}">svg</a>)</small>'
                if suffix == ".png" and svg in shown else "")
        parts.append(f'<h2><a href="{href}">{_e(rel.as_posix())}</a>{also}</h2>')
        if suffix in _FIGURES:
            parts.append(f'<img src="{href}" alt="{_e(rel.as_posix())}" style="max-width:100%">')
        elif suffix == ".json":
            try:
                obj = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, ValueError) as err:
                parts.append(f"<p class='failed'>unreadable JSON: {_e(err)}</p>")
                continue
            parts.append(_json_html(obj))
        elif suffix == ".csv":
            try:
                rows = list(csv.reader(io.StringIO(p.read_text(encoding="utf-8"))))
            except (OSError, ValueError, csv.Error) as err:
                parts.append(f"<p class='failed'>unreadable CSV: {_e(err)}</p>")
                continue
            if rows:
                head = "".join(f"<th>{_e(c)}</th>" for c in rows[0])
                body = "".join(
                    "<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>"
                    for r in rows[1 : _MAX_ROWS + 1]
                )
                parts.append(f"<table><tr>{head}</tr>{body}</table>")
    return _page(f"{name} results", "\n".join(parts))


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
    d = info["dir"]
    nav = [
        '<nav><a href="../index.html">index</a>',
        '<a href="index.html">up: ' + _e(layer) + "</a>",
    ]
    if pos > 0:
        nav.append(f'<a href="{_href(str(units[pos - 1]))}.html">◀ prev ({units[pos - 1]})</a>')
    if pos + 1 < len(units):
        nav.append(f'<a href="{_href(str(units[pos + 1]))}.html">next ({units[pos + 1]}) ▶</a>')
    nav_html = " ".join(nav) + "</nav>"
    title = _unit_title(layer, unit, label)
    geo = grid_layout(lay["variants"], lay["examples"], lay["tile"])
    scale = 2 if geo["width"] <= 600 else 1
    parts = [nav_html, f"<h1>{_e(title)}</h1>"]
    if entry.get("status") == "failed":
        parts.append(
            '<p class="failed">Some renders of this unit did not stay finite; the images show '
            "their last finite state (grey where undefined).</p>"
        )
    if entry.get("start") == "rescue":
        parts.append(
            '<p class="muted">Started from a high-contrast image: from the default faint start '
            "this unit's renders never activated it.</p>"
        )
    n_images = (m.get("dataset") or {}).get("n")
    reasons = entry.get("silent_reasons") or []
    if entry.get("silent"):
        parts.append(
            f'<p class="silent"><span class="tag">silent</span> '
            f"{_e(describe_silence(reasons, n_images=n_images))}.</p>"
        )
    alt = f"renders (top row) and top dataset examples of {title}"
    parts.append(
        f'<p><img class="px" src="{_href(str(unit))}.png" width="{geo["width"] * scale}" '
        f'height="{geo["height"] * scale}" alt="{_e(alt)}"></p>'
    )
    ratio = entry.get("ratio")
    dmax = entry.get("dataset_max")
    rescue = entry.get("rescue")
    rows = [
        ("status", _e(entry.get("status")) + (" · silent" if entry.get("silent") else "")),
        ("render activation (max over space)", ", ".join(_fmt(v) for v in entry["render_act"])),
        ("objective (final)", ", ".join(_fmt(v) for v in entry.get("objective", []))),
        ("max activation over dataset images", _fmt(dmax)),
        (
            "best render / dataset max",
            "–" if ratio is None else f"{ratio * 100:.0f}%",
        ),
    ]
    if rescue:
        rows.append((
            "rescue",
            "needed (default start silent); "
            + ("it woke the unit" if rescue == "succeeded" else "it did not wake the unit"),
        ))
    objective_layer = info.get("objective_layer") or layer
    rows.insert(
        2,
        (
            "renders maximize",
            f"the mean of channel {unit} of {_e(objective_layer)}"
            + (" (pre-activation)" if objective_layer != layer else ""),
        ),
    )
    rf = info.get("rf")
    if rf:
        rows.append(
            (
                "receptive field",
                f"{rf['size'][0]}×{rf['size'][1]} px of a {rf['input_side']} px input",
            )
        )
    parts.append(
        "<table>" + "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"
    )
    parts.append("<h2>Loss</h2>")
    parts.append(f'<p><img src="{_href(str(unit))}_loss.png" alt="loss curve of {_e(title)}"></p>')
    examples = entry.get("examples") or []
    if examples:
        parts.append("<h2>Top dataset examples</h2>")
        head = (
            "<tr><th>rank</th><th>image</th><th>labels</th><th>activation</th>"
            "<th>crop (y0,y1,x0,x1)</th></tr>"
        )
        body = "".join(
            f"<tr><td>{r + 1}</td><td>{_e(ex['index'])}</td><td>{_e(ex.get('caption', ''))}</td>"
            f"<td>{_fmt(ex.get('value'))}</td><td>{_e(ex.get('box') or 'whole image')}</td></tr>"
            for r, ex in enumerate(examples)
        )
        parts.append(f"<table>{head}{body}</table>")
        if n_images and len(examples) < lay["examples"]:
            parts.append(
                f'<p class="muted">Only {len(examples)} of the {_e(n_images)} dataset images '
                f"{'activates' if len(examples) == 1 else 'activate'} this unit (the others "
                "give 0).</p>"
            )
    elif "dataset" in reasons:
        parts.append(
            f'<p class="silent"><span class="tag">silent</span> never activates on the '
            f"{_e(n_images)} dataset images: no top examples.</p>"
        )
    elif m.get("dataset"):
        parts.append('<p class="muted">No dataset examples.</p>')
    parts.append(_analysis_nav(analyses, 1))
    _ = d
    return _page(f"{title} — {m['model']['name']}", "\n".join(parts), depth=1)


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
    nav = ['<nav><a href="../index.html">up: index</a>']
    if i > 0:
        prev = m["layers"][order[i - 1]]["dir"]
        nav.append(f'<a href="../{_href(prev)}/index.html">◀ {_e(order[i - 1])}</a>')
    if i + 1 < len(order):
        nxt = m["layers"][order[i + 1]]["dir"]
        nav.append(f'<a href="../{_href(nxt)}/index.html">{_e(order[i + 1])} ▶</a>')
    parts = [" ".join(nav) + "</nav>", f"<h1>{_e(layer)}</h1>"]
    done = m["units"].get(layer, {})
    n_failed = sum(1 for u in units if done[str(u)].get("status") == "failed")
    n_silent = sum(1 for u in units if done[str(u)].get("silent"))
    rf = info.get("rf")
    facts = f"{info['channels']} units ({_e(info['kind'])}); {len(units)} rendered"
    if n_failed:
        facts += f', <span class="failed">{n_failed} not finite</span>'
    if n_silent:
        facts += f', <span class="silent">{n_silent} silent (greyed)</span>'
    if rf:
        facts += f"; receptive field {rf['size'][0]}×{rf['size'][1]} px"
    parts.append(
        f"<p>{facts}. Under each unit: its best render's activation as a percentage of the "
        "unit's maximum over the dataset images.</p>"
    )
    parts.append('<div class="cards">')
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
        caption = str(u) + (f" {label}" if label else "")
        pct = "" if ratio is None else f'<span class="muted">{ratio * 100:.0f}%</span>'
        if e.get("silent"):
            n_img = (m.get("dataset") or {}).get("n")
            tip += " — silent: " + describe_silence(e.get("silent_reasons") or [],
                                                    n_images=n_img)
            cls += " silent"
            pct = '<span class="tag">silent</span>'
        parts.append(
            f'<a class="card{cls}" href="{_href(str(u))}.html" title="{_e(tip)}">'
            f'<span class="thumb" style="width:{tile}px;height:{tile}px;'
            f'background:url(sheet.png) -{x}px -{y}px"></span>{_e(caption)}{pct}</a>'
        )
    parts.append("</div>")
    cols, rows = sheet_layout(n)
    parts.append(
        f'<h2>Contact sheet</h2><p><img class="px" src="sheet.png" alt="contact sheet of '
        f'{_e(layer)}" width="{cols * (tile + 2) + 2}"></p>'
    )
    parts.append(_analysis_nav(analyses, 1))
    return _page(f"{layer} — {m['model']['name']}", "\n".join(parts), depth=1)


def _index_page(m: dict[str, Any], order: list[str], analyses: list[str]) -> str:
    model = m["model"]
    settings = m["settings"]
    ds = m.get("dataset")
    parts = [f"<h1>Feature gallery: {_e(model['name'])}</h1>"]
    n_units = sum(len(m["units"].get(layer, {})) for layer in order)
    n_failed = sum(
        1
        for layer in order
        for e in m["units"].get(layer, {}).values()
        if e.get("status") == "failed"
    )
    n_silent = sum(
        1 for layer in order for e in m["units"].get(layer, {}).values() if e.get("silent")
    )
    rows = [
        ("model", _e(model["name"])),
        ("weights", _e(model.get("weights_source"))),
        ("parameters sha256", f"<code>{_e(str(model.get('params_sha256'))[:16])}…</code>"),
        (
            "renders",
            f"{settings['variants']} per unit, {settings['steps']} steps, {settings['size']} px, "
            f"Adam lr {settings['lr']}, seed {settings['seed']}",
        ),
        (
            "units",
            f"{n_units} in {len(order)} layers" + (f", {n_failed} not finite" if n_failed else "")
            + (f", {n_silent} silent (greyed on the sheets)" if n_silent else ""),
        ),
        (
            "dataset examples",
            f"top {settings['top_k']} of {ds['n']} images from {_e(ds['source'])}"
            if ds
            else "none",
        ),
    ]
    parts.append(
        "<table>" + "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"
    )
    if analyses:
        links = " · ".join(f'<a href="{_href(a)}.html">{_e(a)}</a>' for a in analyses)
        parts.append(f"<h2>Analyses</h2><p>{links}</p>")
    parts.append("<h2>Layers</h2>")
    parts.append('<div class="layers">')
    for layer in order:
        info = m["layers"][layer]
        units = m["units"].get(layer, {})
        rf = info.get("rf")
        rf_txt = f", RF {rf['size'][0]}×{rf['size'][1]} px" if rf else ""
        silent = sum(1 for e in units.values() if e.get("silent"))
        rf_txt += f", {silent} silent" if silent else ""
        href = f"{_href(info['dir'])}/index.html"
        parts.append(
            f'<div class="layer"><a href="{href}"><b>{_e(layer)}</b></a> '
            f'<span class="muted">{len(units)}/{info["channels"]} units{rf_txt}</span>'
            f'<a href="{href}"><img class="px" src="{_href(info["dir"])}/sheet.png" '
            f'alt="contact sheet of {_e(layer)}"></a></div>'
        )
    parts.append("</div>")
    versions = ", ".join(f"{_e(k)} {_e(v)}" for k, v in m.get("versions", {}).items())
    parts.append(f'<p class="muted">Made by lucidax.gallery; {versions}.</p>')
    return _page(f"Gallery — {model['name']}", "\n".join(parts))


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
