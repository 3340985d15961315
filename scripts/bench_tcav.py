"""Benchmark: TCAV for 1 concept x 50 random sets x 4 layers on the starter model.

Each phase runs in a fresh Python process (so compile time is counted as a user would see it):

* ``cold``: empty cache: builds the starter images, extracts the features of the concept
  pool (50 x 50 images) and of the random pool (50 x (2 x 50 + 50) images: every concept
  run and every random-vs-random run gets its own images), the gradients of the class logit
  for 100 images of the class, fits 400 CAVs (50 concept + 50 null per layer), scores, tests.
* ``warm``: the same command again: features and gradients come from the cache (no image is
  built, no forward pass runs); what is left is compiling and running the CAV solver.
* ``warm_repeat``: a second call in the warm process (compiled programs reused).

Prints one JSON line per phase, then a summary line. Example::

    python scripts/bench_tcav.py --concept color:red --target 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time


def _one(args: argparse.Namespace, repeat: int) -> list[dict]:
    t0 = time.perf_counter()
    from lucidax.probes import TCAVJob, run_tcav

    t_import = time.perf_counter() - t0
    out = []
    for i in range(repeat):
        t1 = time.perf_counter()
        run = run_tcav(TCAVJob(
            "starter", layers=args.layers, concepts=[args.concept], target_class=args.target,
            runs=args.runs, n_concept=args.n, n_random=args.n, n_targets=args.n_targets,
            out=None, cache_dir=args.cache), progress=False)
        wall = time.perf_counter() - t1
        r0 = run.results[0]
        out.append({
            "wall_s": round(wall + (t_import if i == 0 else 0.0), 3),
            "import_s": round(t_import, 3) if i == 0 else 0.0,
            "timings_s": run.timings_s, "cache": run.cache,
            "results": [{"layer": r.layer, "mean": round(r.mean, 3), "p_adj": r.p_adj,
                         "significant": r.significant} for r in run.results],
            "n_cavs": run.cache.get("n_cavs"), "concept": r0.concept, "target": r0.target,
        })
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--concept", default="color:red")
    p.add_argument("--target", default="3")
    p.add_argument("--layers", default="conv2,conv3,conv4,conv5")
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--n", type=int, default=50, help="images per concept / random set")
    p.add_argument("--n-targets", type=int, default=100)
    p.add_argument("--cache", help="cache folder (default: a fresh temporary folder)")
    p.add_argument("--child", choices=("cold", "warm"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        for i, rec in enumerate(_one(args, 1 if args.child == "cold" else 2)):
            rec["phase"] = args.child if i == 0 else "warm_repeat"
            print(json.dumps(rec), flush=True)
        return
    own_cache = args.cache is None
    cache = args.cache or tempfile.mkdtemp(prefix="bench-tcav-")
    base = [sys.executable, os.path.abspath(__file__), "--concept", args.concept, "--target",
            args.target, "--layers", args.layers, "--runs", str(args.runs), "--n",
            str(args.n), "--n-targets", str(args.n_targets), "--cache", cache]
    records = []
    try:
        for phase in ("cold", "warm"):
            res = subprocess.run([*base, "--child", phase], capture_output=True, text=True,
                                 check=True)
            for line in res.stdout.splitlines():
                if line.startswith("{"):
                    rec = json.loads(line)
                    records.append(rec)
                    print(line, flush=True)
    finally:
        if own_cache:
            shutil.rmtree(cache, ignore_errors=True)
    by = {r["phase"]: r["wall_s"] for r in records}
    print(json.dumps({
        "summary": f"TCAV, 1 concept x {args.runs} random sets x "
                   f"{len(args.layers.split(','))} layers, starter model, {os.cpu_count()} CPUs",
        "cold_s": by.get("cold"), "warm_s": by.get("warm"),
        "warm_repeat_s": by.get("warm_repeat"), "target_s": 30.0,
        "warm_under_target": by.get("warm", 1e9) < 30.0}))


if __name__ == "__main__":
    main()
