"""The ``lucidax`` command. Each subcommand parses its flags and calls one library function."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["main"]

_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def _command(name: str):
    def deco(fn):
        _COMMANDS[name] = fn
        return fn

    return deco


_WEIGHTS_HELP = ("checkpoint file (.pth/.pt/.bin/.safetensors/.npz), or 'random' (default: the "
                 "model's shipped weights; a model that ships none runs with random weights "
                 "and says so)")


# --- models ------------------------------------------------------------------------------------
@_command("models")
def _cmd_models(args: argparse.Namespace) -> int:
    from lucidax import models

    if args.name is None:
        if args.json:
            print(json.dumps([_model_row(name) for name in models.list_models()], indent=2))
            return 0
        for name in models.list_models():
            print(name)
        return 0
    model = models.load(args.name, weights=args.weights)
    side = args.side or model.input_spec.side
    rows = []
    for name in model.layer_names:
        info = model.layers[name]
        if info.pre_relu and not args.pre_relu:
            continue
        shape = model.layer_shape(name, side) if args.shapes else None
        rows.append({"layer": name, "kind": info.kind, "channels": info.channels, "shape": shape})
    if args.json:
        print(json.dumps({"model": repr(model), "input_spec": vars(model.input_spec),
                          "layers": rows}, indent=2, default=list))
    else:
        print(repr(model))
        print(f"input: {model.input_spec}")
        for r in rows:
            shape = f"  {r['shape']}" if r["shape"] else ""
            print(f"  {r['layer']:<40} {r['kind']:<6} {r['channels']:>6}{shape}")
    return 0


def _model_row(name: str) -> dict[str, Any]:
    """``lucidax models --json``: one zoo entry, without building the model or reading its
    weights: name, description, input side (as the description states it, else None), where
    its default weights come from (shipped, package or random) and whether they are there."""
    from lucidax.models.registry import MissingWeightsError, get_entry

    entry = get_entry(name)
    side = re.search(r"\b(\d+) px\b", entry.description)  # the descriptions name it
    row = {"name": name, "description": entry.description,
           "side": int(side.group(1)) if side else None}
    w = entry.default_weights
    if w is None:
        return {**row, "weights": "random", "weights_available": False}
    try:
        available = os.path.isfile(w() if callable(w) else w)
    except MissingWeightsError:
        available = False
    return {**row, "weights": "package" if callable(w) else "shipped",
            "weights_available": available}


def _add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list models, or the layers of one model")
    p.add_argument("name", nargs="?", help="model to describe (omit to list the zoo)")
    p.add_argument("--weights", help=_WEIGHTS_HELP)
    p.add_argument("--pre-relu", action="store_true", help="also list *_pre_relu layers")
    p.add_argument("--shapes", action="store_true", help="compute activation shapes")
    p.add_argument("--side", type=int, help="input side for --shapes (default: model's)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


# --- dataclass-driven subcommands (flags = fields; help = the dataclass's docstring) -----------
def _field_help(cls: type) -> dict[str, str]:
    """``{field: text}`` from a Google-style ``Attributes:`` docstring section."""
    out: dict[str, str] = {}
    current = None
    for line in (cls.__doc__ or "").splitlines():
        m = re.match(r"^\s{6}([a-z_, ]+):\s*(.*)$", line)
        if m:
            names = [n.strip() for n in m.group(1).split(",")]
            current = names
            for n in names:
                out[n] = m.group(2)
        elif current and line.startswith(" " * 8) and line.strip():
            for n in current:
                out[n] += " " + line.strip()
        else:
            current = None
    return out


def _add_dataclass_flags(
    p: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = (),
    presets: dict[str, dict[str, Any]] | None = None,
) -> None:
    """One flag per field of ``cls``; help from the field's ``metadata["help"]`` (else its
    docstring entry). ``presets``: ``{family: {field: value}}`` for fields whose None default
    means "from the model's preset" (their help lists the presets' values)."""
    helps = _field_help(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        text = f.metadata.get("help") or helps.get(f.name, "").replace("``", "")
        text = text.replace("%", "%%")
        default = f.default
        if isinstance(default, bool):
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                           default=default, help=f"{text} (default: {'on' if default else 'off'})")
            continue
        kind = type(default) if default is not None and not isinstance(default, tuple) else str
        if default is None:  # Optional field: take the type from the annotation's first type
            ann = str(f.type).strip()
            kind = int if ann.startswith("int") else float if ann.startswith("float") else str
        if default is None and presets and any(f.name in v for v in presets.values()):
            shown = "the model's preset: " + "; ".join(
                f"{family}: {values[f.name]}" for family, values in presets.items())
        elif default is None:
            shown = None
        else:
            shown = default
        suffix = f" (default: {shown})" if shown is not None and "(default:" not in text else ""
        p.add_argument(flag, dest=f.name, type=kind, default=default,
                       help=f"{text}{suffix}".replace("%%%%", "%%"))


def _dataclass_from_args(cls: type, args: argparse.Namespace) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in vars(args).items() if k in names})


