"""The ``lucidax`` command. Each subcommand parses its flags and calls one library function."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

__all__ = ["main"]

_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def _command(name: str):
    def deco(fn):
        _COMMANDS[name] = fn
        return fn

    return deco


# --- models ------------------------------------------------------------------------------------
@_command("models")
def _cmd_models(args: argparse.Namespace) -> int:
    from lucidax import models

    if args.name is None:
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


def _add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list models, or the layers of one model")
    p.add_argument("name", nargs="?", help="model to describe (omit to list the zoo)")
    p.add_argument("--weights", help="checkpoint (.pth/.pt/.safetensors/.npz)")
    p.add_argument("--pre-relu", action="store_true", help="also list *_pre_relu layers")
    p.add_argument("--shapes", action="store_true", help="compute activation shapes")
    p.add_argument("--side", type=int, help="input side for --shapes (default: model's)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


_PARSERS: list[Callable[[argparse._SubParsersAction], None]] = [_add_models]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lucidax",
        description="Feature visualization, probing and galleries for CNNs in JAX.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _PARSERS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return _COMMANDS[args.command](args) or 0
    except (ValueError, FileNotFoundError) as e:
        # User errors: one clear line, no traceback.
        print(f"lucidax {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
