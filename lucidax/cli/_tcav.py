"""``lucidax tcav``."""

from __future__ import annotations

import argparse
import dataclasses

from ._common import add_dataclass_flags, command, dataclass_from_args

#: flags whose values argparse checks against a list
_CHOICES = {"reduce": ("mean", "flatten"), "correction": ("holm", "bh", "bonferroni", "none"),
            "split": ("train", "test")}


def add(sub: argparse._SubParsersAction) -> None:
    from lucidax.probes import TCAVJob

    p = sub.add_parser(
        "tcav", help="TCAV: does a concept push a class logit up? (CAVs + significance test)")
    fields = {f.name: f for f in dataclasses.fields(TCAVJob)}
    add_dataclass_flags(p, TCAVJob, skip=("concepts", "target_class", "equal_var", "lam",
                                          *_CHOICES))
    p.add_argument("--concepts", required=True, help=fields["concepts"].metadata["help"])
    p.add_argument("--class", dest="target_class", required=True,
                   help=fields["target_class"].metadata["help"])
    for name, choices in _CHOICES.items():
        f = fields[name]
        p.add_argument("--" + name, default=f.default, choices=choices,
                       help=f"{f.metadata['help']} (default: {f.default})")
    p.add_argument("--student", dest="equal_var", action="store_true",
                   help=fields["equal_var"].metadata["help"])
    p.add_argument("--quiet", action="store_true", help="no progress bars")


@command("tcav", add)
def run(args: argparse.Namespace) -> int:
    from lucidax.probes import TCAVJob, run_tcav

    run = run_tcav(dataclass_from_args(TCAVJob, args), progress=not args.quiet)
    print(run.table)
    for kind, path in run.files.items():
        print(f"{kind}: {path}")
    return 0
