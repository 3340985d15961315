"""Interpretability scores of EfficientNet-Lite0 (``lucidax interpretability``): per-layer
median natural and synthetic scores (one per render parameterization), the randomized-weights
control and the cost per unit, as JSON on stdout.

    python scripts/bench_interpretability.py                      # the default run
    python scripts/bench_interpretability.py --steps 128 --units 0-15

The observer is EfficientNet-Lite1's ``avgpool`` features (cosine similarity): an
approximation of MIS's DreamSim observer, not the same number. Lite0 renders run ~25-30
image-steps/s on a 2-core CPU: layers x units x renders x params x steps / 25 seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from lucidax.gallery import InterpretabilityJob, run_interpretability


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layers", default="blocks.4,blocks.10,head")
    p.add_argument("--units", default="0-7")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--renders", type=int, default=2)
    p.add_argument("--params", default="image,maco,pixel")
    p.add_argument("--steps", type=int, default=64)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--n-tasks", type=int, default=500)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    out = a.out or tempfile.mkdtemp(prefix="bench-interp-")
    job = InterpretabilityJob(
        model="efficientnet_lite0", layers=a.layers, units=a.units, data="builtin:photos",
        n=a.n, observer="efficientnet_lite1", observer_layer="avgpool", n_tasks=a.n_tasks,
        synthetic=True, renders=a.renders, params=a.params, steps=a.steps, size=a.size,
        randomize=True, out=out)
    t = time.perf_counter()
    run = run_interpretability(job, progress=False)
    wall = time.perf_counter() - t
    s = run.summary
    layers = {}
    for layer, v in s["layers"].items():
        layers[layer] = {
            "units": v["units"], "median_natural": round(v["median_natural"], 3),
            "median_synthetic": {k: round(x, 3) for k, x in v["median_synthetic"].items()},
            "median_gap": {k: round(x, 3) for k, x in v["median_gap"].items()},
            "median_random_weights_natural": round(v["median_random_natural"], 3),
            "without_photo_separation": {
                "median_natural": round(v.get("median_natural_without_groups", float("nan")), 3),
                "median_random_weights_natural": round(
                    v.get("median_random_natural_without_groups", float("nan")), 3)},
            "render_s_per_unit": {k: round(x, 2) for k, x in
                                  s["timings"][layer]["render_per_unit_s"].items()},
        }
    n_units = sum(v["units"] for v in s["layers"].values())
    natural_s = s["timings"]["observer_features_s"] + s["timings"]["unit_activations_s"]
    print(json.dumps({
        "model": s["model"], "observer": f"{s['observer']} {s['observer_layer']} (cosine)",
        "data": s["data"], "reduce": s["reduce"], "separate_groups": s["separate_groups"],
        "n_tasks": a.n_tasks, "k": 9,
        "renders_per_unit": a.renders, "steps": a.steps, "size": a.size,
        "cpu_count": os.cpu_count(), "layers": layers,
        "cost": {"wall_s": round(wall, 1), "units": n_units,
                 "per_unit_s_all": round(wall / n_units, 2),
                 "observer_features_s": round(s["timings"]["observer_features_s"], 1),
                 "unit_activations_s": round(s["timings"]["unit_activations_s"], 1),
                 "natural_only_per_unit_s": round(natural_s / n_units, 2)},
        "out": out,
    }, indent=1))


if __name__ == "__main__":
    main()
