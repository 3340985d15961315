"""lucidax vs lucent ``render_vis`` side by side in one run: ours, lucent, ours, ...

Each side runs in its own process with the same settings (``scripts/bench_render.py`` and
``../shared/baselines/lucent_bench.py``: 128 px FFT + decorrelated image upsampled to 224,
standard transforms, Adam 0.05, ``--batch`` distinct channels of one layer). Both count one
step as one optimizer update of the whole batch; the ratio compares image-steps per second.
lucent needs its own environment (``bash ../shared/baselines/setup.sh VENV``; pass its python
with ``--lucent-python``).

Prints one JSON line per run and a summary line::

    {"summary": true, "ratio_median": ..., "ours_image_steps_per_s": [...], "lucent_...": [...]}

Usage: ``python scripts/bench_vs_lucent.py --lucent-python /tmp/baseline/venv/bin/python
[--model efficientnet_lite0] [--batch 8] [--steps 24] [--rounds 2]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _ours(args) -> dict:
    cmd = [sys.executable, os.path.join(ROOT, "scripts", "bench_render.py"), "--model",
           args.model, "--batches", str(args.batch), "--steps", str(args.steps), "--repeats",
           str(args.repeats)]
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    rec = json.loads(out.strip().splitlines()[-1])
    return {"side": "lucidax", "image_steps_per_s": rec["image_steps_per_s"],
            "loadavg_1m": rec["loadavg_1m"], "compile_s": rec["compile_s"]}


def _lucent(args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "out.jsonl")
        cmd = [args.lucent_python, args.lucent_bench, "--model", args.model, "--batch",
               str(args.batch), "--steps", str(args.steps), "--warmup", "2", "--json-out", path]
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        with open(path) as f:
            rec = json.loads(f.read().strip().splitlines()[-1])
    res = rec.get("results", rec)
    ms = res.get("median_step_ms")
    ips = args.batch * 1000.0 / ms if ms else res.get("image_steps_per_s")
    return {"side": "lucent", "image_steps_per_s": round(ips, 3),
            "loadavg_1m": round(os.getloadavg()[0], 2), "median_step_ms": ms}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lucent-python", required=True, help="python of the lucent environment")
    ap.add_argument("--lucent-bench",
                    default=os.path.join(ROOT, "..", "shared", "baselines", "lucent_bench.py"))
    ap.add_argument("--model", default="efficientnet_lite0",
                    choices=("inceptionv1", "efficientnet_lite0"))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=2, help="timed renders per lucidax run")
    ap.add_argument("--rounds", type=int, default=1,
                    help="lucent runs; lucidax runs before, between and after them")
    args = ap.parse_args(argv)
    ours, theirs = [], []
    for r in range(args.rounds):
        if r == 0:
            ours.append(_ours(args))
            print(json.dumps(ours[-1]), flush=True)
        theirs.append(_lucent(args))
        print(json.dumps(theirs[-1]), flush=True)
        ours.append(_ours(args))
        print(json.dumps(ours[-1]), flush=True)
    o = [x["image_steps_per_s"] for x in ours]
    t = [x["image_steps_per_s"] for x in theirs]
    print(json.dumps({
        "summary": True, "model": args.model, "batch": args.batch, "steps": args.steps,
        "ours_image_steps_per_s": o, "lucent_image_steps_per_s": t,
        "ratio_median": round(statistics.median(o) / statistics.median(t), 2),
        "loadavg_1m": [x["loadavg_1m"] for x in ours + theirs],
    }), flush=True)


if __name__ == "__main__":
    main()
