"""``lucidax concepts``."""

from __future__ import annotations

import argparse

from ._common import add_dataclass_flags, command, dataclass_from_args, print_run


def add(sub: argparse._SubParsersAction) -> None:
    from lucidax.concepts import ConceptsJob

    p = sub.add_parser(
        "concepts", help="concept discovery: factor a layer's activations (NMF, TopK SAE, "
                         "PCA) and show every concept",
        description="Factor the activations of every spatial position of the images at each "
        "layer into --k concepts (CRAFT's NMF, a TopK sparse autoencoder or PCA); for each "
        "concept write its top image crops, heat-maps and a render of its direction, with "
        "--class its importance for that class (Sobol total-order indices and gradient x "
        "concept), with --stability the matched similarity of the concepts over seeds. One "
        "page per layer (and per class) under --out; resumes where a killed run stopped.",
    )
    add_dataclass_flags(p, ConceptsJob)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


@command("concepts", add)
def run(args: argparse.Namespace) -> int:
    from lucidax.concepts import ConceptsJob, run_concepts

    print_run(run_concepts(dataclass_from_args(ConceptsJob, args), progress=not args.quiet))
    return 0
