"""``lucidax invert``."""

from __future__ import annotations

import argparse
import dataclasses

from ._common import add_dataclass_flags, command, dataclass_from_args, print_run

# Flags that add_dataclass_flags does not make: a list (--images) and a renamed dest (--jitter,
# shown as JITTER).
_BY_HAND = ("images", "jitter_px")


def add(sub: argparse._SubParsersAction) -> None:
    from lucidax.visualize import InvertJob

    p = sub.add_parser("invert", help="reconstruct images from a layer's activations (feature "
                                      "inversion) or draw caricatures; writes a side-by-side grid")
    helps = {f.name: f.metadata["help"] for f in dataclasses.fields(InvertJob)}
    p.add_argument("--images", nargs="+", default="auto",
                   help=f"{helps['images']} (default: auto)")
    p.add_argument("--jitter", dest="jitter_px", metavar="JITTER", type=int, default=0,
                   help=f"{helps['jitter_px']} (default: 0)")
    add_dataclass_flags(p, InvertJob, skip=_BY_HAND)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


@command("invert", add)
def run(args: argparse.Namespace) -> int:
    from lucidax.visualize import InvertJob, run_invert

    print_run(run_invert(dataclass_from_args(InvertJob, args), progress=not args.quiet))
    return 0
