"""``build_gallery``: plan -> dataset examples -> render loop -> unit files -> HTML site."""

from __future__ import annotations

import dataclasses
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lucidax._batching import pad_batch
from lucidax._files import check_array_file
from lucidax._storage import Storage, check_out, open_storage

from . import _unit_scores
from ._config import GalleryConfig, ManifestMismatchError
from ._dataset import _DATASET_EXPECT, _Examples, _load_examples
from ._distributed import _gather_shards, _shared_run_id, claim_batches, init_distributed
from ._examples import ReceptiveField, _top_k_pass, receptive_fields
from ._io import clean_stale_tmp
from ._manifest import (
    FORMAT,
    MANIFEST,
    merge_entries,
    package_versions,
    params_sha256,
    read_manifest,
    settings_fingerprint,
    shard_name,
    summarize,
    unit_done,
    write_manifest,
)
from ._plan import (
    _Batch,
    _layer_dirs,
    _resolve_layers,
    _resolve_units,
    lpt_order,
    plan_batches,
    plan_costs,
)
from ._renderer import RESCUE_SD, _default_render, _objective_layer, _Renderer, _rescue
from ._site import ANALYSES, write_site
from ._write import _write_sheets, _write_unit

__all__ = ["GalleryReport", "build_gallery"]


@dataclasses.dataclass(frozen=True)
class GalleryReport:
    """What one :func:`build_gallery` call did (for this process).

    Attributes:
      out: the output folder.
      index: path of ``index.html`` (None on processes other than 0).
      manifest: path of the merged ``manifest.json``.
      process_id, num_processes: this process and how many took part.
      units_total: units requested (all processes).
      units_rendered: units this process rendered in this call.
      units_skipped: units of this process's share already finished (resume).
      failed_units: ``"layer/unit"`` of this process's renders that did not stay finite.
      elapsed_s: wall time of the call; render_s: of which rendering (batches incl. writes).
      silent_units: ``"layer/unit"`` of this process's share (rendered now or already done)
        that are silent: they never activate on the dataset images, or their renders never
        left their start (see :func:`lucidax.visualize.stuck_renders`).
      rescue_needed: units of the share whose default-start renders stayed silent, so they
        were re-rendered from a high-contrast start (``GalleryConfig.rescue``).
      rescue_succeeded: those of ``rescue_needed`` that the rescue woke up (their kept
        renders reach 2% of the dataset maximum, or > 0 without a dataset).
      scores_note: one line saying why the pages have no interpretability scores (the
        observer network is not installed, too few dataset images...), or None (scores
        made, or ``GalleryConfig.interpretability`` off).
      units_per_s: ``units_rendered / render_s`` (0.0 when nothing was rendered).

    Example:
      >>> from lucidax.gallery import GalleryConfig, build_gallery
      >>> config = GalleryConfig(model="starter", layers="conv1", units="0-1", size=32,
      ...                        top_k=0, dataset="none", transforms="none", rescue=False)
      >>> report = build_gallery(config, progress=False)
      >>> report.units_total, report.units_rendered, report.failed_units
      (2, 2, ())
      >>> build_gallery(config, progress=False).units_skipped  # a re-run resumes
      2
    """

    out: str
    index: str | None
    manifest: str
    process_id: int
    num_processes: int
    units_total: int
    units_rendered: int
    units_skipped: int
    failed_units: tuple[str, ...]
    elapsed_s: float
    render_s: float
    silent_units: tuple[str, ...] = ()
    rescue_needed: tuple[str, ...] = ()
    rescue_succeeded: tuple[str, ...] = ()
    scores_note: str | None = None

    @property
    def units_per_s(self) -> float:
        return self.units_rendered / self.render_s if self.render_s > 0 else 0.0


