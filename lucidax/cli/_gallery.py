"""``lucidax gallery``."""

from __future__ import annotations

import argparse

from ._common import add_dataclass_flags, command, dataclass_from_args, few


def add(sub: argparse._SubParsersAction) -> None:
    from lucidax.gallery import PRESETS, GalleryConfig

    p = sub.add_parser(
        "gallery",
        help="render every unit of some layers into a browsable, resumable HTML gallery",
        description="Render every unit of the requested layers and build a static site "
        "(index.html) with per-unit grids, dataset examples and contact sheets. Re-running "
        "the same command resumes; --force re-renders. With no flags: EfficientNet-Lite0 "
        "(ImageNet weights), units 0-7 of blocks 4, 7, 10 and 14 and 16 class logits, with "
        "their top examples among crops of the built-in photos; --layers all renders the "
        "whole network, --model starter the small starter model.",
    )
    add_dataclass_flags(p, GalleryConfig, presets={
        "efficientnet_lite0/1/2": PRESETS["efficientnet_lite0"],
        "other models": PRESETS["starter"]})
    p.add_argument("--dry-run", action="store_true",
                   help="print the layers and units the command would render, the settings "
                        "and how many units are already done, then stop (renders nothing)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


@command("gallery", add)
def run(args: argparse.Namespace) -> int:
    from lucidax.gallery import GalleryConfig, build_gallery, plan_gallery

    config = dataclass_from_args(GalleryConfig, args)
    if args.dry_run:
        print(plan_gallery(config).summary())
        print("nothing rendered (--dry-run)")
        return 0
    report = build_gallery(config, progress=not args.quiet)
    print(
        f"{report.units_rendered} units rendered, {report.units_skipped} already done, "
        f"{len(report.failed_units)} failed, {len(report.silent_units)} silent, in "
        f"{report.elapsed_s:.0f} s"
    )
    if report.silent_units:  # never activate on the data, or renders stuck at their start
        print(f"silent units (greyed in the gallery): {few(report.silent_units)}")
    if report.rescue_needed:
        woke = report.rescue_succeeded
        print(f"rescue from a high-contrast start: needed by {len(report.rescue_needed)}, "
              f"woke {len(woke)}" + (f" ({few(woke)})" if woke else ""))
    if report.scores_note:  # the pages have no interpretability scores, and why
        print(report.scores_note)
    if report.index:
        print(f"open {report.index}")
    return 1 if report.failed_units else 0
