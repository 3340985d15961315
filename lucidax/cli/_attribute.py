"""``lucidax attribute``."""

from __future__ import annotations

import argparse

from ._common import add_dataclass_flags, command, dataclass_from_args


def add(sub: argparse._SubParsersAction) -> None:
    from lucidax.attribute import AttributeJob

    p = sub.add_parser(
        "attribute",
        help="attribution maps (gradients, IG, Grad-CAM, occlusion, LIME, ...) with overlay "
             "grids, deletion/insertion AUC and an HTML page",
        description="Compute attribution maps of several methods for some images, score them "
        "with deletion/insertion curves against a random map, and write <method>.png overlay "
        "grids, figure.png, maps.npz, results.json and index.html to --out.",
    )
    add_dataclass_flags(p, AttributeJob, skip=("options",))
    p.add_argument("--option", action="append", metavar="METHOD.KEY=VALUE",
                   help="method option, repeatable (e.g. occlusion.patch=16, ig.steps=64, "
                        "lime.samples=512)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


@command("attribute", add)
def run(args: argparse.Namespace) -> int:
    from lucidax.attribute import AttributeJob, parse_options, run_attribute

    args.options = parse_options(args.option)
    run = run_attribute(dataclass_from_args(AttributeJob, args), progress=not args.quiet)
    print(run.table)
    print(f"open {run.files['html']}")
    return 0