def build_gallery(
    config: GalleryConfig,
    *,
    progress: bool = True,
    model: Any = None,
    dataset: Any = None,
) -> GalleryReport:
    """Render every requested unit and write the gallery site to ``config.out``.

    Args:
      config: what to make (:class:`GalleryConfig`; every CLI flag is a field).
      progress: show tqdm progress bars (units/s and ETA).
      model: a :class:`lucidax.models.Model` to use instead of loading ``config.model``
        (e.g. a wrapped user model); its name and parameter hash go into the manifest.
      dataset: images for the top-k examples instead of ``config.dataset``: an array
        ``[N, H, W, C]`` or an object with ``.images`` (and optionally ``.labels`` and
        ``.label_names``, as returned by ``lucidax.models.starter.dataset``).

    Re-running the same call resumes: finished units (manifest entry + decodable PNGs) are
    skipped. Output made with other settings raises :class:`ManifestMismatchError` unless
    ``config.force``. With ``config.distributed`` every process calls this function; each
    renders its share, process 0 merges the manifests and writes the site.

    Returns:
      :class:`GalleryReport` for this process.

    Raises:
      GalleryConfigError: unknown layers, units out of range, a bad dataset path...
      ManifestMismatchError: ``config.out`` holds a gallery made with other settings.

    Example:
      >>> import os
      >>> from lucidax.gallery import GalleryConfig, build_gallery
      >>> config = GalleryConfig(model="starter", layers="conv3", units="0-3", size=32,
      ...                        steps=64, top_k=2, dataset_size=16, out="gallery")
      >>> report = build_gallery(config, progress=False)
      >>> report.units_rendered, os.path.relpath(report.index)
      (4, 'gallery/index.html')
      >>> sorted(os.listdir("gallery/conv3"))[:4]
      ['0.html', '0.png', '0_loss.png', '1.html']
    """
    from .._compile_cache import enable_for_job  # on unless turned off: see there

    enable_for_job()
    return _build(config, progress=progress, model=model, dataset=dataset)


def _build(
    config: GalleryConfig,
    *,
    progress: bool = True,
    model: Any = None,
    dataset: Any = None,
    render_fn: Callable | None = None,
    channel_fn: Callable | None = None,
    observer: Any = None,
) -> GalleryReport:
    """:func:`build_gallery`, with the render and objective functions and the
    interpretability observer ``(model, layer)`` replaceable (tests)."""
    t_start = time.perf_counter()
    run = _start(config, model, render_fn, channel_fn, dataset)
    config, model = run.config, run.model
    storage, listing = _open_out(config.out, run.tag)  # a URL: staging folder + publishing
    out = storage.local
    out.mkdir(parents=True, exist_ok=True)
    out = out.resolve()
    clean_stale_tmp(out, tag=run.tag)
    dirs = _layer_dirs(model.layer_names)
    examples = _load_examples(config, model, dataset, progress)
    top_k = min(config.top_k, len(examples.images)) if examples is not None else 0
    settings = _settings(config, model, examples, top_k)
    fingerprint = settings_fingerprint(settings)
    known, old_layers = _existing(out, fingerprint, settings, force=config.force)
    scorer, scores_note = _unit_scores.setup(config, model, examples, out, fingerprint,
                                             observer=observer, tag=run.tag)

    # ---- the global plan and what of it is already done; several processes claim the
    # unfinished batches one at a time from a shared queue, most costly first (_distributed)
    batches = plan_batches(run.layer_units, config.batch_size)
    done = {
        (b.layer, u) for b in batches for u in b.units
        if not config.force and unit_done(out, known.get(b.layer, {}).get(str(u)), listing)
    }
    # finished units stay in the shard of their batch's round-robin process
    mine = [b for b in batches if b.index % run.nproc == run.pid]
    my_units = {(b.layer, u) for b in mine for u in b.units}
    done_mine = done & my_units
    todo = [b for b in batches if any((b.layer, u) not in done for u in b.units)]
    costs = plan_costs(config, model, todo, known) if run.nproc > 1 else {}
    run_id = _shared_run_id(run.nproc)

    rfs, layer_info = _layer_facts(config, model, tuple(run.layer_units), dirs, old_layers)
    header = {
        "format": FORMAT,
        "fingerprint": fingerprint,
        "settings": settings,
        "config": config.to_dict(),
        "versions": package_versions(),
        "model": {
            "name": model.name,
            "weights_source": getattr(model, "weights_source", None),
            "weights_sha256": _weights_file_sha(config, model),
            "params_sha256": settings["params_sha256"],
            "input_side": model.input_spec.side,
        },
        "dataset": settings["dataset"],
        "layout": {"tile": config.size, "variants": config.variants, "examples": top_k},
        "layers": layer_info,
    }
    shard = _Shard(out, header, run, run_id,
                   # single process: the shard *is* manifest.json; it keeps every other entry
                   keep_other=_without(known, my_units) if run.nproc == 1 else {},
                   storage=storage)
    for layer, u in sorted(done_mine):  # my shard starts with what is finished of my share
        shard.entries.setdefault(layer, {})[str(u)] = known[layer][str(u)]
    shard.write(complete=False)

    # ---- dataset examples for the layers this process renders: one streaming pass
    todo_layers = tuple(dict.fromkeys(b.layer for b in todo))
    topk, every = (
        _top_k_pass(model, examples.images, todo_layers, top_k, progress=progress,
                    keep_all=scorer is not None and run.pid == 0)
        if examples is not None and top_k and todo_layers
        else ({}, {})
    )
    for layer, acts in every.items():  # the interpretability scores' rankings
        _unit_scores.save_acts(scorer, dirs[layer], acts)
    t_render = time.perf_counter()
    work = todo if run.nproc == 1 else claim_batches(
        lpt_order(todo, costs), out, run_id, run.pid, run.nproc, costs=costs, plan=batches,
        timeout=config.shard_timeout)
    rendered, failed = _render_all(
        out, run, work, done, shard, topk, rfs, examples, dirs, top_k, progress, scorer)
    render_s = time.perf_counter() - t_render
    shard.write(complete=True)

    if run.pid == 0:
        index, note = _finish(out, run, run_id, header, known, shard, storage, listing,
                              scorer, examples, progress)
        scores_note = scores_note or note
    else:
        index = None
    share = summarize(shard.entries)  # this process's share, rendered now or before
    storage.close()  # a URL's staging folder: everything is published
    return GalleryReport(
        out=config.out if storage.remote else str(out),
        index=None if index is None else storage.url_of("index.html") if storage.remote
        else index,
        manifest=storage.url_of(MANIFEST) if storage.remote else str(out / MANIFEST),
        process_id=run.pid,
        num_processes=run.nproc,
        units_total=sum(len(v) for v in run.layer_units.values()),
        units_rendered=rendered,
        units_skipped=len(done_mine),
        failed_units=tuple(failed),
        elapsed_s=time.perf_counter() - t_start,
        render_s=render_s,
        silent_units=tuple(share["silent"]),
        rescue_needed=tuple(share["rescue"]["needed"]),
        rescue_succeeded=tuple(share["rescue"]["succeeded"]),
        scores_note=scores_note,
    )


