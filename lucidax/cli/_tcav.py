"""``lucidax tcav``."""

from __future__ import annotations

import argparse
import dataclasses

from ._common import add_dataclass_flags, command, dataclass_from_args, print_run


def add(sub: argparse._SubParsersAction) -> None:
    from lucidax.probes import TCAVJob

    p = sub.add_parser(
        "tcav", help="TCAV: does a concept push a class logit up? (CAVs + significance test)")
    add_dataclass_flags(p, TCAVJob, skip=("equal_var", "lam"))
    # --student sets equal_var (an on-switch named after the test, not --equal-var/--no-...)
    f = next(f for f in dataclasses.fields(TCAVJob) if f.name == "equal_var")
    p.add_argument("--student", dest="equal_var", action="store_true", help=f.metadata["help"])
    p.add_argument("--quiet", action="store_true", help="no progress bars")


@command("tcav", add)
def run(args: argparse.Namespace) -> int:
    from lucidax.probes import TCAVJob, run_tcav

    print_run(run_tcav(dataclass_from_args(TCAVJob, args), progress=not args.quiet))
    return 0
