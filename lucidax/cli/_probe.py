"""``lucidax probe``."""

from __future__ import annotations

import argparse

from ._common import WEIGHTS_HELP, add_memory_flag, command


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("probe", help="linear probes of every layer for a label family")
    p.add_argument("--model", default="starter", help="registered model name (default: starter)")
    p.add_argument("--weights", help=WEIGHTS_HELP)
    p.add_argument("--layers", default="all",
                   help="'all' (every layer except *_pre_relu) or comma-separated names")
    p.add_argument("--data", default="auto",
                   help="auto (the model's data: builtin:starter for starter, builtin:photos "
                        "for other RGB models), builtin:starter[:train|:test], "
                        "builtin:photos[:<source>] (crops of real photos shipped in installed "
                        "packages, label: source), an image folder (sub-folder per class or "
                        "labels.csv) or a CSV filename,label[,...] (default: auto)")
    p.add_argument("--target", help="label family / CSV column (starter: digit, color, "
                                     "background, position, size; photos: source)")
    p.add_argument("--out", default="probe-out", help="output folder (default: probe-out)")
    p.add_argument("--reduce", default="mean",
                   help="spatial reduction: mean, max, center, grid4, position:y,x (default: mean)")
    p.add_argument("--n", type=int, default=2000, help="images of builtin data (default: 2000)")
    p.add_argument("--seed", type=int, default=0, help="data and split seed (default: 0)")
    p.add_argument("--batch-size", type=int, default=64, help="extraction batch (default: 64)")
    p.add_argument("--cache-dir", help="feature cache (default: <out>/feature-cache)")
    p.add_argument("--folds", type=int, default=5, help="CV folds (default: 5)")
    p.add_argument("--test-size", type=float, default=0.25, help="held-out share (default: 0.25)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_memory_flag(p)


@command("probe", add)
def run(args: argparse.Namespace) -> int:
    from lucidax.probes import run_probe_cli

    run = run_probe_cli(
        args.model, weights=args.weights, layers=args.layers, data=args.data,
        target=args.target, out=args.out, reduce=args.reduce, n=args.n, seed=args.seed,
        batch_size=args.batch_size, cache_dir=args.cache_dir, folds=args.folds,
        test_size=args.test_size, progress=not args.quiet, memory_check=args.memory_check,
    )
    print(run.table)
    for kind, path in run.files.items():
        print(f"{kind}: {path}")
    return 0