# --------------------------------------------------------------------------------------------
# the steps of a build


@dataclasses.dataclass(frozen=True)
class _Run:
    """A checked build: the resolved config, the model, this process and the units."""

    config: GalleryConfig
    model: Any
    render_fn: Callable
    channel_fn: Callable
    pid: int
    nproc: int
    layer_units: dict[str, tuple[int, ...]]

    @property
    def tag(self) -> str:  # temp-file tag of this process
        return f"p{self.pid}"


def _start(config: GalleryConfig, model: Any, render_fn: Callable | None,
           channel_fn: Callable | None, dataset: Any) -> _Run:
    """Check the input (bad paths fail in one line before the model is loaded), join the
    distributed job, load the model, resolve the config's presets, layers and units, and
    check memory -- all before anything is written."""
    if not isinstance(config, GalleryConfig):
        raise TypeError(f"build_gallery takes a GalleryConfig, got {type(config).__name__}")
    check_out(config.out)  # a folder, or a URL whose fsspec backend is installed
    if dataset is None and config.dataset not in ("auto", "none") \
            and not config.dataset.startswith("builtin:") and Path(config.dataset).is_file():
        check_array_file(config.dataset, expect=_DATASET_EXPECT)
    pid, nproc = init_distributed(config) if config.distributed else (0, 1)
    if model is None:
        from lucidax.models import load

        model = load(config.model, config.weights)
    if render_fn is None or channel_fn is None:
        r, c = _default_render()
        render_fn, channel_fn = render_fn or r, channel_fn or c
    config = config.resolved(model.name)  # unset fields from the model's preset
    layers = _resolve_layers(model, config.layers)
    layer_units = _resolve_units(model, layers, config.units)
    if config.memory_check:  # before the output folder or anything in it is made
        _check_memory(config, model, layer_units)
    return _Run(config, model, render_fn, channel_fn, pid, nproc, layer_units)


