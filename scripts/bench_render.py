"""Benchmark the render engine: image-steps per second on InceptionV1 (random weights) or
EfficientNet-Lite0 (ImageNet weights).

Setup (fixed, lucent's ``render_vis`` defaults, as ``../shared/baselines/lucent_bench.py``):
objective ``channel(<layer>, <B distinct channels>)`` (channels ``(first + 61 i) % C``; default
layer ``mixed4a`` for InceptionV1, ``blocks.10`` -- lucent's ``_blocks_10``, 112 channels at
14x14 -- for ``--model efficientnet_lite0``), Lucid's default ``image(fft=True,
decorrelate=True)`` at 128x128 upsampled to 224, ``standard_transforms``, Adam 0.05. For each
batch size: one warm-up render (compiles; ``compile_s`` is the tracing + XLA compilation time
reported by ``jax.monitoring``), then ``--repeats`` timed renders of ``--steps`` steps with
other channels (no recompilation: ``recompile_s_in_timed_runs`` ~ 0); the median is reported.
``loadavg_1m`` tells how busy the machine was.

Prints one JSON line per batch size::

    {"batch": 8, "image_steps_per_s": ..., "compile_s": ..., "steps": 64, ...}

Usage: ``python scripts/bench_render.py [--model efficientnet_lite0] [--batches 1,8,32]
[--steps 64] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import jax

import lucidax
import lucidax.models as lm
from lucidax import visualize as viz


def _device_info() -> dict:
    dev = jax.devices()[0]
    return {
        "platform": dev.platform,
        "device": getattr(dev, "device_kind", str(dev)),
        "n_devices": jax.device_count(),
        "cpu_count": os.cpu_count(),
        "loadavg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "jax": jax.__version__,
        "lucidax": lucidax.__version__,
        "python": platform.python_version(),
    }


_COMPILE_S = [0.0]


def _on_duration(event: str, duration: float, **_: object) -> None:
    # tracing, lowering and XLA compilation of every jitted program
    if event.startswith("/jax/core/compile/"):
        _COMPILE_S[0] += duration


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", default="1,8,32", help="comma-separated batch sizes")
    ap.add_argument("--steps", type=int, default=64, help="timed steps per render")
    ap.add_argument("--repeats", type=int, default=3, help="timed renders per batch size")
    ap.add_argument("--model", default="inceptionv1",
                    choices=("inceptionv1", "efficientnet_lite0"))
    ap.add_argument("--layer", default=None,
                    help="layer (default: mixed4a; efficientnet_lite0: blocks.10)")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--model-side", type=int, default=224)
    args = ap.parse_args(argv)

    jax.monitoring.register_event_duration_secs_listener(_on_duration)
    lite = args.model == "efficientnet_lite0"
    args.layer = args.layer or ("blocks.10" if lite else "mixed4a")
    model = lm.load(args.model, seed=0)
    first_channel = 7 if lite else 476
    channels = model.channels(args.layer)
    param = viz.image(fft=True, decorrelate=True)
    optimizer = viz.DEFAULT_OPTIMIZER  # Adam 0.05
    for b in (int(s) for s in args.batches.split(",") if s.strip()):

        def run(offset: int, b: int = b) -> float:
            units = [(first_channel + offset + 61 * i) % channels for i in range(b)]
            t = time.perf_counter()
            r = viz.render(
                model, viz.channel(args.layer, units), param=param,
                transforms=viz.standard_transforms, optimizer=optimizer, steps=args.steps,
                chunk=args.steps, size=args.size, model_side=args.model_side, progress=False,
            )
            elapsed = time.perf_counter() - t
            if not r.all_finite:
                raise RuntimeError(f"non-finite render for units {r.failed_units}")
            return elapsed

        before = _COMPILE_S[0]
        first = run(0)
        compile_s = _COMPILE_S[0] - before
        before = _COMPILE_S[0]
        times = [run(b * (r + 1)) for r in range(args.repeats)]
        recompile_s = _COMPILE_S[0] - before
        med = statistics.median(times)
        print(json.dumps({
            "batch": b,
            "image_steps_per_s": round(b * args.steps / med, 3),
            "compile_s": round(compile_s, 2),
            "first_call_s": round(first, 2),
            "recompile_s_in_timed_runs": round(recompile_s, 3),
            "steps": args.steps,
            "seconds_median": round(med, 3),
            "seconds_all": [round(t, 3) for t in times],
            "model": "efficientnet_lite0 (ImageNet weights)" if lite
            else "inceptionv1 (random weights, seed 0)",
            "objective": f"channel({args.layer}, {b} distinct units)",
            "size": args.size,
            "model_side": args.model_side,
            **_device_info(),
        }), flush=True)


if __name__ == "__main__":
    main()