def _add_memory_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--memory-check", action=argparse.BooleanOptionalAction, default=True,
                   help="refuse, before anything is written, a job whose estimated memory "
                        "need exceeds the available memory (--no-memory-check tries anyway)")


def _few(names: Sequence[str], n: int = 10) -> str:
    """``a, b, c`` (the first ``n``, then ``... (+k more)``)."""
    more = f", ... (+{len(names) - n} more)" if len(names) > n else ""
    return ", ".join(names[:n]) + more


# --- render ------------------------------------------------------------------------------------
@_command("render")
def _cmd_render(args: argparse.Namespace) -> int:
    from lucidax.visualize.jobs import RenderJob, render_job

    summary = render_job(_dataclass_from_args(RenderJob, args), progress=not args.quiet)
    bad = [r["unit"] for r in summary["units"] if not r["finite"]]
    silent = [str(r["unit"]) for r in summary["units"] if r.get("silent")]
    note = f" ({len(silent)} silent: {_few(silent)})" if silent else ""
    print(f"rendered {len(summary['units'])} units of {args.layer}{note} -> {summary['grid']}")
    if bad:
        print(f"non-finite (not written): units {bad}", file=sys.stderr)
        return 1
    return 0


def _add_render(sub: argparse._SubParsersAction) -> None:
    from lucidax.visualize.jobs import RenderJob

    p = sub.add_parser("render", help="render units of one layer to PNGs (activation maximization)")
    _add_dataclass_flags(p, RenderJob)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


# --- invert ----------------------------------------------------------------------------------
@_command("invert")
def _cmd_invert(args: argparse.Namespace) -> int:
    from lucidax.visualize.invert import run_invert_cli

    run = run_invert_cli(
        args.model, weights=args.weights, layers=args.layers, images=args.images, out=args.out,
        steps=args.steps, mode=args.mode, loss=args.loss, size=args.size, seed=args.seed,
        learning_rate=args.learning_rate, tv=args.tv, jitter_px=args.jitter,
        scale=args.scale, progress=not args.quiet, memory_check=args.memory_check,
    )
    print(run.table)
    for kind, path in run.files.items():
        print(f"{kind}: {path}")
    return 0


