"""``lucidax probe``."""

from __future__ import annotations

import argparse

from ._common import add_dataclass_flags, command, dataclass_from_args


def add(sub: argparse._SubParsersAction) -> None:
    from lucidax.probes import ProbeJob

    p = sub.add_parser("probe", help="linear probes of every layer for a label family")
    add_dataclass_flags(p, ProbeJob, skip=("lambdas",))
    p.add_argument("--quiet", action="store_true", help="no progress bar")


@command("probe", add)
def run(args: argparse.Namespace) -> int:
    from lucidax.probes import ProbeJob, run_probe

    run = run_probe(dataclass_from_args(ProbeJob, args), progress=not args.quiet)
    print(run.table)
    for kind, path in run.files.items():
        print(f"{kind}: {path}")
    return 0
