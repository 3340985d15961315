"""``lucidax invert``."""

from __future__ import annotations

import argparse
import dataclasses

from ._common import add_dataclass_flags, command, dataclass_from_args

# Flags that add_dataclass_flags does not make: a list (--images), a renamed dest (--jitter),
# a required flag (--layers) and fixed choices (--mode, --loss).
_BY_HAND = ("images", "jitter_px", "layers", "mode", "loss")


def add(sub: argparse._SubParsersAction) -> None:
    from lucidax.visualize import InvertJob

    p = sub.add_parser("invert", help="reconstruct images from a layer's activations (feature "
                                      "inversion) or draw caricatures; writes a side-by-side grid")
    helps = {f.name: f.metadata["help"] for f in dataclasses.fields(InvertJob)}
    p.add_argument("--layers", required=True, help=helps["layers"])
    p.add_argument("--images", nargs="+", default="auto",
                   help=f"{helps['images']} (default: auto)")
    p.add_argument("--mode", default="invert", choices=("invert", "caricature"),
                   help=f"{helps['mode']} (default: invert)")
    p.add_argument("--loss", default="l2", choices=("l2", "cosine"),
                   help=f"{helps['loss']} (default: l2)")
    p.add_argument("--jitter", dest="jitter_px", metavar="JITTER", type=int, default=0,
                   help=f"{helps['jitter_px']} (default: 0)")
    add_dataclass_flags(p, InvertJob, skip=_BY_HAND)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


@command("invert", add)
def run(args: argparse.Namespace) -> int:
    from lucidax.visualize import InvertJob, run_invert

    run = run_invert(dataclass_from_args(InvertJob, args), progress=not args.quiet)
    print(run.table)
    for kind, path in run.files.items():
        print(f"{kind}: {path}")
    return 0