def _add_invert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("invert", help="reconstruct images from a layer's activations (feature "
                                      "inversion) or draw caricatures; writes a side-by-side grid")
    p.add_argument("--model", default="starter", help="registered model name (default: starter)")
    p.add_argument("--weights", help=_WEIGHTS_HELP)
    p.add_argument("--layers", required=True,
                   help="comma-separated layer names, one grid column each (e.g. conv1,conv3)")
    p.add_argument("--images", nargs="+", default="auto",
                   help="auto (the model's images: starter: 4 builtin:starter:test images; "
                        "other RGB models: the whole photos astronaut, chelsea, coffee, "
                        "rocket), or image files (centre-cropped to a square and resized to "
                        "--size), builtin:photos (every photo shipped in installed packages), "
                        "builtin:photos:<source> (one, e.g. builtin:photos:chelsea) or "
                        "builtin:starter[:test|:train] (its first 4 images) (default: auto)")
    p.add_argument("--out", default="invert-out",
                   help="output folder: grid.png, <image>/<layer>.png, metrics.json "
                        "(default: invert-out)")
    p.add_argument("--mode", default="invert", choices=("invert", "caricature"),
                   help="invert: match the activations; caricature: exaggerate them "
                        "(default: invert)")
    p.add_argument("--loss", default="l2", choices=("l2", "cosine"),
                   help="inversion loss (default: l2)")
    p.add_argument("--steps", type=int, default=256, help="optimization steps (default: 256)")
    p.add_argument("--size", type=int, help="image side (default: the model's input side)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--learning-rate", type=float, default=0.05, help="Adam (default: 0.05)")
    p.add_argument("--tv", type=float, default=0.5,
                   help="total-variation prior weight per pixel value (default: 0.5; 0: off)")
    p.add_argument("--jitter", type=int, default=0,
                   help="random shift of up to this many px per step (default: 0)")
    p.add_argument("--scale", type=int, default=2, help="grid PNG enlargement (default: 2)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_memory_flag(p)


# --- probe -------------------------------------------------------------------------------------
@_command("probe")
def _cmd_probe(args: argparse.Namespace) -> int:
    from lucidax.probes import run_probe_cli

    run = run_probe_cli(
        args.model, weights=args.weights, layers=args.layers, data=args.data,
        target=args.target, out=args.out, reduce=args.reduce, n=args.n, seed=args.seed,
        batch_size=args.batch_size, cache_dir=args.cache_dir, folds=args.folds,
        test_size=args.test_size, progress=not args.quiet, memory_check=args.memory_check,
    )
    print(run.table)
    for kind, path in run.files.items():
        print(f"{kind}: {path}")
    return 0


def _add_probe(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("probe", help="linear probes of every layer for a label family")
    p.add_argument("--model", default="starter", help="registered model name (default: starter)")
    p.add_argument("--weights", help=_WEIGHTS_HELP)
    p.add_argument("--layers", default="all",
                   help="'all' (every layer except *_pre_relu) or comma-separated names")
    p.add_argument("--data", default="auto",
                   help="auto (the model's data: builtin:starter for starter, builtin:photos "
                        "for other RGB models), builtin:starter[:train|:test], "
                        "builtin:photos[:<source>] (crops of real photos shipped in installed "
                        "packages, label: source), an image folder (sub-folder per class or "
                        "labels.csv) or a CSV filename,label[,...] (default: auto)")
    p.add_argument("--target", help="label family / CSV column (starter: digit, color, "
                                     "background, position, size; photos: source)")
    p.add_argument("--out", default="probe-out", help="output folder (default: probe-out)")
    p.add_argument("--reduce", default="mean",
                   help="spatial reduction: mean, max, center, grid4, position:y,x (default: mean)")
    p.add_argument("--n", type=int, default=2000, help="images of builtin data (default: 2000)")
    p.add_argument("--seed", type=int, default=0, help="data and split seed (default: 0)")
    p.add_argument("--batch-size", type=int, default=64, help="extraction batch (default: 64)")
    p.add_argument("--cache-dir", help="feature cache (default: <out>/feature-cache)")
    p.add_argument("--folds", type=int, default=5, help="CV folds (default: 5)")
    p.add_argument("--test-size", type=float, default=0.25, help="held-out share (default: 0.25)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_memory_flag(p)


# --- tcav ------------------------------------------------------------------------------------
@_command("tcav")
def _cmd_tcav(args: argparse.Namespace) -> int:
    from lucidax.probes.tcav import run_tcav_cli

    run = run_tcav_cli(
        args.model, weights=args.weights, layers=args.layers,
        concepts=[c.strip() for c in args.concepts.split(",") if c.strip()],
        target_class=args.target_class, random=args.random, targets=args.targets,
        runs=args.runs, n_concept=args.n_concept, n_random=args.n_random,
        n_targets=args.n_targets, out=args.out, reduce=args.reduce,
        correction=args.correction, alpha=args.alpha, equal_var=args.student,
        split=args.split, seed=args.seed, cache_dir=args.cache_dir,
        batch_size=args.batch_size, progress=not args.quiet, memory_check=args.memory_check,
    )
    print(run.table)
    for kind, path in run.files.items():
        print(f"{kind}: {path}")
    return 0


def _add_tcav(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tcav", help="TCAV: does a concept push a class logit up? (CAVs + significance test)")
    p.add_argument("--model", default="starter", help="registered model name (default: starter)")
    p.add_argument("--weights", help=_WEIGHTS_HELP)
    p.add_argument("--layers", default="all",
                   help="'all' (every layer except *_pre_relu and the logits) or "
                        "comma-separated names")
    p.add_argument("--concepts", required=True,
                   help="comma-separated: family:value (starter images with that family "
                        "fixed: color:red, background:grass, position:top-left, size:large), "
                        "a folder of concept images, or name=folder")
    p.add_argument("--class", dest="target_class", required=True,
                   help="class label or logit index (starter: 0..9)")
    p.add_argument("--random", default="auto",
                   help="random images: auto (builtin:starter for starter, builtin:photos for "
                        "other RGB models), builtin:starter[:train|:test], builtin:photos "
                        "(crops of real photos) or a folder (default: auto)")
    p.add_argument("--targets", default="auto",
                   help="inputs of the class: auto (starter: builtin:starter; other RGB "
                        "models: builtin:photos, crops of every photo whatever the class; "
                        "give class images for a per-class test), builtin:starter (starter "
                        "digits of the class), builtin:photos[:<source>] (crops of the "
                        "photos or of one, e.g. builtin:photos:chelsea) or a folder "
                        "(default: auto)")
    p.add_argument("--runs", type=int, default=20,
                   help="concept runs and random-vs-random runs (default: 20)")
    p.add_argument("--n-concept", type=int, default=50, help="concept images per run (default: 50)")
    p.add_argument("--n-random", type=int, default=50, help="random images per run (default: 50)")
    p.add_argument("--n-targets", type=int, default=100,
                   help="class inputs of builtin targets (default: 100)")
    p.add_argument("--reduce", default="mean", choices=("mean", "flatten"),
                   help="CAV space: mean (channels, default) or flatten (H*W*C)")
    p.add_argument("--correction", default="holm", choices=("holm", "bh", "bonferroni", "none"),
                   help="multiple-comparison adjustment over concepts x layers (default: holm)")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level (default: 0.05)")
    p.add_argument("--student", action="store_true",
                   help="Student's pooled-variance t-test (the paper's) instead of Welch's")
    p.add_argument("--split", default="test", choices=("train", "test"),
                   help="starter split of builtin sources (default: test)")
    p.add_argument("--seed", type=int, default=0, help="data and run-set seed (default: 0)")
    p.add_argument("--out", default="tcav-out", help="output folder (default: tcav-out)")
    p.add_argument("--cache-dir", help="feature/gradient cache (default: <out>/cache)")
    p.add_argument("--batch-size", type=int, default=50,
                   help="forward/backward batch (default: 50)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_memory_flag(p)


# --- dissect ---------------------------------------------------------------------------------
@_command("dissect")
def _cmd_dissect(args: argparse.Namespace) -> int:
    from lucidax.probes.dissect import run_dissect_cli

    run = run_dissect_cli(
        args.model, weights=args.weights, layers=args.layers, data=args.data, n=args.n,
        seed=args.seed, quantile=args.quantile, iou_threshold=args.iou_threshold,
        quantile_passes=args.quantile_passes, size=args.size, out=args.out,
        batch_size=args.batch_size, progress=not args.quiet, memory_check=args.memory_check,
    )
    print(run.table)
    for kind, path in run.files.items():
        print(f"{kind}: {path}")
    return 0


def _add_dissect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dissect", help="network dissection: which units detect which concepts (IoU of masks)",
        description="For every unit of the conv layers: threshold its activation map at the "
        "top quantile over the dataset, upsample it to the mask size and compute its "
        "dataset-level IoU with every concept mask; a unit whose best IoU reaches "
        "--iou-threshold is a detector of that concept (NetDissect, Bau et al. 2017).",
    )
    p.add_argument("--model", default="starter", help="registered model name (default: starter)")
    p.add_argument("--weights", help=_WEIGHTS_HELP)
    p.add_argument("--layers", default="all",
                   help="'all' (every conv layer except *_pre_relu; dense layers are skipped) "
                        "or comma-separated conv layer names")
    p.add_argument("--data", default="auto",
                   help="auto (builtin:starter for the starter model; other models have no "
                        "built-in concept masks: give a folder), builtin:starter[:train|:test] "
                        "(concepts: stroke, digit=<k>, color=<c>, background=<b>) or a folder "
                        "with images/<name>.png and masks/<concept>/<name>.png (default: auto)")
    p.add_argument("--n", type=int, default=2000, help="images of builtin data (default: 2000)")
    p.add_argument("--seed", type=int, default=0, help="builtin data seed (default: 0)")
    p.add_argument("--quantile", type=float, default=0.005,
                   help="top quantile of a unit's activations that forms its mask "
                        "(default: 0.005 = 0.5%%)")
    p.add_argument("--iou-threshold", type=float, default=0.04,
                   help="IoU a unit needs to be a detector of its best concept (default: 0.04)")
    p.add_argument("--quantile-passes", type=int, default=3, choices=(1, 2, 3),
                   help="data passes for the thresholds: 3 exact, 2 relative error < 2^-15, "
                        "1 < 2^-3 (default: 3)")
    p.add_argument("--size", type=int,
                   help="image side for folder data (default: the model's input side)")
    p.add_argument("--out", default="dissect-out", help="output folder (default: dissect-out)")
    p.add_argument("--batch-size", type=int, default=32, help="images per step (default: 32)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_memory_flag(p)


# --- attribute -------------------------------------------------------------------------------
@_command("attribute")
def _cmd_attribute(args: argparse.Namespace) -> int:
    from lucidax.attribute.run import parse_options, run_attribute_cli

    run = run_attribute_cli(
        args.model, weights=args.weights, images=args.images, methods=args.methods,
        target=args.target, out=args.out, n=args.n, seed=args.seed, evaluate=args.evaluate,
        steps=args.steps, options=parse_options(args.option), progress=not args.quiet,
    )
    print(run.table)
    print(f"open {run.files['html']}")
    return 0


def _add_attribute(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "attribute",
        help="attribution maps (gradients, IG, Grad-CAM, occlusion, LIME, ...) with overlay "
             "grids, deletion/insertion AUC and an HTML page",
        description="Compute attribution maps of several methods for some images, score them "
        "with deletion/insertion curves against a random map, and write <method>.png overlay "
        "grids, figure.png, maps.npz, results.json and index.html to --out.",
    )
    p.add_argument("--model", default="starter", help="registered model name (default: starter)")
    p.add_argument("--weights", help=_WEIGHTS_HELP)
    p.add_argument("--images", default="auto",
                   help="auto (builtin:starter:test for starter, builtin:photos for other RGB "
                        "models), builtin:starter[:test|:train], builtin:photos[:<source>] "
                        "(real photos, whole ones first, then crops), a folder of images, an "
                        "image file or a .npy [N,H,W,C] array in [0,1] (default: auto)")
    p.add_argument("--methods", default="gradient,grad_x_input,ig,gradcam,occlusion,lime",
                   help="comma-separated: gradient, grad_x_input, smoothgrad, ig, gradcam, "
                        "guided_backprop, lrp, occlusion, lime, kernelshap, random; or 'all'")
    p.add_argument("--target", default="predicted",
                   help="'predicted' (each image's top class), 'label' (builtin labels), a "
                        "class index or a class label (default: predicted)")
    p.add_argument("--out", default="attribute-out", help="output folder (default: "
                                                          "attribute-out)")
    p.add_argument("--n", type=int, default=8, help="number of images (default: 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the builtin images (default: 0)")
    p.add_argument("--evaluate", action=argparse.BooleanOptionalAction, default=True,
                   help="deletion/insertion AUC for every method and a random map")
    p.add_argument("--steps", type=int, default=16, help="points per deletion/insertion curve")
    p.add_argument("--option", action="append", metavar="METHOD.KEY=VALUE",
                   help="method option, repeatable (e.g. occlusion.patch=16, ig.steps=64, "
                        "lime.samples=512)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


# --- gallery -----------------------------------------------------------------------------------
@_command("gallery")
def _cmd_gallery(args: argparse.Namespace) -> int:
    from lucidax.gallery import GalleryConfig, build_gallery, plan_gallery

    config = _dataclass_from_args(GalleryConfig, args)
    if args.dry_run:
        print(plan_gallery(config).summary())
        print("nothing rendered (--dry-run)")
        return 0
    report = build_gallery(config, progress=not args.quiet)
    print(
        f"{report.units_rendered} units rendered, {report.units_skipped} already done, "
        f"{len(report.failed_units)} failed, {len(report.silent_units)} silent, in "
        f"{report.elapsed_s:.0f} s"
    )
    if report.silent_units:  # never activate on the data, or renders stuck at their start
        print(f"silent units (greyed in the gallery): {_few(report.silent_units)}")
    if report.rescue_needed:
        woke = report.rescue_succeeded
        print(f"rescue from a high-contrast start: needed by {len(report.rescue_needed)}, "
              f"woke {len(woke)}" + (f" ({_few(woke)})" if woke else ""))
    if report.index:
        print(f"open {report.index}")
    return 1 if report.failed_units else 0


def _add_gallery(sub: argparse._SubParsersAction) -> None:
    from lucidax.gallery import PRESETS, GalleryConfig

    p = sub.add_parser(
        "gallery",
        help="render every unit of some layers into a browsable, resumable HTML gallery",
        description="Render every unit of the requested layers and build a static site "
        "(index.html) with per-unit grids, dataset examples and contact sheets. Re-running "
        "the same command resumes; --force re-renders. With no flags: EfficientNet-Lite0 "
        "(ImageNet weights), units 0-7 of blocks 4, 7, 10 and 14 and 16 class logits, with "
        "their top examples among crops of the built-in photos; --layers all renders the "
        "whole network, --model starter the small starter model.",
    )
    _add_dataclass_flags(p, GalleryConfig, presets={
        "efficientnet_lite0/1/2": PRESETS["efficientnet_lite0"],
        "other models": PRESETS["starter"]})
    p.add_argument("--dry-run", action="store_true",
                   help="print the layers and units the command would render, the settings "
                        "and how many units are already done, then stop (renders nothing)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


_PARSERS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_models, _add_render, _add_invert, _add_probe, _add_tcav, _add_dissect, _add_attribute,
    _add_gallery,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lucidax",
        description="Feature visualization, inversion, probing, concept tests, dissection, "
        "attribution and galleries for CNNs in JAX.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _PARSERS:
        add(sub)
    for command in sub.choices.values():
        _show_defaults(command)
    return parser


def _show_defaults(p: argparse.ArgumentParser) -> None:
    """Every flag's help ends with its default, unless it says it already."""
    for action in p._actions:
        default = action.default
        if (not action.help or action.help == argparse.SUPPRESS or "(default:" in action.help
                or default in (None, False, argparse.SUPPRESS) or not action.option_strings):
            continue
        shown = "on" if default is True else ",".join(default) if isinstance(
            default, (list, tuple)) else default
        action.help = f"{action.help} (default: {shown})"


def _user_errors() -> tuple[type[Exception], ...]:
    from lucidax.gallery import ManifestMismatchError
    from lucidax.models import MissingWeightsError

    return ManifestMismatchError, MissingWeightsError


@contextlib.contextmanager
def _one_line_warnings(command: str):
    """Skipped-file warnings (:class:`lucidax._files.SkippedFilesWarning`, every time) and the
    random-weights warning print as one line ``lucidax <command>: warning: ...``; other
    warnings as usual."""
    from lucidax._files import SkippedFilesWarning
    from lucidax.models import RandomWeightsWarning

    one_line = (SkippedFilesWarning, RandomWeightsWarning)
    with warnings.catch_warnings():
        warnings.simplefilter("always", SkippedFilesWarning)
        shown = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, one_line):
                print(f"lucidax {command}: warning: {message}", file=sys.stderr)
            else:
                shown(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        with _one_line_warnings(args.command):
            return _COMMANDS[args.command](args) or 0
    except (ValueError, FileNotFoundError, TimeoutError, *_user_errors()) as e:
        # User errors: one clear line, no traceback.
        print(f"lucidax {args.command}: error: {e}", file=sys.stderr)
        return 2
    except (PermissionError, IsADirectoryError, NotADirectoryError) as e:
        if e.filename is None:  # not about a path: a bug, keep the traceback
            raise
        # A user's path that cannot be read or written: one line naming it.
        print(f"lucidax {args.command}: error: {e.strerror or e}: {e.filename!r}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - no flush error at exit
        return 0


if __name__ == "__main__":
    sys.exit(main())
