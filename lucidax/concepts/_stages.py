"""The resumable stages of ``lucidax concepts`` (private): each writes its files atomically
and records the fingerprint of what it depends on in ``<layer>/state.json``, so a killed run
resumes at the first stage not done and a run with other settings redoes only what they
change."""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from lucidax._files import image_grid, json_default, save_json, save_png
from lucidax.attribute import overlay
from lucidax.models import Model
from lucidax.visualize import default_init_sd

from ._discover import (
    crop_at,
    direction_activations,
    heatmaps,
    image_means,
    render_concepts,
    top_examples,
)
from ._factorization import Factorization, factorize
from ._importance import gradient_importance, importance_agreement, sobol_importance
from ._stability import stability

if TYPE_CHECKING:
    from ._job import ConceptsJob

_STATE = "state.json"
_FORMAT = 1  # bump when a stage's files or meaning change


def split_list(spec: str | Sequence[str]) -> list[str]:
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    return [s.strip() for s in items if s.strip()]


def fingerprint(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, default=json_default)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def layer_dir_name(layer: str) -> str:
    """A layer's folder name: ``[A-Za-z0-9._-]`` kept, anything else ``_``."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", layer)
    return "_" + name if name in ("", ".", "..") or name.startswith(".") else name



# ----------------------------------------------------------------------------------------------
# stages
# ----------------------------------------------------------------------------------------------
class State:
    """``<layer>/state.json``: the fingerprint of each finished stage."""

    def __init__(self, folder: str, force: bool):
        self.path = os.path.join(folder, _STATE)
        self.done: dict[str, str] = {}
        if not force and os.path.isfile(self.path):
            try:
                with open(self.path) as f:
                    self.done = dict(json.load(f).get("stages", {}))
            except (OSError, ValueError, AttributeError):
                self.done = {}

    def fresh(self, stage: str, fp: str, *files: str) -> bool:
        return self.done.get(stage) == fp and all(os.path.isfile(f) for f in files)

    def mark(self, stage: str, fp: str) -> None:
        self.done[stage] = fp
        save_json(self.path, {"format": _FORMAT, "stages": self.done})


def factorization_stage(state: State, folder: str, fp: str, layer: str, rows: np.ndarray,
                        job: ConceptsJob, progress: bool) -> Factorization:
    path = os.path.join(folder, "factorization.npz")
    if state.fresh("factorization", fp, path):
        return Factorization.load(path)
    kw: dict[str, Any] = {"progress": progress}
    if job.iterations is not None:
        kw["iterations" if job.method == "nmf" else "epochs"] = job.iterations
    if job.method == "sae":
        kw["topk"] = job.topk
    try:
        fact = factorize(rows, job.k, method=job.method, key=job.seed, **kw)
    except ValueError as e:  # e.g. NMF on a layer with negative activations
        raise ValueError(f"layer {layer!r}: {e}") from e
    fact.save(path)
    state.mark("factorization", fp)
    return fact


def _strip(tiles: Sequence[np.ndarray]) -> np.ndarray:
    return image_grid(np.stack(tiles), cols=len(tiles), pad=2)


def examples_stage(folder: str, images: np.ndarray, code_maps: np.ndarray,
                   grid: tuple[int, int], job: ConceptsJob) -> dict[str, Any]:
    """Top crops and heat-maps of every concept (PNGs), and their facts."""
    ex = top_examples(code_maps, job.top)
    k = code_maps.shape[-1]
    tile = 96
    best = code_maps.reshape(-1, k).argmax(-1)
    active = code_maps.reshape(-1, k) > 0
    facts = []
    for c in range(k):
        crops = [crop_at(images[i], p, grid, side=tile)
                 for i, p in zip(ex.image[c], ex.position[c], strict=True)]
        save_png(os.path.join(folder, "crops", f"{c:02d}.png"), _strip(crops))
        if job.heatmaps:
            idx = ex.image[c][: job.heatmaps]
            maps = heatmaps(code_maps[idx, :, :, c], tile)
            small = np.stack([crop_at(images[i], (0, 0), (1, 1), side=tile) for i in idx])
            save_png(os.path.join(folder, "heatmaps", f"{c:02d}.png"),
                     _strip(list(overlay(small, maps, cmap="inferno", signed=False))))
        facts.append({
            "concept": c,
            "top_images": ex.image[c].tolist(),
            "top_positions": ex.position[c].tolist(),
            "top_values": ex.value[c].tolist(),
            "share": float(np.mean(best == c)),
            "frequency": float(np.mean(active[:, c])),
        })
    return {"concepts": facts}


def renders_stage(state: State, folder: str, fp: str, model: Model, layer: str, fact,
                  rows: np.ndarray, n_images: int, job: ConceptsJob,
                  progress: bool) -> dict[str, Any]:
    """Every concept's render, and its activation against the natural images' (from the rows
    already extracted: no second pass over the images)."""
    path = os.path.join(folder, "renders.json")
    if state.fresh("renders", fp, path):
        with open(path) as f:
            return json.load(f)
    lite = model.name.startswith("efficientnet_lite")
    size = job.size or (128 if lite else min(model.input_spec.side or 128, 128))
    init_sd = job.init_sd if job.init_sd is not None else default_init_sd(model.name)
    res = render_concepts(model, model.params, layer, fact.W, steps=job.steps or 128, size=size,
                          model_side=size if lite else None, param=job.param, init_sd=init_sd,
                          seed=job.seed, progress=progress, memory_check=job.memory_check)
    for c, img in enumerate(res.images):
        save_png(os.path.join(folder, "renders", f"{c:02d}.png"), img)
    save_png(os.path.join(folder, "renders.png"), image_grid(res.images, pad=2))
    # how strongly each render drives its own direction, against the natural images
    rend = direction_activations(model, model.params, res.images, layer, fact.W,
                                 batch_size=job.batch_size)
    nat = image_means(rows, n_images) @ np.asarray(fact.W, np.float32).T
    own = np.diag(rend)
    nat_max = nat.max(axis=0)
    nat_p99 = np.percentile(nat, 99, axis=0)
    out = {
        "steps": res.steps, "size": res.size, "param": job.param, "init_sd": init_sd,
        "seconds": res.seconds,
        "concepts": [{
            "concept": c, "objective": float(res.objective[c]), "finite": bool(res.finite[c]),
            "activation": float(own[c]), "natural_max": float(nat_max[c]),
            "natural_p99": float(nat_p99[c]),
            "gain_vs_natural_max": float(own[c] / nat_max[c]) if nat_max[c] > 0 else None,
        } for c in range(len(own))],
    }
    save_json(path, out)
    state.mark("renders", fp)
    return out


def importance_stage(state: State, folder: str, fp: str, model: Model, layer: str, fact,
                     images: np.ndarray, target: tuple[int, str], job: ConceptsJob,
                     progress: bool) -> dict[str, Any]:
    """Sobol and gradient x concept importance on the most class-like images."""
    from lucidax.probes import extract

    tag = layer_dir_name(str(target[0]))
    path = os.path.join(folder, f"importance-{tag}.json")
    if state.fresh(f"importance-{tag}", fp, path):
        with open(path) as f:
            return json.load(f)
    logits = extract(model, model.params, images, model.logits_layer,
                     batch_size=job.batch_size, progress=False)[model.logits_layer]
    order = np.argsort(-np.asarray(logits)[:, target[0]], kind="stable")
    chosen = order[: job.importance_images]
    imgs = images[chosen].astype(np.float32) / 255.0
    t0 = time.perf_counter()
    sob = sobol_importance(model, model.params, imgs, layer, fact.W, fact.encode, target[0],
                           designs=job.designs, seed=job.seed, progress=progress)
    t1 = time.perf_counter()
    grad = gradient_importance(model, model.params, imgs, layer, fact.W, fact.encode,
                               target[0], progress=False)
    t2 = time.perf_counter()
    out = {
        "class": target[0], "label": target[1], "images": chosen.tolist(),
        "sobol": sob.to_dict(), "gradient": grad.to_dict(),
        "agreement": importance_agreement(sob, grad, absolute=True),
        "seconds": {"sobol": t1 - t0, "gradient": t2 - t1},
    }
    save_json(path, out)
    state.mark(f"importance-{tag}", fp)
    return out


def stability_stage(state: State, folder: str, fp: str, rows: np.ndarray, job: ConceptsJob,
                    progress: bool) -> list[dict[str, Any]]:
    """The stability table: every method of ``job.stability_methods`` over the seeds."""
    path = os.path.join(folder, "stability.json")
    if state.fresh("stability", fp, path):
        with open(path) as f:
            return json.load(f)["methods"]
    seeds = tuple(range(job.seed, job.seed + job.stability))
    table = []
    for m in split_list(job.stability_methods):
        kw: dict[str, Any] = {"topk": job.topk} if m == "sae" else {}
        if job.iterations is not None and m != "pca":
            kw["iterations" if m == "nmf" else "epochs"] = job.iterations
        t0 = time.perf_counter()
        st = stability(rows, job.k, method=m, seeds=seeds, resample=job.resample,
                       progress=progress, **kw)
        table.append({**st.to_dict(), "seconds": time.perf_counter() - t0})
    save_json(path, {"k": job.k, "seeds": list(seeds), "resample": job.resample,
                     "methods": table})
    state.mark("stability", fp)
    return table
