"""``lucidax invert``."""

from __future__ import annotations

import argparse

from ._common import WEIGHTS_HELP, add_memory_flag, command


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("invert", help="reconstruct images from a layer's activations (feature "
                                      "inversion) or draw caricatures; writes a side-by-side grid")
    p.add_argument("--model", default="starter", help="registered model name (default: starter)")
    p.add_argument("--weights", help=WEIGHTS_HELP)
    p.add_argument("--layers", required=True,
                   help="comma-separated layer names, one grid column each (e.g. conv1,conv3)")
    p.add_argument("--images", nargs="+", default="auto",
                   help="auto (the model's images: starter: 4 builtin:starter:test images; "
                        "other RGB models: the whole photos astronaut, chelsea, coffee, "
                        "rocket), or image files (centre-cropped to a square and resized to "
                        "--size), builtin:photos (every photo shipped in installed packages), "
                        "builtin:photos:<source> (one, e.g. builtin:photos:chelsea) or "
                        "builtin:starter[:test|:train] (its first 4 images) (default: auto)")
    p.add_argument("--out", default="invert-out",
                   help="output folder: grid.png, <image>/<layer>.png, metrics.json "
                        "(default: invert-out)")
    p.add_argument("--mode", default="invert", choices=("invert", "caricature"),
                   help="invert: match the activations; caricature: exaggerate them "
                        "(default: invert)")
    p.add_argument("--loss", default="l2", choices=("l2", "cosine"),
                   help="inversion loss (default: l2)")
    p.add_argument("--steps", type=int, default=256, help="optimization steps (default: 256)")
    p.add_argument("--size", type=int, help="image side (default: the model's input side)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--learning-rate", type=float, default=0.05, help="Adam (default: 0.05)")
    p.add_argument("--tv", type=float, default=0.5,
                   help="total-variation prior weight per pixel value (default: 0.5; 0: off)")
    p.add_argument("--jitter", type=int, default=0,
                   help="random shift of up to this many px per step (default: 0)")
    p.add_argument("--scale", type=int, default=2, help="grid PNG enlargement (default: 2)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_memory_flag(p)


@command("invert", add)
def run(args: argparse.Namespace) -> int:
    from lucidax.visualize.invert import run_invert_cli

    run = run_invert_cli(
        args.model, weights=args.weights, layers=args.layers, images=args.images, out=args.out,
        steps=args.steps, mode=args.mode, loss=args.loss, size=args.size, seed=args.seed,
        learning_rate=args.learning_rate, tv=args.tv, jitter_px=args.jitter,
        scale=args.scale, progress=not args.quiet, memory_check=args.memory_check,
    )
    print(run.table)
    for kind, path in run.files.items():
        print(f"{kind}: {path}")
    return 0
