"""Render quality, printed as JSON lines (and appended to ``--out``).

``--model efficientnet_lite0`` (default): renders with the gallery's settings (param side 128,
``model_side=128`` so nothing is upsampled inside the render, ``--steps`` Adam 0.05 steps,
``standard_transforms``, Lucid's default initialisations) of the ImageNet EfficientNet-Lite0,
per parameterization (``image`` = Fourier + decorrelated, the default; ``fft`` = Fourier without
decorrelation; ``pixel``; ``maco``):

1. ``"measure": "class_logits"``: one render of ``channel("logits", class)`` per class of
   :data:`CLASSES` (a fixed, diverse list of ImageNet classes; ``--classes`` of them for the
   default parameterization, an evenly spread ``--other-classes`` for the others), as one
   batched render per parameterization. Reported: the share classified top-1 as their class by
   Lite0 on the render bilinearly resized to 224 (``lite0_top1_224``, also top-5), top-1 by
   Lite0 on the render at its own 128 px (``lite0_top1_128``), and the MACO paper's
   "transferability": top-1 / top-5 agreement of Lite1 (render resized to 240) and Lite2 (260).
2. ``"measure": "channel"``: renders of ``channel(layer, u)`` for the first ``--units`` units
   (``--other-units`` for the non-default parameterizations) of ``--layers``. Per layer: the
   median over units of (the unit's activation on its render / the unit's maximum over
   ``--n-images`` natural photo crops at 224 px, ``lucidax.models.photos``), both measured with
   the objective's statistic (spatial mean of the channel); the render is evaluated at the side
   it was optimized at (128 px, ``"render_eval_side"``). Also the share of units with ratio
   >= 1.5; ``"layer": "all"`` pools the units of every layer.
3. ``"measure": "spectrum"``: mean absolute difference between the mean log Fourier magnitude
   spectrum (grey, mean removed) of all the parameterization's renders and that of natural
   photo crops at the render side.
4. ``"measure": "summary"``: one line per parameterization with the headline numbers, and
   ``"measure": "timing"`` lines (wall seconds, load average).

Also saves a PNG grid of the default parameterization's class renders (``--grid-classes``) and
of its ``blocks.10`` renders (``--grid-blocks``).

``--model starter``: the original starter-model check (per layer: activation a default render
reaches / the unit's maximum over the starter dataset, median and share >= 1; per
parameterization: the log-spectrum distance to the dataset).

    python scripts/quality_render.py [--steps 128] [--classes 50] [--units 16]
    python scripts/quality_render.py --model starter [--units 16] [--steps 256]

Cost on 2 shared CPU cores (efficientnet_lite0, 128 px): ~0.07 s per image and step, i.e.
~9 s per render at 128 steps; the default configuration took 28 minutes (1660 s, load
average 2-4.6 from other jobs).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

import lucidax.models as lm
from lucidax import visualize as viz
from lucidax.models import photos
from lucidax.visualize import save_grid

#: 50 ImageNet classes (index, name), spread over the 1000: animals, objects, vehicles, food,
#: scenes. Interleaved by kind, so that an evenly strided subset stays diverse.
CLASSES: tuple[tuple[int, str], ...] = (
    (1, "goldfish"), (417, "balloon"), (404, "airliner"), (928, "ice cream"), (970, "alp"),
    (9, "ostrich"), (504, "coffee mug"), (407, "ambulance"), (933, "cheeseburger"),
    (973, "coral reef"), (22, "bald eagle"), (508, "computer keyboard"), (511, "convertible"),
    (934, "hotdog"), (978, "seashore"), (76, "tarantula"), (546, "electric guitar"),
    (555, "fire engine"), (937, "broccoli"), (980, "volcano"), (94, "hummingbird"),
    (579, "grand piano"), (671, "mountain bike"), (948, "Granny Smith"), (437, "beacon"),
    (130, "flamingo"), (805, "soccer ball"), (717, "pickup"), (954, "banana"),
    (839, "suspension bridge"), (145, "king penguin"), (850, "teddy"), (779, "school bus"),
    (963, "pizza"), (497, "church"), (207, "golden retriever"), (879, "umbrella"),
    (817, "sports car"), (967, "espresso"), (281, "tabby"), (920, "traffic light"),
    (895, "warplane"), (291, "lion"), (292, "tiger"), (301, "ladybug"), (309, "bee"),
    (323, "monarch"), (340, "zebra"), (386, "African elephant"), (388, "giant panda"),
)

LAYERS = ("blocks.4", "blocks.7", "blocks.10", "blocks.14")
RENDER_SIDE = 128


def _params() -> dict[str, viz.Param]:
    """The compared parameterizations, each with its default (Lucid / Horama) initialisation."""
    return {"image": viz.image(), "fft": viz.fft(decorrelate=False), "pixel": viz.pixel(),
            "maco": viz.maco()}


# ---------------------------------------------------------------------------------------------
# shared helpers
# ---------------------------------------------------------------------------------------------
def _spatial_mean(acts):
    acts = np.asarray(acts)
    return acts.mean(axis=(1, 2)) if acts.ndim == 4 else acts  # [N, C], like the objective


def _unit_stat(model, images, layers, batch=50):
    """{layer: [N, C]} spatial means of ``layers`` (in batches)."""
    out: dict[str, list[np.ndarray]] = {layer: [] for layer in layers}
    for i in range(0, len(images), batch):
        acts = model.apply(model.params, jnp.asarray(images[i:i + batch]), tuple(layers))
        for layer in layers:
            out[layer].append(_spatial_mean(acts[layer]))
    return {layer: np.concatenate(v) for layer, v in out.items()}


def _log_spectrum(images):
    gray = np.asarray(images).mean(-1)
    gray = gray - gray.mean(axis=(1, 2), keepdims=True)
    return np.log(np.abs(np.fft.rfft2(gray)).mean(0) + 1e-6)


class _Out:
    """Prints JSON lines and appends them to a file."""

    def __init__(self, path: str | None):
        self.f = open(path, "a") if path else None  # noqa: SIM115 (closed in close())

    def __call__(self, record: dict) -> None:
        line = json.dumps(record)
        print(line, flush=True)
        if self.f:
            self.f.write(line + "\n")
            self.f.flush()

    def close(self) -> None:
        if self.f:
            self.f.close()


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# ---------------------------------------------------------------------------------------------
# efficientnet_lite0
# ---------------------------------------------------------------------------------------------
def _resize(images, side):
    images = jnp.asarray(images)
    if images.shape[1] == side:
        return images
    return jax.image.resize(images, (images.shape[0], side, side, images.shape[3]), "bilinear")


def _ranks(model, images, side, targets):
    """Rank (0 = top-1) of each target class in the model's logits on the resized images."""
    logits = _unit_stat(model, np.asarray(_resize(images, side)), ("logits",))["logits"]
    tgt = logits[np.arange(len(targets)), targets]
    return (logits > tgt[:, None]).sum(1)