def _settings(config: GalleryConfig, model, examples: _Examples | None,
              top_k: int) -> dict[str, Any]:
    """The settings that decide the pixels: a gallery resumes only with the same ones."""
    settings = {
        "format": FORMAT,
        "model": model.name,
        "params_sha256": params_sha256(model.params),
        "steps": config.steps,
        "size": config.size,
        "variants": config.variants,
        "lr": config.lr,
        "transforms": config.transforms,
        "pre_relu": config.pre_relu,
        "init_sd": config.init_sd,
        "rescue": RESCUE_SD if config.rescue else None,
        "seed": config.seed,
        "top_k": top_k,
        "dataset": None
        if examples is None
        else {"source": examples.source, "n": len(examples.images), "sha256": examples.sha256},
    }
    if config.model_side:  # only when set: galleries made before the field still resume
        settings["model_side"] = config.model_side
    return settings


def _existing(out: Path, fingerprint: str, settings: dict[str, Any], *, force: bool,
              ) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """``(unit entries, layer facts)`` of the manifest and shards already in ``out`` made
    with the same settings; other settings raise :class:`ManifestMismatchError` unless
    ``force``."""
    base = read_manifest(out / MANIFEST)
    shards = [read_manifest(p) for p in sorted(out.glob("manifest.*.json"))]
    for m in [base, *shards]:
        if m is not None and m.get("fingerprint") != fingerprint and not force:
            raise ManifestMismatchError(_mismatch_message(out, m.get("settings", {}), settings))
    valid = [m for m in [base, *shards] if m is not None and m.get("fingerprint") == fingerprint]
    old_layers: dict[str, Any] = {}
    for m in valid:
        old_layers.update(m.get("layers", {}))
    return merge_entries(*valid), old_layers


def _layer_facts(config: GalleryConfig, model, layers: tuple[str, ...], dirs: dict[str, str],
                 old_layers: dict[str, Any],
                 ) -> tuple[dict[str, ReceptiveField], dict[str, Any]]:
    """Receptive fields (cheap, deterministic: every process measures the missing ones) and
    the manifest's per-layer facts, in the model's layer order."""
    layer_info = dict(old_layers)
    rfs: dict[str, ReceptiveField] = {}
    for layer in layers:
        cached = old_layers.get(layer, {}).get("rf")
        if cached:
            rfs[layer] = ReceptiveField.from_dict(cached)
    missing_rf = [layer for layer in layers if layer not in rfs]
    if missing_rf:
        rfs.update(receptive_fields(model, missing_rf, seed=config.seed))
    for layer in layers:
        labels = None
        if model.labels is not None and layer == model.logits_layer:
            if len(model.labels) == model.layers[layer].channels:
                labels = [str(s) for s in model.labels]
        layer_info[layer] = {
            "dir": dirs[layer],
            "channels": model.layers[layer].channels,
            "kind": model.layers[layer].kind,
            "objective_layer": _objective_layer(model, layer, config),
            "rf": rfs[layer].to_dict(),
            "unit_labels": labels,
        }
    ordered = {k: layer_info[k] for k in model.layer_names if k in layer_info}
    ordered.update({k: v for k, v in layer_info.items() if k not in ordered})
    return rfs, ordered


class _Shard:
    """This process's manifest shard: its finished entries, rewritten after every batch."""

    def __init__(self, out: Path, header: dict[str, Any], run: _Run, run_id: str,
                 keep_other: dict[str, Any], storage: Storage | None = None):
        self.path = out / shard_name(run.pid, run.nproc)
        self.header, self.run, self.run_id, self.keep_other = header, run, run_id, keep_other
        self.storage = storage
        self.entries: dict[str, dict[str, Any]] = {}

    def write(self, *, complete: bool) -> None:
        """Write the shard; for a URL, publish first the new units' files, then the shard (so
        a SIGKILL loses at most the batch in flight, and no entry names a missing file)."""
        if self.storage is not None and self.storage.remote:
            self.storage.publish(e[k] for us in self.entries.values() for e in us.values()
                                 for k in ("grid", "loss_png") if e.get(k))
        write_manifest(
            self.path,
            self.header,
            merge_entries({"units": self.keep_other}, {"units": self.entries}),
            tag=self.run.tag,
            run_id=self.run_id,
            process=self.run.pid,
            num_processes=self.run.nproc,
            complete=complete,
        )
        if self.storage is not None:
            self.storage.publish([self.path.name])


