"""``lucidax tcav``."""

from __future__ import annotations

import argparse

from ._common import WEIGHTS_HELP, add_memory_flag, command


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tcav", help="TCAV: does a concept push a class logit up? (CAVs + significance test)")
    p.add_argument("--model", default="starter", help="registered model name (default: starter)")
    p.add_argument("--weights", help=WEIGHTS_HELP)
    p.add_argument("--layers", default="all",
                   help="'all' (every layer except *_pre_relu and the logits) or "
                        "comma-separated names")
    p.add_argument("--concepts", required=True,
                   help="comma-separated: family:value (starter images with that family "
                        "fixed: color:red, background:grass, position:top-left, size:large), "
                        "a folder of concept images, or name=folder")
    p.add_argument("--class", dest="target_class", required=True,
                   help="class label or logit index (starter: 0..9)")
    p.add_argument("--random", default="auto",
                   help="random images: auto (builtin:starter for starter, builtin:photos for "
                        "other RGB models), builtin:starter[:train|:test], builtin:photos "
                        "(crops of real photos) or a folder (default: auto)")
    p.add_argument("--targets", default="auto",
                   help="inputs of the class: auto (starter: builtin:starter; other RGB "
                        "models: builtin:photos, crops of every photo whatever the class; "
                        "give class images for a per-class test), builtin:starter (starter "
                        "digits of the class), builtin:photos[:<source>] (crops of the "
                        "photos or of one, e.g. builtin:photos:chelsea) or a folder "
                        "(default: auto)")
    p.add_argument("--runs", type=int, default=20,
                   help="concept runs and random-vs-random runs (default: 20)")
    p.add_argument("--n-concept", type=int, default=50, help="concept images per run (default: 50)")
    p.add_argument("--n-random", type=int, default=50, help="random images per run (default: 50)")
    p.add_argument("--n-targets", type=int, default=100,
                   help="class inputs of builtin targets (default: 100)")
    p.add_argument("--reduce", default="mean", choices=("mean", "flatten"),
                   help="CAV space: mean (channels, default) or flatten (H*W*C)")
    p.add_argument("--correction", default="holm", choices=("holm", "bh", "bonferroni", "none"),
                   help="multiple-comparison adjustment over concepts x layers (default: holm)")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level (default: 0.05)")
    p.add_argument("--student", action="store_true",
                   help="Student's pooled-variance t-test (the paper's) instead of Welch's")
    p.add_argument("--split", default="test", choices=("train", "test"),
                   help="starter split of builtin sources (default: test)")
    p.add_argument("--seed", type=int, default=0, help="data and run-set seed (default: 0)")
    p.add_argument("--out", default="tcav-out", help="output folder (default: tcav-out)")
    p.add_argument("--cache-dir", help="feature/gradient cache (default: <out>/cache)")
    p.add_argument("--batch-size", type=int, default=50,
                   help="forward/backward batch (default: 50)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_memory_flag(p)


@command("tcav", add)
def run(args: argparse.Namespace) -> int:
    from lucidax.probes.tcav import run_tcav_cli

    run = run_tcav_cli(
        args.model, weights=args.weights, layers=args.layers,
        concepts=[c.strip() for c in args.concepts.split(",") if c.strip()],
        target_class=args.target_class, random=args.random, targets=args.targets,
        runs=args.runs, n_concept=args.n_concept, n_random=args.n_random,
        n_targets=args.n_targets, out=args.out, reduce=args.reduce,
        correction=args.correction, alpha=args.alpha, equal_var=args.student,
        split=args.split, seed=args.seed, cache_dir=args.cache_dir,
        batch_size=args.batch_size, progress=not args.quiet, memory_check=args.memory_check,
    )
    print(run.table)
    for kind, path in run.files.items():
        print(f"{kind}: {path}")
    return 0
