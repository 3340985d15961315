"""The probes' figures: accuracy by layer, TCAV bar charts and dissection summaries
(matplotlib's Agg canvas, written atomically; the format follows the extension)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .._files import save_plot
from ._dissect import Dissection
from ._linear import ProbeResult
from ._tcav import TCAVResult


def plot_results(
    results: Sequence[ProbeResult],
    path: str | os.PathLike,
    *,
    title: str = "linear probe accuracy by layer",
    depth: Mapping[str, int] | None = None,
) -> str:
    """Accuracy (with its 95% CI band) against layer depth, chance as a dashed line.

    The format follows the extension (.png, .svg, .pdf). Uses matplotlib's Agg canvas
    directly (no pyplot, no global backend change); the file is written atomically.

    Args:
      results: :class:`ProbeResult` of each layer.
      path: the figure file.
      title: the figure's title.
      depth: ``{layer: depth}`` for the x axis (default: the results' order).

    Example:
      >>> from lucidax.probes import plot_results
      >>> import numpy as np
      >>> from lucidax.probes import fit_probe
      >>> rng = np.random.default_rng(0)
      >>> y = np.repeat([0, 1], 40)
      >>> results = [fit_probe(rng.normal(size=(80, 4)) + s * y[:, None], y, layer=name)
      ...            for s, name in ((0.2, "conv1"), (2.0, "conv5"))]
      >>> plot_results(results, "probes.png")
      'probes.png'
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = os.fspath(path)
    order = sorted(results, key=lambda r: (depth or {}).get(r.layer, 0)) if depth else \
        list(results)
    x = np.arange(len(order))
    acc = np.asarray([r.accuracy for r in order])
    lo = np.asarray([r.ci_low for r in order])
    hi = np.asarray([r.ci_high for r in order])
    chance = np.asarray([r.chance for r in order])
    fig = Figure(figsize=(max(5.0, 0.6 * len(order) + 2.5), 4.0), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.fill_between(x, lo, hi, color="C0", alpha=0.2, linewidth=0, label="95% CI (Wilson)")
    ax.plot(x, acc, "o-", color="C0", label="held-out accuracy")
    if len(set(np.round(chance, 9))) == 1:
        ax.axhline(chance[0], color="0.4", linestyle="--", label=f"chance ({chance[0]:.3f})")
    else:
        ax.plot(x, chance, "--", color="0.4", label="chance (majority class)")
    ax.set_xticks(x)
    ax.set_xticklabels([r.layer or str(i) for i, r in enumerate(order)], rotation=45,
                       ha="right")
    ax.set_xlabel("layer (input \u2192 output)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0.0, 1.02)
    ax.grid(True, alpha=0.3)
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    save_plot(path, fig)
    return path

def _stars(r: TCAVResult) -> str:
    if not r.significant:
        return "ns"
    return "***" if r.p_adj <= 0.001 else "**" if r.p_adj <= 0.01 else "*"

def plot_tcav(
    results: Sequence[TCAVResult],
    path: str | os.PathLike,
    *,
    title: str | None = None,
) -> str:
    """Bar charts, one panel per concept: the TCAV score (mean ± std over runs, clipped to
    [0, 1]) at every layer next to the random-vs-random null (grey); ``*``/``**``/``***``
    mark ``p_adj`` <= alpha / 0.01 / 0.001, ``ns`` (hatched, faded bar) non-significant.
    The format follows the extension; the file is written atomically.

    Args:
      results: :class:`TCAVResult` of each (concept, layer).
      path: the figure file.
      title: the figure's title.

    Example:
      >>> from lucidax.probes import plot_tcav
      >>> import numpy as np
      >>> from lucidax.probes import tcav_from_features
      >>> rng = np.random.default_rng(0)
      >>> results = tcav_from_features(
      ...     {"stripes": {"conv4": rng.normal(size=(40, 8)) + np.eye(8)[0]}},
      ...     {"conv4": rng.normal(size=(80, 8))},
      ...     {"conv4": rng.normal(size=(30, 8)) + np.eye(8)[0]},
      ...     runs=5, n_concept=10, n_random=10, target="3")
      >>> plot_tcav(results, "tcav.png")
      'tcav.png'
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = os.fspath(path)
    if not results:
        raise ValueError("no results to plot")
    layers = list(dict.fromkeys(r.layer for r in results))
    concepts = list(dict.fromkeys(r.concept for r in results))
    by = {(r.concept, r.layer): r for r in results}
    cols = min(3, len(concepts))
    rows = -(-len(concepts) // cols)
    panel_w = max(2.6, 0.55 * len(layers) + 1.0)
    fig = Figure(figsize=(panel_w * cols + 0.6, 2.6 * rows + 0.7), dpi=120)
    FigureCanvasAgg(fig)
    x = np.arange(len(layers))
    w = 0.38

    def err(m, s):
        return [[m - max(0.0, m - s)], [min(1.0, m + s) - m]]

    for j, c in enumerate(concepts):
        ax = fig.add_subplot(rows, cols, j + 1)
        for i, n in enumerate(layers):
            r = by.get((c, n))
            if r is None:
                continue
            color = f"C{j % 10}"
            ax.bar(x[i] - w / 2, r.mean, w, yerr=err(r.mean, r.std), capsize=2, color=color,
                   alpha=1.0 if r.significant else 0.45, hatch=None if r.significant else "//",
                   edgecolor=color, linewidth=0.5, error_kw={"linewidth": 0.8},
                   label="concept" if i == 0 else None)
            ax.bar(x[i] + w / 2, r.null_mean, w, yerr=err(r.null_mean, r.null_std), capsize=2,
                   color="0.72", error_kw={"linewidth": 0.8},
                   label="random (null)" if i == 0 else None)
            ax.text(x[i] - w / 2, min(1.0, r.mean + r.std) + 0.02, _stars(r), ha="center",
                    va="bottom", fontsize=7)
        ax.set_title(c, fontsize=9)
        ax.set_xticks(x)
        ax.set_xticklabels(layers, rotation=30, ha="right", fontsize=7)
        ax.set_ylim(0.0, 1.3)
        ax.set_yticks([0.0, 0.25, 0.5, 0.75, 1.0])
        ax.axhline(0.5, color="0.5", linewidth=0.6, linestyle=":")
        ax.grid(True, axis="y", alpha=0.3)
        ax.tick_params(axis="y", labelsize=7)
        if j % cols == 0:
            ax.set_ylabel("TCAV score", fontsize=8)
        if j == 0:
            ax.legend(fontsize=6, loc="upper left", ncol=2, frameon=False)
    r0 = results[0]
    import textwrap

    text = title or (f"TCAV for class {r0.target!r}: mean ± std over {r0.runs} runs; "
                     f"{r0.test} t-test vs random, {r0.correction}-adjusted "
                     f"(alpha={r0.alpha:g})")
    # wrapped to the figure's width (~13 characters an inch at 9 pt): never cut at the sides
    width = max(20, int(fig.get_figwidth() * 13))
    fig.suptitle("\n".join(textwrap.wrap(text, width, break_on_hyphens=False)) or text,
                 fontsize=9)
    fig.tight_layout()
    save_plot(path, fig)
    return path

def plot_dissection(result: Dissection, path: str | os.PathLike, *,
                    title: str | None = None) -> str:
    """Stacked bars: detector units per layer, one segment per concept, coloured by category
    (:func:`concept_colors`: a colour family per category, a shade of it per concept), segments
    tall enough labelled with their concept's value; the legend lists the categories, each
    with its concepts.

    The format follows the extension (.png, .svg, .pdf); Agg canvas, atomic write.

    Args:
      result: a :class:`Dissection`.
      path: the figure file.
      title: the figure's title (default: the model's name).

    Example:
      >>> from lucidax.probes import plot_dissection
      >>> import lucidax.models as lm
      >>> from lucidax.probes import StarterConcepts, dissect
      >>> result = dissect(lm.load("starter"), StarterConcepts(n=32), layers="conv3")
      >>> plot_dissection(result, "dissection.png")
      'dissection.png'
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = os.fspath(path)
    summary = result.summary()
    order = [c for c in result.concepts if any(c in summary[n] for n in result.layers)]
    cat = dict(zip(result.concepts, result.categories, strict=True))
    order.sort(key=lambda c: result.categories.index(cat[c]))  # grouped by category
    fig = Figure(figsize=(max(5.5, 0.9 * len(result.layers) + 4.0), 4.2), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(result.layers))
    bottom = np.zeros(len(x))
    cmap, family = concept_colors(result.concepts, result.categories)
    top = max(1.0, max((sum(d.values()) for d in summary.values()), default=0))
    for c in order:
        h = np.asarray([summary[n].get(c, 0) for n in result.layers], float)
        ax.bar(x, h, bottom=bottom, color=cmap[c], edgecolor="0.2", linewidth=0.4)
        for xi in np.flatnonzero(h >= 0.045 * top):  # tall enough: name the value
            ink = "white" if _luminance(cmap[c]) < 0.5 else "black"
            ax.text(xi, bottom[xi] + h[xi] / 2, _concept_value(c), ha="center", va="center",
                    fontsize=6, color=ink, clip_on=True)
        bottom += h
    totals = [len(result.thresholds[n]) for n in result.layers]
    for xi, (b, t) in enumerate(zip(bottom, totals, strict=True)):
        ax.text(xi, b, f"{int(b)}/{t}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x)
    ax.set_xticklabels(result.layers, rotation=30, ha="right")
    ax.set_xlabel("layer (input \u2192 output)")
    ax.set_ylabel("detector units")
    ax.set_ylim(0, max(1.0, float(bottom.max()) * 1.15))
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title(title or (f"{result.model}: detectors (IoU \u2265 {result.iou_threshold:g}, "
                           f"top {100 * result.quantile:g}%) on {result.n_images} images"),
                 fontsize=9)
    if order:
        from matplotlib.patches import Patch

        handles, labels, heads = [], [], []
        for category in dict.fromkeys(cat[c] for c in order):
            heads.append(len(labels))
            handles.append(Patch(color=family[category], ec="0.2", lw=0.4))
            labels.append(category)
            for c in (c for c in order if cat[c] == category):
                handles.append(Patch(color=cmap[c], ec="0.2", lw=0.4))
                labels.append("   " + (_concept_value(c) if c != category else c))
        leg = ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                        fontsize=7, frameon=False, handlelength=1.4,
                        ncol=1 + (len(labels) > 24))
        for i in heads:  # the categories in bold, their concepts indented under them
            leg.get_texts()[i].set_fontweight("bold")
    else:
        ax.text(0.5, 0.5, "no detectors", transform=ax.transAxes, ha="center")
    fig.tight_layout()
    save_plot(path, fig)
    return path


#: One colour family (a sequential matplotlib colormap) per category, in category order.
_CATEGORY_FAMILIES = ("Blues", "Oranges", "Greens", "Purples", "Reds", "YlOrBr", "PuRd",
                      "BuGn", "RdPu", "YlGn")
#: Colour concepts are greys: no hue of theirs suggests a colour (a green "red").
_NEUTRAL_CATEGORIES = ("color", "colour")


def _concept_value(concept: str) -> str:
    """``"color=red"`` -> ``"red"``; a name without ``=`` stays as it is."""
    return concept.split("=", 1)[1] if "=" in concept else concept


def _luminance(rgba: Any) -> float:
    r, g, b = rgba[:3]
    return 0.299 * r + 0.587 * g + 0.114 * b


def concept_colors(concepts: Sequence[str], categories: Sequence[str]
                   ) -> tuple[dict[str, tuple], dict[str, tuple]]:
    """``({concept: rgba}, {category: rgba})``: colours by category, so concepts of different
    categories never look alike (``digit=3`` is an orange, ``color=red`` a grey): each
    category gets its own colour family (``_CATEGORY_FAMILIES``, in the order the
    categories first appear; cycled past ten; greys for a ``color``/``colour`` category, whose
    values name colours) and its concepts shades of it, light and dark alternating so
    neighbours in a stack differ; the category's own colour is its family's middle shade.
    Depends only on the concept list, so a concept keeps its colour whichever units detect
    it.

    Args:
      concepts: concept names.
      categories: the category of each concept (same length).

    Example:
      >>> from lucidax.probes import concept_colors
      >>> by_concept, by_category = concept_colors(["digit=3", "color=red"], ["digit", "color"])
      >>> sorted(by_category), len(by_concept["digit=3"])
      (['color', 'digit'], 4)
    """
    from matplotlib import colormaps

    concepts, categories = list(concepts), list(categories)
    if len(concepts) != len(categories):
        raise ValueError(f"{len(concepts)} concepts but {len(categories)} categories")
    members: dict[str, list[str]] = {}
    for c, k in zip(concepts, categories, strict=True):
        members.setdefault(k, []).append(c)
    colors: dict[str, tuple] = {}
    family: dict[str, tuple] = {}
    i = 0
    for k, cs in members.items():
        if k.lower() in _NEUTRAL_CATEGORIES:
            cm = colormaps["Greys"]
        else:
            cm = colormaps[_CATEGORY_FAMILIES[i % len(_CATEGORY_FAMILIES)]]
            i += 1
        family[k] = tuple(float(v) for v in cm(0.65))
        n = len(cs)
        shades = np.linspace(0.35, 0.9, n) if n > 1 else np.array([0.65])
        half = (n + 1) // 2  # interleave the lighter and the darker half
        order = [j // 2 if j % 2 == 0 else half + j // 2 for j in range(n)]
        for c, j in zip(cs, order, strict=True):
            colors[c] = tuple(float(v) for v in cm(float(shades[j])))
    return colors, family