def _render_all(out: Path, run: _Run, todo: Iterable[_Batch], done: set[tuple[str, int]],
                shard: _Shard, topk: dict[str, Any], rfs: dict[str, ReceptiveField],
                examples: _Examples | None, dirs: dict[str, str], top_k: int,
                progress: bool, scorer: _unit_scores.Scorer | None = None,
                ) -> tuple[int, list[str]]:
    """Render the batches ``todo`` (a list, or the batches this process claims as it goes)
    and write their units (the shard after every batch); returns ``(units rendered,
    "layer/unit" of those that did not stay finite)``. Entries record when their batch
    started and finished (``started_at``/``finished_at``, Unix seconds)."""
    config = run.config
    renderer = _Renderer(config, run.model, run.render_fn, run.channel_fn)
    n_todo = (sum(1 for b in todo for u in b.units if (b.layer, u) not in done)
              if isinstance(todo, Sequence) else None)  # None: claimed as it goes
    failed: list[str] = []
    rendered = 0
    bar = None
    if progress and n_todo != 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_todo, unit="unit", position=0, dynamic_ncols=True,
                   desc=f"gallery {run.nproc}x" if run.nproc > 1 else "gallery")
    try:
        for b in todo:
            if bar is not None:
                bar.set_postfix_str(f"{b.layer} {b.units[0]}-{b.units[-1]}", refresh=False)
            t0, started_at = time.perf_counter(), time.time()
            padded = pad_batch(np.asarray(b.units), b.width).tolist()  # one shape per layer
            res = renderer(b.layer, padded)
            rescued: set[int] = set()
            woke: dict[int, bool] = {}
            if config.rescue:
                res, rescued, woke = _rescue(renderer, b, padded, res, topk.get(b.layer))
            new = [(j, u) for j, u in enumerate(b.units) if (b.layer, u) not in done]
            dt = (time.perf_counter() - t0) / max(len(new), 1)
            for j, u in new:
                entry = _write_unit(out, config, b, j, u, res, rfs.get(b.layer),
                                    topk.get(b.layer), examples, dirs[b.layer], top_k, run.tag)
                entry.update(
                    start="rescue" if j in rescued else "default",
                    rescue=None if j not in woke else "succeeded" if woke[j] else "failed",
                    batch=b.index,
                    process=run.pid,
                    time_s=round(dt, 4),
                )
                shard.entries.setdefault(b.layer, {})[str(u)] = entry
                if entry["status"] == "failed":
                    failed.append(f"{b.layer}/{u}")
            if scorer is not None and new:  # the observer's view of the renders, one call
                v = config.variants
                ims = np.concatenate([res["images"][j * v:(j + 1) * v] for j, _ in new])
                ims = np.where(np.isfinite(ims), ims, 0.5)
                feats = scorer.features(ims).reshape(len(new), v, -1)
                for (_, u), f in zip(new, feats, strict=True):
                    scorer.save_features(dirs[b.layer], u, f)
            finished_at = time.time()
            for _, u in new:
                shard.entries[b.layer][str(u)].update(started_at=round(started_at, 3),
                                                      finished_at=round(finished_at, 3))
            rendered += len(new)
            shard.write(complete=False)
            if bar is not None:
                bar.update(len(new))
    finally:
        if bar is not None:
            bar.close()
    return rendered, failed


