"""Benchmark: cold starts with and without a warm persistent compilation cache.

Every phase runs in a fresh Python process (``--child``), as a user's next command would:

* ``probe``: ``fit_probe`` on the data of ``scripts/bench_probe.py`` (same protocol: 5-fold
  CV over the lambda grid, refit, test) and scikit-learn's LogisticRegression on the same
  data in the same process; ``cold``: an empty compilation cache, ``warm``: a second process
  with the same cache folder. Reports the first ``fit_probe`` call's time, the speed-up over
  scikit-learn (target >= 10x with a warm cache) and the whole process's time.
* ``tcav``: ``run_tcav`` on the starter model (1 concept x ``--tcav-runs`` random sets x 4
  layers): ``cold``: everything from scratch (empty feature cache and compilation cache, the
  issue's cold process); ``warm``: a fresh feature cache but the warm compilation cache;
  ``warm_features_cached``: features cached too, plus a second call in the same process
  (everything compiled in memory).
* ``gallery``: a small starter gallery with units 0-3 done (made without the compilation
  cache) resumed with units 0-7 (8 units left over 2 layers) by ``lucidax gallery``, the
  whole process, cold vs warm compilation cache; then a resume of the complete gallery.

Each record has the compilation-cache hits/misses of its process (JAX monitoring events)
and the load average. Prints one JSON line per phase, then a summary line. Example::

    python scripts/bench_cold_start.py --n 8000 --d 1024
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

HERE = os.path.dirname(os.path.abspath(__file__))


def _counter() -> dict[str, int]:
    from jax import monitoring

    counts: dict[str, int] = {}
    monitoring.register_event_listener(
        lambda e, **k: counts.__setitem__(e, counts.get(e, 0) + 1))
    return counts


def _cache_counts(counts: dict[str, int]) -> dict[str, int]:
    return {"cache_hits": counts.get("/jax/compilation_cache/cache_hits", 0),
            "cache_misses": counts.get("/jax/compilation_cache/cache_misses", 0)}


def _probe_child(args: argparse.Namespace) -> dict:
    import warnings

    t0 = time.perf_counter()
    counts = _counter()
    from lucidax._compile_cache import enable_compile_cache
    from lucidax.probes import DEFAULT_LAMBDAS, fit_probe

    enable_compile_cache()  # from LUCIDAX_COMPILE_CACHE (fit_probe is not a job)
    sys.path.insert(0, HERE)
    from bench_probe import make_data, sklearn_probe

    t_import = time.perf_counter() - t0
    lambdas = list(DEFAULT_LAMBDAS)
    x, y = make_data(args.n, args.d, args.classes, signal=0.07, seed=0)
    common = dict(test_size=0.25, folds=5, seed=0)
    t0 = time.perf_counter()
    res = fit_probe(x, y, lambdas=lambdas, tol=1e-4, max_iter=500, scoring="log_loss",
                    **common)
    t_first = time.perf_counter() - t0
    rec = {"lucidax_first_call_s": round(t_first, 2), "import_s": round(t_import, 2),
           "accuracy": res.accuracy, **_cache_counts(counts)}
    t0 = time.perf_counter()
    fit_probe(x, y, lambdas=lambdas, tol=1e-4, max_iter=500, scoring="log_loss", **common)
    rec["lucidax_second_call_s"] = round(time.perf_counter() - t0, 2)
    rec["process_to_first_result_s"] = round(t_import + t_first, 2)
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk = sklearn_probe(x, y, lambdas, tol=1e-4, max_iter=500, warm_start=True,
                           scoring="log_loss", **common)
    t_sk = time.perf_counter() - t0
    rec.update(sklearn_s=round(t_sk, 2), sklearn_accuracy=sk["accuracy"],
               speedup_first_call=round(t_sk / t_first, 2),
               speedup_second_call=round(t_sk / rec["lucidax_second_call_s"], 2),
               loadavg_before_sklearn=load)
    return rec


def _tcav_child(args: argparse.Namespace, repeat: int) -> dict:
    t0 = time.perf_counter()
    counts = _counter()
    from lucidax.probes import TCAVJob, run_tcav

    t_import = time.perf_counter() - t0
    walls = []
    for i in range(repeat):
        t1 = time.perf_counter()
        run_tcav(TCAVJob(
            "starter", layers="conv2,conv3,conv4,conv5", concepts=["color:red"],
            target_class="3", runs=args.tcav_runs, n_concept=50, n_random=50, n_targets=100,
            out=None, cache_dir=args.tcav_cache), progress=False)
        walls.append(time.perf_counter() - t1)
        if i == 0:
            first = _cache_counts(counts)
    rec = {"run_tcav_s": round(walls[0], 2), "import_s": round(t_import, 2),
           "process_to_result_s": round(t_import + walls[0], 2), **first}
    if repeat > 1:
        rec["run_tcav_second_call_s"] = round(walls[1], 2)
    return rec


def _gallery_child(args: argparse.Namespace) -> dict:
    t0 = time.perf_counter()
    counts = _counter()
    from lucidax.cli import main

    t_import = time.perf_counter() - t0
    t1 = time.perf_counter()
    rc = main(_gallery_argv(args.gallery_out, args.gallery_units))
    wall = time.perf_counter() - t1
    return {"rc": rc, "gallery_s": round(wall, 2), "import_s": round(t_import, 2),
            "process_to_result_s": round(t_import + wall, 2), **_cache_counts(counts)}


def _gallery_argv(out: str, units: str) -> list[str]:
    return ["gallery", "--model", "starter", "--layers", "conv2,conv4", "--units", units,
            "--steps", "16", "--size", "32", "--top-k", "4", "--dataset-size", "64",
            "--out", out, "--quiet"]


def _spawn(kind: str, phase: str, args: argparse.Namespace, cache: str | None,
           extra: list[str] = ()) -> dict:
    env = dict(os.environ)
    env["LUCIDAX_COMPILE_CACHE"] = cache or "off"
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    cmd = [sys.executable, os.path.abspath(__file__), "--child", kind, "--n", str(args.n),
           "--d", str(args.d), "--classes", str(args.classes), "--tcav-runs",
           str(args.tcav_runs), "--tcav-cache", args.tcav_cache, "--gallery-out",
           args.gallery_out, "--gallery-units", args.gallery_units, *extra]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"{kind} {phase} failed:\n{res.stderr[-4000:]}")
    rec = json.loads([ln for ln in res.stdout.splitlines() if ln.startswith("{")][-1])
    rec = {"bench": kind, "phase": phase, "process_wall_s": round(wall, 2), **rec,
           "loadavg": round(os.getloadavg()[0], 2)}
    print(json.dumps(rec), flush=True)
    return rec


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=8000, help="probe samples")
    p.add_argument("--d", type=int, default=1024, help="probe features")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--tcav-runs", type=int, default=50)
    p.add_argument("--only", default="probe,tcav,gallery", help="benches to run")
    p.add_argument("--tcav-cache", help=argparse.SUPPRESS)
    p.add_argument("--gallery-out", help=argparse.SUPPRESS)
    p.add_argument("--gallery-units", default="0-3", help=argparse.SUPPRESS)
    p.add_argument("--child", choices=("probe", "tcav", "tcav2", "gallery"),
                   help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        rec = {"probe": lambda: _probe_child(args), "tcav": lambda: _tcav_child(args, 1),
               "tcav2": lambda: _tcav_child(args, 2),
               "gallery": lambda: _gallery_child(args)}[args.child]()
        print(json.dumps(rec), flush=True)
        return
    tmp = tempfile.mkdtemp(prefix="bench-cold-")
    only = args.only.split(",")
    recs: dict[str, dict] = {}
    args.tcav_cache = args.gallery_out = tmp

    def spawn(name, kind, phase, cache, **paths):
        vars(args).update(paths)
        recs[name] = _spawn(kind, phase, args, cache)

    try:
        if "probe" in only:
            cache = os.path.join(tmp, "compile-probe")
            spawn("probe-cold", "probe", "cold", cache)
            spawn("probe-warm", "probe", "warm", cache)
        if "tcav" in only:
            # everything from scratch (features too), then a fresh feature cache with the
            # warm compilation cache, then the same with the features cached
            cache, feats = os.path.join(tmp, "compile-tcav"), os.path.join(tmp, "tcav-a")
            spawn("tcav-cold", "tcav", "cold", cache, tcav_cache=feats)
            spawn("tcav-warm", "tcav", "warm", cache, tcav_cache=os.path.join(tmp, "tcav-b"))
            spawn("tcav-warm-features", "tcav2", "warm_features_cached", cache,
                  tcav_cache=feats)
        if "gallery" in only:
            # a gallery with units 0-3 done, resumed with 0-7: 4 units left to render
            done = os.path.join(tmp, "gallery-done")
            spawn("gallery-prepare", "gallery", "prepare", None, gallery_out=done,
                  gallery_units="0-3")
            for phase in ("cold", "warm"):
                out = os.path.join(tmp, f"gallery-{phase}")
                shutil.copytree(done, out)
                spawn(f"gallery-{phase}", "gallery", f"resume_{phase}",
                      os.path.join(tmp, "compile-gallery"), gallery_out=out,
                      gallery_units="0-7")
            spawn("gallery-complete", "gallery", "resume_complete_warm",
                  os.path.join(tmp, "compile-gallery"), gallery_out=out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    summary: dict = {"summary": f"cold starts, {os.cpu_count()} CPUs",
                     "loadavg": [round(v, 2) for v in os.getloadavg()]}
    if "probe-warm" in recs:
        c, w = recs["probe-cold"], recs["probe-warm"]
        summary["probe"] = {
            "n": args.n, "d": args.d, "first_call_cold_s": c["lucidax_first_call_s"],
            "first_call_warm_cache_s": w["lucidax_first_call_s"],
            "speedup_cold": c["speedup_first_call"],
            "speedup_warm_cache": w["speedup_first_call"],
            "speedup_in_process": w["speedup_second_call"],
            "target_10x_met_warm_cache": w["speedup_first_call"] >= 10.0}
    if "tcav-warm" in recs:
        c, w, f = recs["tcav-cold"], recs["tcav-warm"], recs["tcav-warm-features"]
        summary["tcav"] = {
            "runs": args.tcav_runs, "process_cold_s": c["process_to_result_s"],
            "process_warm_compile_cache_s": w["process_to_result_s"],
            "process_warm_compile_cache_features_cached_s": f["process_to_result_s"],
            "run_tcav_cold_s": c["run_tcav_s"], "run_tcav_warm_compile_cache_s": w["run_tcav_s"],
            "run_tcav_features_cached_s": f["run_tcav_s"],
            "run_tcav_in_process_s": f.get("run_tcav_second_call_s")}
    if "gallery-warm" in recs:
        c, w = recs["gallery-cold"], recs["gallery-warm"]
        summary["gallery_resume"] = {
            "units_left": 8, "process_cold_s": c["process_wall_s"],
            "process_warm_cache_s": w["process_wall_s"],
            "build_gallery_cold_s": c["gallery_s"], "build_gallery_warm_cache_s": w["gallery_s"],
            "complete_gallery_resume_s": recs["gallery-complete"]["process_wall_s"]}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
