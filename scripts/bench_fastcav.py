"""Benchmark: FastCAV (``--cav mean``, mean-difference CAVs) against the logistic CAVs in TCAV.

On the starter model and on efficientnet_lite0, one ``lucidax tcav`` configuration each is run
with the CAV method alternating ``logistic, mean, logistic, mean, ...`` (``--repeat``
mean/logistic pairs after the first logistic call, which also fills the feature and gradient
cache) in one process, so every later call reads the same cached features and gradients.
Every call draws the same run sets (same seed), so problem ``i`` of a logistic fit and of a
mean fit separate the same concept and random images, and their CAVs can be compared one to
one. Reported:

* per layer and concept: the cosine between the mean CAV and the logistic CAV (mean and min
  over runs; ``null``: the random-vs-random CAVs), the same cosine in each problem's
  standardized coordinates (where the logistic CAV is fitted), the largest component of the
  logistic CAV and the spread of its channel relative to the median channel (the logistic
  normal mapped back to the original space divides by each channel's std, so near-constant
  channels can dominate it), the held-out CAV accuracy of both, the
  TCAV score of both and their difference, both significance decisions;
* the fraction of (layer, concept) significance decisions that agree;
* the time of the CAV fitting itself (``fit_cavs``) and of the whole ``tcav`` call with
  features and gradients cached, per method: the first call (it compiles; for logistic the
  cache-filling call) and the median of the later ones, and the speed-ups (logistic / mean,
  compiled programs);
* the load average (1, 5, 15 min) before and after.

Prints one JSON line per model and a summary line. Example::

    python scripts/bench_fastcav.py --models starter,efficientnet_lite0
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time

import numpy as np

CONFIGS = {
    "starter": dict(layers="conv2,conv3,conv4,conv5",
                    concepts=["digit:3", "color:red", "background:grass"], target_class="3",
                    runs=20, n_concept=50, n_random=50, n_targets=100),
    # ImageNet class 285 (Egyptian cat) on crops of the cat photo; concepts are crops of
    # three texture/object photos (kept out of the random crops by run_tcav)
    "efficientnet_lite0": dict(layers="blocks.10,head",
                               concepts=["builtin:photos:grass", "builtin:photos:brick",
                                         "builtin:photos:coffee"],
                               target_class=285, targets="builtin:photos:chelsea",
                               runs=10, n_concept=30, n_random=30, n_targets=50),
}


def _bench(model: str, cfg: dict, repeat: int, cache: str) -> dict:
    import lucidax.probes._tcav as T
    from lucidax.probes import TCAVJob, run_tcav

    real = T.fit_cavs
    fits: list[dict] = []

    def recording(pos, neg, **kw):  # the CAV fitting itself, timed, CAVs kept
        t0 = time.perf_counter()
        out = real(pos, neg, **kw)
        s = time.perf_counter() - t0
        sd = np.stack([np.concatenate([a, b]).std(axis=0) for a, b in zip(pos, neg,
                                                                           strict=True)])
        fits.append({"s": s, "cavs": out, "sd": sd})  # sd: after the timing
        return out

    T.fit_cavs = recording
    try:
        def call(cav: str):
            del fits[:]
            t0 = time.perf_counter()
            run = run_tcav(TCAVJob(model, out=None, cache_dir=cache, cav=cav, **cfg),
                           progress=False)
            return {"run": run, "wall_s": time.perf_counter() - t0,
                    "tcav_s": run.timings_s["total"], "fit_s": sum(f["s"] for f in fits),
                    "cavs": [f["cavs"] for f in fits], "sd": [f["sd"] for f in fits]}

        t0 = time.perf_counter()
        warm = call("logistic")  # fills the feature and gradient cache (not timed below)
        cold_s = time.perf_counter() - t0
        seq = ["mean", "logistic"] * repeat  # with the warm-up: logistic, mean, logistic, ...
        calls = {"logistic": [warm], "mean": []}
        for cav in seq:
            calls[cav].append(call(cav))
    finally:
        T.fit_cavs = real

    lo, me = calls["logistic"][1], calls["mean"][0]  # one of each, same run sets
    runs = cfg["runs"]
    layers = [r.layer for r in lo["run"].results if r.concept == lo["run"].results[0].concept]
    concepts = list(dict.fromkeys(r.concept for r in lo["run"].results))
    rows, agree = [], []
    by = {(r.concept, r.layer): r for r in lo["run"].results}
    by_m = {(r.concept, r.layer): r for r in me["run"].results}
    for li, layer in enumerate(layers):
        cl, cm = lo["cavs"][li], me["cavs"][li]
        cos = np.sum(cl.directions * cm.directions, axis=1)
        # both CAVs in each problem's standardized coordinates (the logistic fit's space)
        sd = lo["sd"][li]
        zl, zm = cl.directions * sd, cm.directions * sd
        cos_std = np.sum(zl * zm, axis=1) / np.maximum(
            np.linalg.norm(zl, axis=1) * np.linalg.norm(zm, axis=1), 1e-300)
        # where the logistic CAV puts its weight: the spread of its largest component's
        # channel relative to the median channel spread (<< 1: a near-constant channel)
        top = np.abs(cl.directions).argmax(axis=1)
        top_sd = sd[np.arange(len(top)), top] / np.maximum(np.median(sd, axis=1), 1e-300)
        for j, tag in enumerate([None, *concepts]):  # tcav_from_features' problem order
            sl = slice(j * runs, (j + 1) * runs)
            row = {"layer": layer, "concept": tag or "null (random vs random)",
                   "cos_mean": round(float(np.mean(cos[sl])), 4),
                   "cos_min": round(float(np.min(cos[sl])), 4),
                   "cos_standardized": round(float(np.mean(cos_std[sl])), 4),
                   "logistic_top_weight": round(float(np.mean(np.abs(cl.directions[sl]).max(1))),
                                                3),
                   "logistic_top_sd_over_median": float(f"{np.median(top_sd[sl]):.3g}"),
                   "cav_acc_logistic": round(float(np.nanmean(cl.accuracy[sl])), 3),
                   "cav_acc_mean": round(float(np.nanmean(cm.accuracy[sl])), 3)}
            if tag is not None:
                a, b = by[(tag, layer)], by_m[(tag, layer)]
                d = np.abs(np.subtract(a.scores, b.scores))
                row.update({
                    "tcav_logistic": round(a.mean, 3), "tcav_mean": round(b.mean, 3),
                    "tcav_diff": round(b.mean - a.mean, 3),
                    "run_score_absdiff_mean": round(float(d.mean()), 3),
                    "p_adj_logistic": float(f"{a.p_adj:.3g}"),
                    "p_adj_mean": float(f"{b.p_adj:.3g}"),
                    "significant_logistic": a.significant, "significant_mean": b.significant})
                agree.append(a.significant == b.significant)
            rows.append(row)

    def med(cs, key):
        return round(statistics.median(c[key] for c in cs), 4)

    # calls["logistic"][0] filled the cache and compiled the solver: its fit time is the
    # first (compiling) logistic fit, its tcav time is not a cached call
    fit_t = {cav: {"first_s": round(cs[0]["fit_s"], 4), "median_s": med(cs[1:], "fit_s")}
             for cav, cs in calls.items()}
    tcav_t = {"logistic": {"median_s": med(calls["logistic"][1:], "tcav_s")},
              "mean": {"first_s": round(calls["mean"][0]["tcav_s"], 4),
                       "median_s": med(calls["mean"][1:], "tcav_s")}}
    concept_rows = [r for r in rows if "tcav_diff" in r]
    return {
        "model": model, "config": dict(cfg),
        "n_cavs_per_call": int(sum(c.directions.shape[0] for c in lo["cavs"])),
        "cold_first_call_s": round(cold_s, 2),
        "agreement": {
            "significance_decisions_agree": f"{sum(agree)}/{len(agree)}",
            "fraction": round(sum(agree) / len(agree), 3),
            "cos_mean_concepts": round(float(np.mean([r["cos_mean"] for r in concept_rows])),
                                       4),
            "cos_standardized_concepts": round(float(np.mean(
                [r["cos_standardized"] for r in concept_rows])), 4),
            "cos_mean_null": round(float(np.mean([r["cos_mean"] for r in rows
                                                  if "tcav_diff" not in r])), 4),
            "tcav_absdiff_mean": round(float(np.mean([abs(r["tcav_diff"])
                                                      for r in concept_rows])), 4),
            "tcav_absdiff_max": round(float(np.max([abs(r["tcav_diff"])
                                                    for r in concept_rows])), 4)},
        "fit_cavs_s": fit_t, "tcav_call_cached_s": tcav_t,
        "speedup": {
            "fit_cavs_warm": round(fit_t["logistic"]["median_s"] / fit_t["mean"]["median_s"], 1),
            "fit_cavs_first": round(fit_t["logistic"]["first_s"] / fit_t["mean"]["first_s"], 1),
            "tcav_call_warm": round(tcav_t["logistic"]["median_s"]
                                    / tcav_t["mean"]["median_s"], 2)},
        "rows": rows,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="starter,efficientnet_lite0")
    p.add_argument("--repeat", type=int, default=3,
                   help="mean/logistic pairs after the warm-up logistic call")
    p.add_argument("--cache", help="cache folder (default: a fresh temporary folder)")
    args = p.parse_args()
    load0 = [round(x, 2) for x in os.getloadavg()]
    t0 = time.perf_counter()
    out = []
    for model in args.models.split(","):
        cache = args.cache or tempfile.mkdtemp(prefix="bench-fastcav-")
        try:
            rec = _bench(model, CONFIGS[model], max(2, args.repeat),
                         os.path.join(cache, model))
        finally:
            if args.cache is None:
                shutil.rmtree(cache, ignore_errors=True)
        rec["loadavg"] = [round(x, 2) for x in os.getloadavg()]
        print(json.dumps(rec), flush=True)
        out.append(rec)
    print(json.dumps({
        "summary": "FastCAV (--cav mean) vs logistic CAVs, same features and run sets",
        "cpus": os.cpu_count(), "loadavg_start": load0,
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "total_s": round(time.perf_counter() - t0, 1),
        **{r["model"]: {"agree": r["agreement"]["significance_decisions_agree"],
                        "cos_concepts": r["agreement"]["cos_mean_concepts"],
                        "speedup_fit_warm": r["speedup"]["fit_cavs_warm"],
                        "speedup_tcav_warm": r["speedup"]["tcav_call_warm"]} for r in out}}))


if __name__ == "__main__":
    main()
