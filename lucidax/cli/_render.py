"""``lucidax render``."""

from __future__ import annotations

import argparse
import sys

from ._common import add_dataclass_flags, command, dataclass_from_args, few


def add(sub: argparse._SubParsersAction) -> None:
    from lucidax.visualize import RenderJob

    p = sub.add_parser("render", help="render units of one layer to PNGs (activation maximization)")
    add_dataclass_flags(p, RenderJob)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


@command("render", add)
def run(args: argparse.Namespace) -> int:
    from lucidax.visualize import RenderJob, render_job

    summary = render_job(dataclass_from_args(RenderJob, args), progress=not args.quiet)
    bad = [r["unit"] for r in summary["units"] if not r["finite"]]
    silent = [str(r["unit"]) for r in summary["units"] if r.get("silent")]
    note = f" ({len(silent)} silent: {few(silent)})" if silent else ""
    print(f"rendered {len(summary['units'])} units of {args.layer}{note} -> {summary['grid']}")
    if bad:
        print(f"non-finite (not written): units {bad}", file=sys.stderr)
        return 1
    return 0