def _class_measure(models, param_name, param, classes, args, out):
    idx = np.asarray([c for c, _ in classes])
    lite0 = models["efficientnet_lite0"]
    t0 = time.perf_counter()
    images = []
    for i in range(0, len(idx), args.batch):
        r = viz.render(lite0, viz.channel("logits", idx[i:i + args.batch].tolist()), param=param,
                       size=RENDER_SIDE, model_side=args.model_side, steps=args.steps,
                       progress=False)
        images.append(r.images)
    images = np.concatenate(images)
    t_render = time.perf_counter() - t0
    rec = {"model": "efficientnet_lite0", "param": param_name, "measure": "class_logits",
           "classes": len(idx), "steps": args.steps, "render_side": RENDER_SIDE,
           "model_side": args.model_side}
    r0 = _ranks(lite0, images, 224, idx)
    rec["lite0_top1_224"] = round(float(np.mean(r0 == 0)), 3)
    rec["lite0_top5_224"] = round(float(np.mean(r0 < 5)), 3)
    rec["lite0_top1_128"] = round(float(np.mean(_ranks(lite0, images, RENDER_SIDE, idx) == 0)), 3)
    for name, side in (("efficientnet_lite1", 240), ("efficientnet_lite2", 260)):
        rk = _ranks(models[name], images, side, idx)
        short = name.split("_")[1]
        rec[f"{short}_top1_{side}"] = round(float(np.mean(rk == 0)), 3)
        rec[f"{short}_top5_{side}"] = round(float(np.mean(rk < 5)), 3)
    rec["lite0_224_missed"] = [n for (_, n), k in zip(classes, r0, strict=True) if k != 0]
    rec["render_s"] = round(t_render, 1)
    rec["load"] = _load()
    out(rec)
    return images, rec


