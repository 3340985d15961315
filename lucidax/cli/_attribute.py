"""``lucidax attribute``."""

from __future__ import annotations

import argparse

from ._common import WEIGHTS_HELP, command


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "attribute",
        help="attribution maps (gradients, IG, Grad-CAM, occlusion, LIME, ...) with overlay "
             "grids, deletion/insertion AUC and an HTML page",
        description="Compute attribution maps of several methods for some images, score them "
        "with deletion/insertion curves against a random map, and write <method>.png overlay "
        "grids, figure.png, maps.npz, results.json and index.html to --out.",
    )
    p.add_argument("--model", default="starter", help="registered model name (default: starter)")
    p.add_argument("--weights", help=WEIGHTS_HELP)
    p.add_argument("--images", default="auto",
                   help="auto (builtin:starter:test for starter, builtin:photos for other RGB "
                        "models), builtin:starter[:test|:train], builtin:photos[:<source>] "
                        "(real photos, whole ones first, then crops), a folder of images, an "
                        "image file or a .npy [N,H,W,C] array in [0,1] (default: auto)")
    p.add_argument("--methods", default="gradient,grad_x_input,ig,gradcam,occlusion,lime",
                   help="comma-separated: gradient, grad_x_input, smoothgrad, ig, gradcam, "
                        "guided_backprop, lrp, occlusion, lime, kernelshap, random; or 'all'")
    p.add_argument("--target", default="predicted",
                   help="'predicted' (each image's top class), 'label' (builtin labels), a "
                        "class index or a class label (default: predicted)")
    p.add_argument("--out", default="attribute-out", help="output folder (default: "
                                                          "attribute-out)")
    p.add_argument("--n", type=int, default=8, help="number of images (default: 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the builtin images (default: 0)")
    p.add_argument("--evaluate", action=argparse.BooleanOptionalAction, default=True,
                   help="deletion/insertion AUC for every method and a random map")
    p.add_argument("--steps", type=int, default=16, help="points per deletion/insertion curve")
    p.add_argument("--option", action="append", metavar="METHOD.KEY=VALUE",
                   help="method option, repeatable (e.g. occlusion.patch=16, ig.steps=64, "
                        "lime.samples=512)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


@command("attribute", add)
def run(args: argparse.Namespace) -> int:
    from lucidax.attribute import parse_options, run_attribute_cli

    run = run_attribute_cli(
        args.model, weights=args.weights, images=args.images, methods=args.methods,
        target=args.target, out=args.out, n=args.n, seed=args.seed, evaluate=args.evaluate,
        steps=args.steps, options=parse_options(args.option), progress=not args.quiet,
    )
    print(run.table)
    print(f"open {run.files['html']}")
    return 0
