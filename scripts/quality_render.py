"""Render quality on the starter model, printed as JSON lines.

1. Per layer: activation a default render reaches / the unit's maximum over the starter
   dataset's real images (median, share of units >= 1).
2. Per parameterization: distance of the renders' mean log Fourier magnitude spectrum from that
   of natural images (the dataset), as the mean absolute difference of log spectra.

    python scripts/quality_render.py [--units 16] [--steps 256]
"""

from __future__ import annotations

import argparse
import json

import numpy as np

import lucidax.models as lm
from lucidax import visualize as viz
from lucidax.models import starter


def _unit_max(model, images, layer):
    acts = np.asarray(model.apply(model.params, images, (layer,))[layer])
    return acts.mean(axis=(1, 2)) if acts.ndim == 4 else acts  # [N, C], like the objective


def _log_spectrum(images):
    gray = np.asarray(images).mean(-1)
    gray = gray - gray.mean(axis=(1, 2), keepdims=True)
    return np.log(np.abs(np.fft.rfft2(gray)).mean(0) + 1e-6)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=16, help="units per layer (first N)")
    ap.add_argument("--steps", type=int, default=256)
    ap.add_argument("--n-images", type=int, default=1000)
    args = ap.parse_args()
    model = lm.load("starter")
    data = starter.dataset(args.n_images, split="test", seed=0)
    param = viz.image(sd=0.5)
    for layer in ("conv1", "conv2", "conv3", "conv4", "conv5", "logits"):
        units = list(range(min(args.units, model.channels(layer))))
        natural = _unit_max(model, data.images, layer).max(0)[units]
        r = viz.render(model, viz.channel(layer, units), param=param, size=64,
                       steps=args.steps, progress=False)
        reached = _unit_max(model, r.images, layer)[np.arange(len(units)), units]
        ratio = reached / np.maximum(natural, 1e-6)
        print(json.dumps({"layer": layer, "units": len(units),
                          "median_ratio": round(float(np.median(ratio)), 3),
                          "share_ge_1": round(float(np.mean(ratio >= 1)), 3)}), flush=True)
    ref = _log_spectrum(data.images)
    units = list(range(16))
    for name, p in {"pixel": viz.pixel(sd=0.5), "fft": viz.fft(sd=0.5),
                    "image (fft+decorrelated)": param, "maco": viz.maco()}.items():
        r = viz.render(model, viz.channel("conv4", units), param=p, size=64, steps=args.steps,
                       progress=False)
        dist = float(np.abs(_log_spectrum(r.images) - ref).mean())
        print(json.dumps({"param": name, "layer": "conv4", "spectrum_log_mad": round(dist, 3)}),
              flush=True)


if __name__ == "__main__":
    main()
