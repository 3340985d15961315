"""``lucidax dissect``."""

from __future__ import annotations

import argparse

from ._common import WEIGHTS_HELP, add_memory_flag, command


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dissect", help="network dissection: which units detect which concepts (IoU of masks)",
        description="For every unit of the conv layers: threshold its activation map at the "
        "top quantile over the dataset, upsample it to the mask size and compute its "
        "dataset-level IoU with every concept mask; a unit whose best IoU reaches "
        "--iou-threshold is a detector of that concept (NetDissect, Bau et al. 2017).",
    )
    p.add_argument("--model", default="starter", help="registered model name (default: starter)")
    p.add_argument("--weights", help=WEIGHTS_HELP)
    p.add_argument("--layers", default="all",
                   help="'all' (every conv layer except *_pre_relu; dense layers are skipped) "
                        "or comma-separated conv layer names")
    p.add_argument("--data", default="auto",
                   help="auto (builtin:starter for the starter model; other models have no "
                        "built-in concept masks: give a folder), builtin:starter[:train|:test] "
                        "(concepts: stroke, digit=<k>, color=<c>, background=<b>) or a folder "
                        "with images/<name>.png and masks/<concept>/<name>.png (default: auto)")
    p.add_argument("--n", type=int, default=2000, help="images of builtin data (default: 2000)")
    p.add_argument("--seed", type=int, default=0, help="builtin data seed (default: 0)")
    p.add_argument("--quantile", type=float, default=0.005,
                   help="top quantile of a unit's activations that forms its mask "
                        "(default: 0.005 = 0.5%%)")
    p.add_argument("--iou-threshold", type=float, default=0.04,
                   help="IoU a unit needs to be a detector of its best concept (default: 0.04)")
    p.add_argument("--quantile-passes", type=int, default=3, choices=(1, 2, 3),
                   help="data passes for the thresholds: 3 exact, 2 relative error < 2^-15, "
                        "1 < 2^-3 (default: 3)")
    p.add_argument("--size", type=int,
                   help="image side for folder data (default: the model's input side)")
    p.add_argument("--out", default="dissect-out", help="output folder (default: dissect-out)")
    p.add_argument("--batch-size", type=int, default=32, help="images per step (default: 32)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_memory_flag(p)


@command("dissect", add)
def run(args: argparse.Namespace) -> int:
    from lucidax.probes.dissect import run_dissect_cli

    run = run_dissect_cli(
        args.model, weights=args.weights, layers=args.layers, data=args.data, n=args.n,
        seed=args.seed, quantile=args.quantile, iou_threshold=args.iou_threshold,
        quantile_passes=args.quantile_passes, size=args.size, out=args.out,
        batch_size=args.batch_size, progress=not args.quiet, memory_check=args.memory_check,
    )
    print(run.table)
    for kind, path in run.files.items():
        print(f"{kind}: {path}")
    return 0