def _channel_measure(model, param_name, param, layers, n_units, natural_max, args, out):
    ratios, images = [], {}
    t0 = time.perf_counter()
    for layer in layers:
        units = list(range(min(n_units, model.channels(layer))))
        r = viz.render(model, viz.channel(layer, units), param=param, size=RENDER_SIDE,
                       model_side=args.model_side, steps=args.steps, progress=False)
        reached = _unit_stat(model, r.images, (layer,))[layer][np.arange(len(units)), units]
        ratio = reached / np.maximum(natural_max[layer][units], 1e-6)
        ratios.append(ratio)
        images[layer] = r.images
        out({"model": "efficientnet_lite0", "param": param_name, "measure": "channel",
             "layer": layer, "units": len(units), "median_ratio": round(float(np.median(ratio)), 3),
             "share_ge_1.5": round(float(np.mean(ratio >= 1.5)), 3),
             "render_eval_side": RENDER_SIDE, "natural_side": 224,
             "natural_images": args.n_images, "statistic": "spatial mean of the channel",
             "render_s": round(r.seconds, 1)})
    ratio = np.concatenate(ratios)
    rec = {"model": "efficientnet_lite0", "param": param_name, "measure": "channel",
           "layer": "all", "layers": list(layers), "units": len(ratio),
           "median_ratio": round(float(np.median(ratio)), 3),
           "share_ge_1.5": round(float(np.mean(ratio >= 1.5)), 3),
           "render_eval_side": RENDER_SIDE, "natural_side": 224,
           "render_s": round(time.perf_counter() - t0, 1), "load": _load()}
    out(rec)
    return images, rec


