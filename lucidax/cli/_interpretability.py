"""``lucidax interpretability``."""

from __future__ import annotations

import argparse

from ._common import add_dataclass_flags, command, dataclass_from_args, print_run


def add(sub: argparse._SubParsersAction) -> None:
    from lucidax.gallery import InterpretabilityJob

    p = sub.add_parser(
        "interpretability", help="per-unit interpretability scores (a simulated observer, "
        "natural and synthetic references)",
        description="For every unit: sample tasks from its activations over the data (k max "
        "and k min references, one query from the 0.95-0.98 and one from the 0.02-0.05 "
        "quantiles), let an observer pick the query more similar to the max references (mean "
        "cosine of another network's features), and report the fraction correct with a "
        "Wilson 95% interval (the Machine Interpretability Score's task, Zimmermann et al. "
        "2024; its DreamSim observer is approximated, so the numbers are not MIS values). "
        "--synthetic: the same with the unit's renders as max references; --randomize: the "
        "randomized-weights control.",
    )
    add_dataclass_flags(p, InterpretabilityJob)
    p.add_argument("--quiet", action="store_true", help="no progress output")


@command("interpretability", add)
def run(args: argparse.Namespace) -> int:
    from lucidax.gallery import InterpretabilityJob, run_interpretability

    print_run(run_interpretability(dataclass_from_args(InterpretabilityJob, args),
                                   progress=not args.quiet))
    return 0
