"""The ``index.html`` page of ``lucidax attribute``: run facts, the faithfulness table, the
colour legends and the overlay grids (every text escaped, every link quoted)."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import jinja2

from ._overlay import SCALING_NOTE, legend_css, legend_labels

_CSS = ("body{font-family:system-ui,sans-serif;margin:1.2em auto;max-width:1200px;"
        "padding:0 1em;color:#222;background:#fafafa}table{border-collapse:collapse;"
        "font-size:.9em}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left}"
        "th{background:#f0f0f0}img{image-rendering:pixelated;max-width:100%}"
        ".muted{color:#777}.legend{display:inline-block;margin:.3em 2em .6em 0;"
        "font-size:.85em;vertical-align:top}.legend .bar{width:280px;height:14px;"
        "border:1px solid #bbb}.legend .ticks{display:flex;justify-content:space-between;"
        "width:282px}")


@functools.cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("lucidax.attribute", "templates"),
        autoescape=True,  # every {{ value }} is HTML-escaped
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        keep_trailing_newline=True,
    )
    return env.get_template("index.html")


def _legend(signed: bool, methods: Sequence[str]) -> dict[str, Any]:
    """A colour bar of :func:`~._overlay.legend_strip` with its captions, for ``methods``."""
    left, mid, right = legend_labels(signed)
    kind = ("signed: red = evidence for the target class, blue = against it" if signed
            else "unsigned: importance, grey = none, yellow = strongest")
    return {"css": legend_css(signed), "left": left, "mid": mid, "right": right,
            "methods": list(methods), "kind": kind}


def _href(path: str) -> str:
    return quote(os.path.basename(path))


def page(run_title: str, meta: Mapping[str, Any], methods: Sequence[str],
         metrics: Mapping[str, Mapping[str, float]], files: Mapping[str, str],
         rows: Sequence[tuple[str, str]], signed: Mapping[str, bool] | None = None) -> str:
    """The page (``templates/index.html``): ``meta`` facts, the ``metrics`` table, the colour
    legends of the ``signed`` / unsigned methods, the figure and each method's grid of
    ``files``, the ``rows`` (image name, target) and links to the results."""
    signed = dict(signed or {})
    legends = []
    for flag in (True, False):
        group = [m for m in methods if signed.get(m) is flag]
        if signed and group:
            legends.append(_legend(flag, group))
    grids = [{"method": m, "src": _href(files[f"grid:{m}"]),
              "legend": _legend(signed[m], [m]) if m in signed else None}
             for m in methods if files.get(f"grid:{m}")]
    return _template().render(
        title=run_title, css=_CSS, meta=list(meta.items()), metrics=list(metrics.items()),
        legends=legends, scaling_note=SCALING_NOTE,
        figure=_href(files["figure"]) if "figure" in files else None, rows=list(rows),
        grids=grids,
        links=[(_href(p), os.path.basename(p)) for k, p in files.items()
               if k in ("json", "maps")])
