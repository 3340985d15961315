"""Scaling benchmark of the gallery builder (issue 18, item 3); prints JSON.

1. The same small gallery (starter model, a few units of each conv layer, real renders) on
   N = 1, 2, 4 CPU processes (``jax.distributed``, gloo; batches claimed from the shared
   queue) and in one process on N forced host devices
   (``XLA_FLAGS=--xla_force_host_platform_device_count=N``: each batch sharded over them).
   Per run: wall time (launch to last exit), time to the first finished unit, units/s over
   the wall and over the render window, parallel efficiency against N = 1, each process's
   units and busy time, the load average before and after.
2. A model of a whole-model run (ResNet-50 every block unit; EfficientNet-Lite0 all units)
   with the model's gallery preset (steps, size, variants): image-steps in total, the
   image-steps/s and FLOP/s each of 8 devices needs to finish in an hour, and what this
   machine's measured rate would take. Assumptions (printed in the JSON): one render step
   of one image costs ~3x the forward FLOPs up to the objective layer (XLA cost analysis
   at the side the model sees); the measured FLOP/s of the starter gallery transfers to
   another model on the same hardware; the shared queue keeps devices busy to within one
   batch (no idle tail), compile time and file writing excluded.

Usage: python scripts/bench_scale.py [--procs 1,2,4] [--devices 1,2,4] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GALLERY = {"model": "starter", "layers": "conv1,conv2,conv3,conv4,conv5", "units": "0-7",
           "steps": 64, "size": 64, "variants": 1, "batch_size": 4, "top_k": 0,
           "dataset": "none", "rescue": False, "memory_check": False}


def _worker(cfg: dict) -> None:
    """One process of a run (started by ``_launch``)."""
    from lucidax.gallery import GalleryConfig, build_gallery, init_distributed

    config = GalleryConfig(**cfg)
    if config.distributed:
        init_distributed(config)
    r = build_gallery(config, progress=False)
    print("REPORT " + json.dumps({"pid": r.process_id, "units": r.units_rendered,
                                  "render_s": r.render_s, "elapsed_s": r.elapsed_s}), flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(cfg: dict, nproc: int, devices: int) -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1",
               LUCIDAX_COMPILE_CACHE="0")  # every run compiles: runs stay comparable
    env.pop("XLA_FLAGS", None)
    if devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    if nproc > 1:
        cfg = {**cfg, "distributed": True, "shard_timeout": 600}
        env.update(LUCIDAX_COORDINATOR=f"127.0.0.1:{_free_port()}",
                   LUCIDAX_NUM_PROCESSES=str(nproc))
    load_before = os.getloadavg()
    t0 = time.time()
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(cfg)],
                              env={**env, "LUCIDAX_PROCESS_ID": str(i)}, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(nproc)]
    logs = [p.communicate(timeout=900)[0] for p in procs]
    wall = time.time() - t0
    for p, log in zip(procs, logs, strict=True):
        if p.returncode:
            raise RuntimeError(f"worker failed ({p.returncode}):\n{log[-3000:]}")
    reports = [json.loads(line[7:]) for log in logs for line in log.splitlines()
               if line.startswith("REPORT ")]
    m = json.loads((Path(cfg["out"]) / "manifest.json").read_text())
    entries = [e for us in m["units"].values() for e in us.values()]
    starts = [e["started_at"] for e in entries]
    ends = [e["finished_at"] for e in entries]
    window = max(ends) - min(starts)
    per = {}
    for e in entries:
        p = per.setdefault(e["process"], {"units": 0, "batches": {}})
        p["units"] += 1
        p["batches"][e["batch"]] = (e["started_at"], e["finished_at"])
    procs_out = {
        str(p): {"units": v["units"], "batches": len(v["batches"]),
                 "busy_s": round(sum(b - a for a, b in v["batches"].values()), 2),
                 "first_start_s": round(min(a for a, _ in v["batches"].values()) - t0, 2),
                 "last_end_s": round(max(b for _, b in v["batches"].values()) - t0, 2)}
        for p, v in sorted(per.items())
    }
    return {
        "processes": nproc, "devices_per_process": devices, "units": len(entries),
        "wall_s": round(wall, 2),
        "time_to_first_unit_s": round(min(ends) - t0, 2),
        "render_window_s": round(window, 2),
        "units_per_s_wall": round(len(entries) / wall, 3),
        "units_per_s_render": round(len(entries) / window, 3),
        "finish_spread_s": round(max(v["last_end_s"] for v in procs_out.values())
                                 - min(v["last_end_s"] for v in procs_out.values()), 2),
        "per_process": procs_out,
        "reports": sorted(reports, key=lambda r: r["pid"]),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "_per_unit_s": {layer: sorted(e["time_s"] for e in us.values())
                        for layer, us in m["units"].items()},
    }


def _efficiency(runs: list[dict], key: str) -> None:
    base = next((r for r in runs if r["processes"] * r["devices_per_process"] == 1), None)
    for r in runs:
        n = r["processes"] * r["devices_per_process"]
        r[f"speedup_{key}"] = round(r[f"units_per_s_{key}"] / base[f"units_per_s_{key}"], 3)
        r[f"efficiency_{key}"] = round(r[f"speedup_{key}"] / n, 3)


def _flops_to(model, layers: list[str], side: int) -> dict[str, float]:
    """Forward FLOPs of one image up to each layer (XLA cost analysis, nothing compiled)."""
    import jax
    import jax.numpy as jnp

    x = jax.ShapeDtypeStruct((1, side, side, model.input_spec.channels), jnp.float32)
    out = {}
    for layer in layers:
        lowered = jax.jit(lambda p, im, n=layer: model.apply(p, im, (n,))[n].sum()).lower(
            model.params, x)
        ca = lowered.cost_analysis()
        ca = ca[0] if isinstance(ca, list) else ca
        out[layer] = float(ca.get("flops", 0.0))
    return out


def _seen_side(preset: dict, model) -> int:
    size = preset["size"] + 12  # standard transforms pad
    target = model.input_spec.side if preset.get("model_side") is None else preset["model_side"]
    return max(size, target) if target else size


def _projection(measured: dict) -> dict:
    """Whole-model runs from the starter's measured cost per FLOP."""
    import warnings

    from lucidax.gallery._config import preset_for
    from lucidax.models import load

    starter = load("starter")
    layers = GALLERY["layers"].split(",")
    side = _seen_side({"size": GALLERY["size"], "model_side": None}, starter)
    fl = _flops_to(starter, layers, side)
    # steady state: median seconds per unit of each layer (its first batch compiles)
    per_unit = {k: v[len(v) // 2] for k, v in measured.items() if k in fl}
    step_s = {k: per_unit[k] / (GALLERY["steps"] * GALLERY["variants"]) for k in per_unit}
    flop_s = sorted(3 * fl[k] / step_s[k] for k in step_s)  # fwd+bwd ~ 3x forward
    cpu_flops = flop_s[len(flop_s) // 2]
    out = {"measured": {
        "starter_seconds_per_image_step": {k: round(v, 6) for k, v in step_s.items()},
        "starter_forward_mflops_per_image": {k: round(v / 1e6, 2) for k, v in fl.items()},
        "cpu_effective_gflop_s": round(cpu_flops / 1e9, 2)}}
    jobs = {
        "resnet50_every_block_unit": ("resnet50", lambda n: n.startswith("layer")
                                      and n.count(".") == 1),
        "efficientnet_lite0_all_units": ("efficientnet_lite0", None),
    }
    for title, (name, pick) in jobs.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = load(name)
        preset = preset_for(name)
        names = [n for n in model.layer_names if not model.layers[n].pre_relu]
        names = [n for n in names if pick(n)] if pick else names
        side = _seen_side(preset, model)
        fl = _flops_to(model, names, side)
        units = {n: model.layers[n].channels for n in names}
        steps, variants = preset["steps"], preset["variants"]
        image_steps = sum(units.values()) * steps * variants
        total_flops = sum(3 * fl[n] * units[n] * steps * variants for n in names)
        devices, hour = 8, 3600.0
        out[title] = {
            "layers": len(names), "units": sum(units.values()),
            "preset": {"steps": steps, "size": preset["size"], "variants": variants,
                       "side_seen": side},
            "image_steps": image_steps,
            "unit_steps": sum(units.values()) * steps,
            "total_pflop": round(total_flops / 1e15, 3),
            "needed_per_device_for_1h_on_8": {
                "image_steps_per_s": round(image_steps / (devices * hour), 1),
                "unit_steps_per_s": round(sum(units.values()) * steps / (devices * hour), 1),
                "tflop_s": round(total_flops / (devices * hour) / 1e12, 3),
            },
            "this_cpu_hours_one_process": round(total_flops / cpu_flops / hour, 1),
        }
    out["assumptions"] = [
        "one render step of one image ~ 3x the forward FLOPs up to its objective layer "
        "(XLA cost analysis at the side the model sees: preset size + 12 px of transforms, "
        "or the model side when resized)",
        "the gallery preset of each model (steps, size, variants); every unit rendered once "
        "(no rescue re-renders, which add up to one more render for silent units)",
        "devices kept busy by the shared queue (tail <= one batch); compile time, top-k "
        "dataset search and file writing excluded",
        "this CPU's rate = the starter gallery's measured steady-state FLOP/s (median over "
        "layers), assumed to carry over to the larger models",
    ]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--procs", default="1,2,4")
    ap.add_argument("--devices", default="1,2,4")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args()
    if args.worker:
        _worker(json.loads(args.worker))
        return
    runs_p, runs_d = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for n in [int(x) for x in args.procs.split(",") if x]:
            runs_p.append(_launch({**GALLERY, "out": f"{tmp}/p{n}"}, n, 1))
            print(f"processes={n}: {runs_p[-1]['wall_s']} s", file=sys.stderr)
        for n in [int(x) for x in args.devices.split(",") if x]:
            runs_d.append(_launch({**GALLERY, "out": f"{tmp}/d{n}"}, 1, n))
            print(f"devices={n}: {runs_d[-1]['wall_s']} s", file=sys.stderr)
    for runs in (runs_p, runs_d):
        if runs:
            _efficiency(runs, "wall")
            _efficiency(runs, "render")
    base = (runs_p or runs_d)[0]
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": sys.platform},
        "gallery": GALLERY,
        "processes": [{k: v for k, v in r.items() if not k.startswith("_")} for r in runs_p],
        "forced_host_devices": [{k: v for k, v in r.items() if not k.startswith("_")}
                                for r in runs_d],
        "projection": _projection(base["_per_unit_s"]),
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
