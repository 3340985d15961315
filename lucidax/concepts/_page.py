"""The pages of ``lucidax concepts``: ``index.html`` (every layer, its renders and stability),
``<layer>/index.html`` (each concept: render, top crops, heat-maps, facts) and
``<layer>/class-<k>.html`` (the same, ordered by importance for the class, with Sobol and
gradient x concept bars and their agreement). Every text is escaped (jinja2 autoescape),
every link quoted."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import jinja2
import markupsafe
import numpy as np

from lucidax._files import atomic_write, save_plot

__all__ = ["class_figure", "write_pages"]

_CSS = ("body{font-family:system-ui,sans-serif;margin:1.2em auto;max-width:1300px;"
        "padding:0 1em;color:#222;background:#fafafa}a{color:#1558b0}"
        "nav a{margin-right:1em}table{border-collapse:collapse;font-size:.9em;margin:.4em 0}"
        "td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}"
        "th{background:#f0f0f0}img{max-width:100%}img.grid{max-width:720px}"
        "table.facts td,table.facts th{border:none;padding:0 .4em;font-size:.85em}"
        ".bar{display:inline-block;height:.8em;background:#1558b0;vertical-align:middle}"
        ".muted{color:#777}")


@functools.cache
def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("lucidax.concepts", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        keep_trailing_newline=True,
    )
    env.globals["stability_table"] = _stability_table
    return env


def _href(*parts: Any) -> str:
    return "/".join(quote(str(p)) for p in parts)


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def _stability_table(rows: Sequence[Mapping[str, Any]]) -> markupsafe.Markup:
    head = ("<table><tr><th>method</th><th>seeds</th><th>mean matched cosine</th>"
            "<th>worst concept</th><th>seconds</th></tr>")
    body = []
    for r in rows:
        per = r.get("per_concept") or []
        worst = min(per) if per else None
        body.append(markupsafe.Markup("<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
                                      "<td>{}</td></tr>").format(
            r.get("method"), len(r.get("seeds", ())), _fmt(r.get("mean")),
            _fmt(worst), _fmt(r.get("seconds"), 2)))
    return markupsafe.Markup(head) + markupsafe.Markup("").join(body) + \
        markupsafe.Markup("</table>")


def _write(path: str, text: str) -> str:
    atomic_write(path, text.encode())
    return path


def _concept_rows(layer: Any, order: Sequence[int], importance: Mapping | None,
                  has_heatmaps: bool) -> list[dict[str, Any]]:
    rows = []
    sob = grad = None
    if importance:
        sob, grad = importance["sobol"]["mean"], importance["gradient"]["mean"]
        smax = max((abs(v) for v in sob), default=0) or 1.0
        gmax = max((abs(v) for v in grad), default=0) or 1.0
    for c in order:
        info = layer.concepts[c]
        facts = [("share of positions", f"{100 * info['share']:.1f}%"),
                 ("active at", f"{100 * info['frequency']:.1f}% of positions"),
                 ("render / best natural", _fmt(info.get("render_gain_vs_natural_max")))]
        bars = []
        if sob is not None:
            bars = [("Sobol total", _fmt(sob[c]), abs(sob[c]) / smax),
                    ("gradient × concept", _fmt(grad[c]), abs(grad[c]) / gmax)]
        rows.append({"index": c, "render": _href("renders", f"{c:02d}.png"),
                     "crops": _href("crops", f"{c:02d}.png"),
                     "heatmaps": _href("heatmaps", f"{c:02d}.png") if has_heatmaps else "",
                     "facts": facts, "bars": bars})
    return rows


def _files(folder: str) -> list[str]:
    return sorted(f for f in os.listdir(folder)
                  if f.endswith((".json", ".csv", ".npz", ".png")) and not f.startswith("."))


def _summary(layer: Any) -> str:
    f = layer.factorization
    return (f"{len(layer.concepts)} concepts of {layer.layer} by {f.method}: relative "
            f"reconstruction error {f.error:.3f}, {f.l0:.1f} concepts active per position "
            f"on average, fitted in {f.seconds:.1f} s")


def write_pages(out: str, layers: Sequence[Any], *, meta: Mapping[str, Any]) -> dict[str, str]:
    """Write every page of a run; returns ``{kind: path}``."""
    env = _env()
    files: dict[str, str] = {}
    index_layers = []
    legend = ("Top crops: the image regions (about 3 activation cells wide) where the "
              "concept's code is largest, one per image, strongest first. Heat-maps: the "
              "concept's code at each position of its top images, upsampled. Render / best "
              "natural: the render's activation along the concept direction over the best "
              "natural image's.")
    for layer in layers:
        name = os.path.basename(layer.folder)
        has_heatmaps = os.path.isdir(os.path.join(layer.folder, "heatmaps"))
        nav = [("all layers", "../index.html")]
        order = list(range(len(layer.concepts)))
        page = env.get_template("layer.html").render(
            title=f"Concepts of {meta.get('model')} {layer.layer}", css=_CSS, nav=nav,
            summary=_summary(layer), agreement=None, legend=legend,
            concepts=_concept_rows(layer, order, None, has_heatmaps),
            has_heatmaps=has_heatmaps, render_width=128, stability=layer.stability,
            figure=None, files=_files(layer.folder))
        files[f"page:{layer.layer}"] = _write(os.path.join(layer.folder, "index.html"), page)
        classes = []
        imp = layer.importance
        if imp:
            ranking = list(imp["sobol"]["ranking"])
            agree = [("images of the class", len(imp["images"]))]
            agree += [(k, _fmt(v)) for k, v in imp["agreement"].items()]
            agree += [(f"{k} seconds", _fmt(v, 3)) for k, v in imp["seconds"].items()]
            page = env.get_template("layer.html").render(
                title=f"Concepts of {meta.get('model')} {layer.layer} for class "
                      f"{imp['class']} ({imp['label']})", css=_CSS,
                nav=nav + [(f"{layer.layer}", "index.html")],
                summary=_summary(layer) + ". Ordered by Sobol total-order importance "
                "(CRAFT: the share of the class logit's variance that a concept's presence "
                "explains, masks on every concept at once); gradient × concept is the cheaper "
                "first-order estimate.", agreement=agree, legend=legend,
                concepts=_concept_rows(layer, ranking, imp, has_heatmaps),
                has_heatmaps=has_heatmaps, render_width=128, stability=None,
                figure=_href(f"class-{imp['class']}.png") if os.path.isfile(
                    os.path.join(layer.folder, f"class-{imp['class']}.png")) else None,
                files=_files(layer.folder))
            cname = f"class-{imp['class']}.html"
            files[f"class:{layer.layer}"] = _write(os.path.join(layer.folder, cname), page)
            classes.append({"name": f"{imp['class']} ({imp['label']})",
                            "link": _href(name, cname)})
        index_layers.append({"name": layer.layer, "link": _href(name, "index.html"),
                             "summary": _summary(layer), "classes": classes,
                             "renders": _href(name, "renders.png"),
                             "stability": layer.stability})
    shown = [(k, _fmt(v)) for k, v in meta.items() if k not in ("format",)]
    page = env.get_template("index.html").render(
        title=f"Concepts of {meta.get('model')}", css=_CSS, nav=[], meta=shown,
        layers=index_layers)
    files["index"] = _write(os.path.join(out, "index.html"), page)
    return files


def class_figure(folder: str, importance: dict[str, Any], *, rows: int = 6,
                 crops: int = 5) -> str:
    """``class-<k>.png``: the ``rows`` most important concepts for the class (Sobol), each
    with its render, its top ``crops`` crops and its importance bars (Sobol total index and
    gradient x concept, each scaled to its largest value)."""
    import imageio.v3 as iio
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ranking = list(importance["sobol"]["ranking"])[:rows]
    sob = np.asarray(importance["sobol"]["mean"], float)
    grad = np.abs(np.asarray(importance["gradient"]["mean"], float))
    fig, axes = plt.subplots(len(ranking), crops + 2, figsize=(1.3 * (crops + 2) + 1.2,
                                                              1.35 * len(ranking)),
                             gridspec_kw={"width_ratios": [1] * (crops + 1) + [1.6]},
                             squeeze=False)
    for r, c in enumerate(ranking):
        tiles = [iio.imread(os.path.join(folder, "renders", f"{c:02d}.png"))]
        strip = iio.imread(os.path.join(folder, "crops", f"{c:02d}.png"))
        side = strip.shape[0] - 4  # image_grid: 2 px padding around one row of tiles
        tiles += [strip[2 : 2 + side, 2 + i * (side + 2) : 2 + i * (side + 2) + side]
                  for i in range(min(crops, (strip.shape[1] - 2) // (side + 2)))]
        for j, ax in enumerate(axes[r, :-1]):
            ax.axis("off")
            if j < len(tiles):
                ax.imshow(tiles[j])
        axes[r, 0].set_title(f"concept {c}" if r else f"render · concept {c}", fontsize=8)
        bars = axes[r, -1]
        bars.barh([1, 0], [sob[c] / (sob.max() or 1), grad[c] / (grad.max() or 1)],
                  color=["#1558b0", "#e07b00"])
        bars.set_xlim(0, 1)
        bars.set_yticks([1, 0], ["Sobol", "grad×c"], fontsize=7)
        bars.tick_params(axis="x", labelsize=6)
    axes[0, 1].set_title("top crops (largest code)", fontsize=8, loc="left")
    fig.suptitle(f"class {importance['class']} ({importance['label']}): most important "
                 "concepts", fontsize=9)
    fig.tight_layout()
    path = os.path.join(folder, f"class-{importance['class']}.png")
    save_plot(path, fig, dpi=110)
    plt.close(fig)
    return path
