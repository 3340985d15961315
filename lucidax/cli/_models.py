"""``lucidax models``."""

from __future__ import annotations

import argparse
import json
import os
import re
from typing import Any

from lucidax._fields import WEIGHTS_HELP

from ._common import command


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list models, or the layers of one model")
    p.add_argument("name", nargs="?", help="model to describe (omit to list the zoo)")
    p.add_argument("--weights", help=WEIGHTS_HELP)
    p.add_argument("--pre-relu", action="store_true", help="also list *_pre_relu layers")
    p.add_argument("--shapes", action="store_true", help="compute activation shapes")
    p.add_argument("--side", type=int, help="input side for --shapes (default: model's)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


@command("models", add)
def run(args: argparse.Namespace) -> int:
    from lucidax import models

    if args.name is None:
        if args.json:
            print(json.dumps([_model_row(name) for name in models.list_models()], indent=2))
            return 0
        for name in models.list_models():
            print(name)
        return 0
    model = models.load(args.name, weights=args.weights)
    side = args.side or model.input_spec.side
    rows = []
    for name in model.layer_names:
        info = model.layers[name]
        if info.pre_relu and not args.pre_relu:
            continue
        shape = model.layer_shape(name, side) if args.shapes else None
        rows.append({"layer": name, "kind": info.kind, "channels": info.channels, "shape": shape})
    if args.json:
        print(json.dumps({"model": repr(model), "input_spec": vars(model.input_spec),
                          "layers": rows}, indent=2, default=list))
    else:
        print(repr(model))
        print(f"input: {model.input_spec}")
        for r in rows:
            shape = f"  {r['shape']}" if r["shape"] else ""
            print(f"  {r['layer']:<40} {r['kind']:<6} {r['channels']:>6}{shape}")
    return 0


def _model_row(name: str) -> dict[str, Any]:
    """``lucidax models --json``: one zoo entry, without building the model or reading its
    weights: name, description, input side (as the description states it, else None), where
    its default weights come from (shipped, package or random) and whether they are there."""
    from lucidax.models import MissingWeightsError, get_entry

    entry = get_entry(name)
    side = re.search(r"\b(\d+) px\b", entry.description)  # the descriptions name it
    row = {"name": name, "description": entry.description,
           "side": int(side.group(1)) if side else None}
    w = entry.default_weights
    if w is None:
        return {**row, "weights": "random", "weights_available": False}
    try:
        available = os.path.isfile(w() if callable(w) else w)
    except MissingWeightsError:
        available = False
    return {**row, "weights": "package" if callable(w) else "shipped",
            "weights_available": available}