def _lite0(args, out) -> None:
    t_all = time.perf_counter()
    models = {name: lm.load(name) for name in
              ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")}
    lite0 = models["efficientnet_lite0"]
    labels = lite0.labels
    for i, name in CLASSES:
        if labels[i] != name:  # the constant must match the model's label list
            raise SystemExit(f"CLASSES: index {i} is {labels[i]!r}, not {name!r}")
    layers = tuple(args.layers)
    t0 = time.perf_counter()
    nat = photos.photos(args.n_images, side=224, seed=0).images
    natural_max = {k: v.max(0) for k, v in _unit_stat(lite0, nat, layers).items()}
    del nat
    ref = _log_spectrum(photos.photos(args.n_images, side=RENDER_SIDE, seed=0).images)
    out({"measure": "timing", "what": "natural maxima + reference spectrum",
         "natural_images": args.n_images, "seconds": round(time.perf_counter() - t0, 1),
         "load": _load()})
    for pi, (pname, param) in enumerate(_params().items()):
        if pname not in args.params:
            continue
        default = pi == 0
        n_cls = args.classes if default else args.other_classes
        n_units = args.units if default else args.other_units
        stride = max(1, len(CLASSES) // max(n_cls, 1))
        classes = (CLASSES[:n_cls] if default else CLASSES[::stride][:n_cls])
        t0 = time.perf_counter()
        renders, crec, chrec = [], None, None
        if classes:
            cimg, crec = _class_measure(models, pname, param, classes, args, out)
            renders.append(cimg)
            if default and args.grid_classes:
                save_grid(args.grid_classes, cimg, cols=10)
        if n_units:
            chimg, chrec = _channel_measure(lite0, pname, param, layers, n_units, natural_max,
                                            args, out)
            renders.extend(chimg.values())
            if default and args.grid_blocks and "blocks.10" in chimg:
                save_grid(args.grid_blocks, chimg["blocks.10"], cols=8)
        dist = float(np.abs(_log_spectrum(np.concatenate(renders)) - ref).mean())
        out({"model": "efficientnet_lite0", "param": pname, "measure": "spectrum",
             "renders": int(sum(len(r) for r in renders)), "side": RENDER_SIDE,
             "spectrum_log_mad": round(dist, 3)})
        summary = {"model": "efficientnet_lite0", "param": pname, "measure": "summary",
                   "steps": args.steps, "spectrum_log_mad": round(dist, 3),
                   "seconds": round(time.perf_counter() - t0, 1), "load": _load()}
        if crec:
            summary.update({k: crec[k] for k in crec if k.startswith("lite") and
                            k != "lite0_224_missed"}, classes=crec["classes"])
        if chrec:
            summary.update(channel_units=chrec["units"], channel_median_ratio=chrec["median_ratio"],
                           **{"channel_share_ge_1.5": chrec["share_ge_1.5"]})
        out(summary)
    out({"measure": "timing", "what": "total", "seconds": round(time.perf_counter() - t_all, 1),
         "load": _load(), "cpus": os.cpu_count()})


# ---------------------------------------------------------------------------------------------
# starter
# ---------------------------------------------------------------------------------------------
def _starter(args, out) -> None:
    from lucidax.models import starter

    model = lm.load("starter")
    data = starter.dataset(args.n_images, split="test", seed=0)
    param = viz.image(sd=0.5)
    for layer in ("conv1", "conv2", "conv3", "conv4", "conv5", "logits"):
        units = list(range(min(args.units, model.channels(layer))))
        natural = _unit_stat(model, data.images, (layer,), batch=1000)[layer].max(0)[units]
        r = viz.render(model, viz.channel(layer, units), param=param, size=64,
                       steps=args.steps, progress=False)
        reached = _unit_stat(model, r.images, (layer,))[layer][np.arange(len(units)), units]
        ratio = reached / np.maximum(natural, 1e-6)
        out({"layer": layer, "units": len(units), "median_ratio": round(float(np.median(ratio)), 3),
             "share_ge_1": round(float(np.mean(ratio >= 1)), 3)})
    ref = _log_spectrum(data.images)
    units = list(range(16))
    for name, p in {"pixel": viz.pixel(sd=0.5), "fft": viz.fft(sd=0.5),
                    "image (fft+decorrelated)": param, "maco": viz.maco()}.items():
        r = viz.render(model, viz.channel("conv4", units), param=p, size=64, steps=args.steps,
                       progress=False)
        dist = float(np.abs(_log_spectrum(r.images) - ref).mean())
        out({"param": name, "layer": "conv4", "spectrum_log_mad": round(dist, 3)})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=("efficientnet_lite0", "starter"),
                    default="efficientnet_lite0")
    ap.add_argument("--steps", type=int, default=None,
                    help="optimization steps (default 128; starter 256)")
    ap.add_argument("--units", type=int, default=16, help="units per layer (first N)")
    ap.add_argument("--n-images", type=int, default=None,
                    help="natural images for the unit maxima (default 500; starter 1000)")
    ap.add_argument("--classes", type=int, default=len(CLASSES),
                    help="classes rendered with the default parameterization (first N)")
    ap.add_argument("--other-classes", type=int, default=8,
                    help="classes (evenly spread) for the other parameterizations")
    ap.add_argument("--other-units", type=int, default=2,
                    help="units per layer for the other parameterizations")
    ap.add_argument("--layers", nargs="+", default=list(LAYERS))
    ap.add_argument("--params", nargs="+", default=list(_params()), choices=list(_params()))
    ap.add_argument("--batch", type=int, default=50, help="class renders per batch")
    ap.add_argument("--model-side", type=int, default=RENDER_SIDE,
                    help="side the model sees during the render (default 128: the render's "
                         "own side; 224: upsampled as lucent does)")
    ap.add_argument("--out", default=None,
                    help="also append the JSON lines here (default scripts/quality_lite0.jsonl; "
                         "starter: none)")
    ap.add_argument("--grid-classes", default="/tmp/quality_classes.png")
    ap.add_argument("--grid-blocks", default="/tmp/quality_blocks10.png")
    args = ap.parse_args()
    starter_model = args.model == "starter"
    if args.steps is None:
        args.steps = 256 if starter_model else 128
    if args.n_images is None:
        args.n_images = 1000 if starter_model else 500
    if args.out is None:
        args.out = "" if starter_model else "scripts/quality_lite0.jsonl"
    out = _Out(args.out or None)
    try:
        (_starter if starter_model else _lite0)(args, out)
    finally:
        out.close()


if __name__ == "__main__":
    main()
