"""Dissect the starter model (conv1..conv5) on builtin starter test images; print JSON.

    python scripts/dissect_starter.py --n 3000 --out runs/dissect-starter --plot docs/dissect.png

Prints one JSON object: settings, wall time, detectors per layer (by concept and by
category), the mean best IoU per layer, and the top units.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time

import numpy as np

from lucidax.probes import DissectJob, run_dissect


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--layers", default="all")
    ap.add_argument("--out", default="runs/dissect-starter")
    ap.add_argument("--plot", default=None, help="also copy summary.png here (docs/dissect.png)")
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()

    t0 = time.perf_counter()
    job = DissectJob("starter", layers=args.layers, data="builtin:starter:test", n=args.n,
                     seed=args.seed, out=args.out, batch_size=args.batch_size)
    run = run_dissect(job, progress=not args.quiet)
    wall = time.perf_counter() - t0
    res = run.result
    if args.plot:
        shutil.copyfile(run.files["png"], args.plot)
    per_layer = {}
    for layer in res.layers:
        units = [u for u in res.units if u.layer == layer]
        per_layer[layer] = {
            "units": len(units),
            "detectors": sum(u.detector for u in units),
            "mean_best_iou": round(float(np.mean([u.iou for u in units])), 4),
            "max_iou": round(float(max(u.iou for u in units)), 4),
            "by_category": res.category_summary()[layer],
            "by_concept": res.summary()[layer],
        }
    top = [{"layer": u.layer, "unit": u.unit, "concept": u.concept, "iou": round(u.iou, 4)}
           for u in res.detectors()[: args.top]]
    best_per_layer = {
        layer: [{"unit": u.unit, "concept": u.concept, "iou": round(u.iou, 4)}
                for u in res.detectors(layer)[:3]]
        for layer in res.layers
    }
    print(json.dumps({
        "model": res.model, "data": res.data, "n_images": res.n_images,
        "quantile": res.quantile, "iou_threshold": res.iou_threshold,
        "quantile_passes": res.quantile_passes, "wall_s": round(wall, 1),
        "detectors_total": len(res.detectors()),
        "layers": per_layer, "top": top, "best_per_layer": best_per_layer,
        "files": run.files,
    }, indent=1))


if __name__ == "__main__":
    main()
