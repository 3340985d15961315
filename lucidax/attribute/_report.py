"""The ``index.html`` page of ``lucidax attribute``: run facts, the faithfulness table, the
colour legends and the overlay grids (every text escaped, every link quoted)."""

from __future__ import annotations

import html
import os
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from ._overlay import SCALING_NOTE, legend_css, legend_labels


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _legend_html(signed: bool, methods: Sequence[str]) -> str:
    """A colour bar of :func:`~.overlay.legend_strip` with its captions, for ``methods``."""
    left, mid, right = legend_labels(signed)
    kind = ("signed: red = evidence for the target class, blue = against it" if signed
            else "unsigned: importance, grey = none, yellow = strongest")
    return (f'<div class="legend"><div class="bar" style="background:{legend_css(signed)}">'
            f'</div><div class="ticks"><span>{_e(left)}</span><span>{_e(mid)}</span>'
            f'<span>{_e(right)}</span></div><div class="muted">{_e(", ".join(methods))}: '
            f"{_e(kind)}</div></div>")


def page(run_title: str, meta: Mapping[str, Any], methods: Sequence[str],
          metrics: Mapping[str, Mapping[str, float]], files: Mapping[str, str],
          rows: Sequence[tuple[str, str]], signed: Mapping[str, bool] | None = None) -> str:
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
