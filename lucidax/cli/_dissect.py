"""``lucidax dissect``."""

from __future__ import annotations

import argparse

from ._common import add_dataclass_flags, command, dataclass_from_args, print_run


def add(sub: argparse._SubParsersAction) -> None:
    from lucidax.probes import DissectJob

    p = sub.add_parser(
        "dissect", help="network dissection: which units detect which concepts (IoU of masks)",
        description="For every unit of the conv layers: threshold its activation map at the "
        "top quantile over the dataset, upsample it to the mask size and compute its "
        "dataset-level IoU with every concept mask; a unit whose best IoU reaches "
        "--iou-threshold is a detector of that concept (NetDissect, Bau et al. 2017).",
    )
    add_dataclass_flags(p, DissectJob)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


@command("dissect", add)
def run(args: argparse.Namespace) -> int:
    from lucidax.probes import DissectJob, run_dissect

    print_run(run_dissect(dataclass_from_args(DissectJob, args), progress=not args.quiet))
    return 0
