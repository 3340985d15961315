"""Feature inversion / caricatures on the starter model: README grids and quality numbers.

Writes ``docs/invert_grid.png`` and ``docs/caricature.png`` (rows: three starter test images
and scikit-image's ``chelsea()`` photo resized to 64 px; columns: the original, then one
result per layer) and prints JSON lines:

* ``quality``: per-layer mean PSNR / SSIM of reconstructions of ``--n`` starter test images,
  and the relative activation error ``|a - t|^2 / |t|^2`` of the reconstructions vs that of
  uniform noise images;
* ``readme_grid`` / ``caricature``: the numbers of the images in the README grids;
* ``layout``: seconds for all layers in one render (images x layers) vs one render per layer,
  cold (first call: compilation included) and warm (second call), at 64 and 256 steps.

Run: ``python scripts/invert_demo.py [--steps 256] [--n 8] [--docs docs]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

import lucidax.models as lm
from lucidax.models import starter as starter_pkg
from lucidax.visualize import _invert as inv  # _relative_error: the error measure of the tests
from lucidax.visualize import save_grid

LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")


def _chelsea(side: int) -> np.ndarray:
    from skimage import data
    from skimage.transform import resize

    img = data.chelsea()  # 300 x 451 RGB: centre-crop to a square, then resize
    h, w = img.shape[:2]
    s = min(h, w)
    img = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    return resize(img, (side, side), anti_aliasing=True).astype(np.float32)


def _per_layer(res: inv.InversionResult) -> dict:
    return {lyr: {"psnr": round(float(res.psnr[:, j].mean()), 2),
                  "ssim": round(float(res.ssim[:, j].mean()), 3),
                  "act_error": round(float(res.act_error[:, j].mean()), 4)}
            for j, lyr in enumerate(res.layers)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=256)
    ap.add_argument("--n", type=int, default=8, help="starter test images for the numbers")
    ap.add_argument("--docs", default="docs")
    ap.add_argument("--skip-layout", action="store_true")
    ap.add_argument("--layout-only", action="store_true")
    args = ap.parse_args()
    if args.layout_only:
        return _layout()
    model = lm.load("starter")
    side = model.input_spec.side

    # README grids: three starter test images + a plain photo
    readme = np.concatenate([starter_pkg.dataset(3, split="test", seed=0).images,
                             _chelsea(side)[None]])
    res = inv.invert(model, None, readme, LAYERS, steps=args.steps, key=0)
    save_grid(os.path.join(args.docs, "invert_grid.png"), res.grid_images(),
              cols=len(LAYERS) + 1, scale=2)
    print(json.dumps({"readme_grid": "invert", "steps": args.steps,
                      "rows": ["starter test 0", "starter test 1", "starter test 2",
                               "skimage chelsea"],
                      "psnr": np.round(res.psnr, 2).tolist(),
                      "ssim": np.round(res.ssim, 3).tolist(),
                      "seconds": round(res.seconds, 1)}), flush=True)
    car = inv.caricature(model, None, readme, LAYERS, steps=args.steps, key=0)
    save_grid(os.path.join(args.docs, "caricature.png"), car.grid_images(),
              cols=len(LAYERS) + 1, scale=2)
    print(json.dumps({"readme_grid": "caricature", "steps": args.steps,
                      "objective": np.round(car.objective_values, 2).tolist(),
                      "seconds": round(car.seconds, 1)}), flush=True)

    # quality over more images, with a noise baseline for the activation error
    imgs = starter_pkg.dataset(args.n, split="test", seed=1).images
    q = inv.invert(model, None, imgs, LAYERS, steps=args.steps, key=1)
    noise = np.random.default_rng(0).uniform(size=imgs.shape).astype(np.float32)
    a = model.apply(model.params, imgs, LAYERS)
    b = model.apply(model.params, noise, LAYERS)
    noise_err = {lyr: round(float(inv._relative_error(np.asarray(b[lyr]),
                                                        np.asarray(a[lyr])).mean()), 4)
                 for lyr in LAYERS}
    print(json.dumps({"quality": _per_layer(q), "noise_act_error": noise_err, "n": args.n,
                      "steps": args.steps, "seconds": round(q.seconds, 1),
                      "conv1_psnr_each": np.round(q.psnr[:, 0], 1).tolist()}), flush=True)

    if not args.skip_layout:
        _layout()


def _layout() -> None:
    """All layers in one render vs one render per layer, each in a fresh process (so that
    "cold" includes compilation), at 64 and 256 steps."""
    for steps in (64, 256):
        out = {}
        for per_layer in (False, True):
            cmd = [sys.executable, __file__, "--layout-run", str(int(per_layer)), str(steps)]
            out["per_layer" if per_layer else "one_render"] = json.loads(
                subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        print(json.dumps({"layout": out, "images": 4, "layers": len(LAYERS), "steps": steps}),
              flush=True)


def _layout_run(per_layer: bool, steps: int) -> None:
    model = lm.load("starter")
    x = starter_pkg.dataset(4, split="test", seed=1).images
    times = []
    for _ in range(2):
        t = time.perf_counter()
        inv.invert(model, None, x, LAYERS, steps=steps, key=2, per_layer=per_layer)
        times.append(round(time.perf_counter() - t, 2))
    print(json.dumps({"cold_s": times[0], "warm_s": times[1]}))

if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--layout-run":
        _layout_run(sys.argv[2] == "1", int(sys.argv[3]))
    else:
        main()