def _finish(out: Path, run: _Run, run_id: str, header: dict[str, Any],
            known: dict[str, Any], shard: _Shard, storage: Storage,
            listing: dict[str, int] | None, scorer: _unit_scores.Scorer | None = None,
            examples: _Examples | None = None, progress: bool = False,
            ) -> tuple[str, str | None]:
    """Process 0: merge every shard into ``manifest.json``, write the contact sheets and the
    site; returns the index path. For a URL: the shards come from it, the unit grids and
    analyses the site shows are fetched, and every new file goes to it (index.html last)."""
    manifest_path = out / MANIFEST
    if run.nproc > 1:
        entries = _gather_shards(out, run.nproc, run_id, run.config.shard_timeout,
                                 shard.entries, run.pid,
                                 pull=storage.pull if storage.remote else None)
        merged = merge_entries({"units": known}, {"units": entries})
        write_manifest(manifest_path, header, merged, tag=run.tag, run_id=run_id, complete=True)
        storage.publish([MANIFEST])
    # every shard (this run's, or a killed earlier run's, already read into `known`) is now
    # part of manifest.json
    shards = {p.name for p in out.glob("manifest.*.json")}
    shards.update(k for k in listing or {} if _SHARD.fullmatch(k))
    for name in shards:
        try:
            (out / name).unlink()
        except FileNotFoundError:
            pass
    storage.remove(sorted(shards))
    final = read_manifest(manifest_path)
    if final is None:
        raise RuntimeError(f"{manifest_path} could not be read back")
    if storage.remote:  # what the sheets and the site read: every grid, the analyses
        storage.pull([e["grid"] for us in final["units"].values() for e in us.values()
                      if e.get("grid") and not (out / e["grid"]).is_file()]
                     + [k for k in listing or {} if k.split("/", 1)[0] in ANALYSES])
    _write_sheets(out, final, run.tag)
    note = None
    if scorer is not None:
        try:
            final["interpretability"] = _unit_scores.compute(scorer, out, final, run.model,
                                                             examples, progress)
        except ValueError as err:  # e.g. too few images outside a task's photos
            note = f"{_unit_scores.NOTE_OFF}: {err}"
    index = str(write_site(out, final, tag=run.tag))
    storage.publish_changed(last=["index.html"])
    return index, note


_SHARD = re.compile(r"manifest\.\d+\.json")


def _open_out(out: str, tag: str) -> tuple[Storage, dict[str, int] | None]:
    """The output's :class:`~lucidax._storage.Storage` and, for a URL, the listing of its
    files (one request: what :func:`unit_done` checks on resume), with the manifest and the
    shards copied into the staging folder and this process's stale temp files removed."""
    storage = open_storage(out, tag=tag)
    if not storage.remote:
        return storage, None
    listing = storage.listing()
    storage.clean_tmp(listing)
    storage.pull(k for k in listing if k == MANIFEST or _SHARD.fullmatch(k))
    return storage, listing


def _check_memory(config: GalleryConfig, model, layer_units: dict[str, Sequence[int]]) -> None:
    """Refuse a gallery whose largest render batch cannot fit in memory (see
    :mod:`lucidax._memory`)."""
    from lucidax._memory import check_memory, estimate_render

    worst, worst_layer = None, None
    for layer, units in layer_units.items():
        if not units:
            continue
        need = estimate_render(
            model, _objective_layer(model, layer, config),
            batch=min(config.batch_size, len(units)) * config.variants, size=config.size,
            model_side=config.model_side or None, transforms=config.transforms != "none")
        if need is not None and (worst is None or need > worst):
            worst, worst_layer = need, layer
    if worst_layer is None:
        return
    n = min(config.batch_size, len(layer_units[worst_layer])) * config.variants
    check_memory(worst, f"rendering {worst_layer} ({n} images at once) at {config.size} px",
                 hint="lower --size/--batch-size/--variants")


def _without(entries: dict[str, dict[str, Any]], drop: set[tuple[str, int]]) -> dict:
    return {
        layer: {u: e for u, e in us.items() if (layer, int(u)) not in drop}
        for layer, us in entries.items()
    }


def _weights_file_sha(config: GalleryConfig, model) -> str | None:
    from lucidax.models import weights_sha256

    path = config.weights
    if path is None:
        try:
            from lucidax.models import get_entry

            path = get_entry(config.model).default_weights if model.name == config.model else None
            path = path() if callable(path) else path  # weights inside another package
        except (KeyError, ValueError, ImportError):
            path = None
    if path is None or not os.path.isfile(path):
        return None
    return weights_sha256(path)


def _mismatch_message(out: Path, old: dict[str, Any], new: dict[str, Any]) -> str:
    diffs = [
        f"{k}: {old.get(k)!r} there, {new.get(k)!r} now"
        for k in sorted(set(old) | set(new))
        if old.get(k) != new.get(k)
    ]
    shown = "; ".join(d if len(d) < 200 else d[:200] + "..." for d in diffs) or "format changed"
    return (
        f"{out} holds a gallery made with different settings ({shown}). Re-run with the same "
        f"settings to resume it, choose another output folder, or pass force=True (--force) to "
        f"re-render everything there."
    )

