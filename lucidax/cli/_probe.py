"""``lucidax probe``."""

from __future__ import annotations

import argparse

from ._common import add_dataclass_flags, command, dataclass_from_args, print_run


def add(sub: argparse._SubParsersAction) -> None:
    from lucidax.probes import ProbeJob

    p = sub.add_parser("probe", help="linear probes of every layer for a label family")
    add_dataclass_flags(p, ProbeJob, skip=("lambdas",))
    p.add_argument("--quiet", action="store_true", help="no progress bar")


@command("probe", add)
def run(args: argparse.Namespace) -> int:
    from lucidax.probes import ProbeJob, run_probe

    print_run(run_probe(dataclass_from_args(ProbeJob, args), progress=not args.quiet))
    return 0
