"""The ``lucidax`` command: one module per subcommand (``_<name>.py``: its flags and a thin
function calling one library function), shared pieces in ``_common``."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings
from collections.abc import Sequence

from .. import _compile_cache

# Subcommands register themselves on import, in the order of `lucidax --help`.
from . import (  # noqa: F401,I001
    _attribute,
    _concepts,
    _dissect,
    _gallery,
    _interpretability,
    _invert,
    _models,
    _probe,
    _render,
    _tcav,
)
from ._common import COMMANDS

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lucidax",
        description="Feature visualization, inversion, probing, concept tests, dissection, "
        "attribution and galleries for CNNs in JAX.",
    )
    cache = parser.add_mutually_exclusive_group()
    cache.add_argument(
        "--compile-cache", metavar="DIR", default=None,
        help="keep compiled programs in DIR so later runs skip compiling them again "
        "(default: $LUCIDAX_COMPILE_CACHE if set, else "
        f"{_compile_cache.default_compile_cache_dir()})")
    cache.add_argument(
        "--no-compile-cache", dest="compile_cache", action="store_false", default=None,
        help="compile everything afresh, without the on-disk compilation cache "
        "(LUCIDAX_COMPILE_CACHE=0 does the same) (default: cache on)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add, _ in COMMANDS.values():
        add(sub)
    for command in sub.choices.values():
        _show_defaults(command)
    return parser


def _show_defaults(p: argparse.ArgumentParser) -> None:
    """Every flag's help ends with its default, unless it says it already."""
    for action in p._actions:
        default = action.default
        if (not action.help or action.help == argparse.SUPPRESS or "(default:" in action.help
                or default in (None, False, argparse.SUPPRESS) or not action.option_strings):
            continue
        shown = "on" if default is True else ",".join(default) if isinstance(
            default, (list, tuple)) else default
        action.help = f"{action.help} (default: {shown})"


def _user_errors() -> tuple[type[Exception], ...]:
    from lucidax.gallery import ManifestMismatchError
    from lucidax.models import MissingWeightsError

    return ManifestMismatchError, MissingWeightsError


@contextlib.contextmanager
def _one_line_warnings(command: str):
    """Skipped-file warnings (:class:`lucidax._files.SkippedFilesWarning`, every time) and the
    random-weights warning print as one line ``lucidax <command>: warning: ...``; other
    warnings as usual."""
    from lucidax._files import SkippedFilesWarning
    from lucidax.models import RandomWeightsWarning

    one_line = (SkippedFilesWarning, RandomWeightsWarning)
    with warnings.catch_warnings():
        warnings.simplefilter("always", SkippedFilesWarning)
        shown = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, one_line):
                print(f"lucidax {command}: warning: {message}", file=sys.stderr)
            else:
                shown(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    _compile_cache.configure_compile_cache(args.compile_cache)  # before anything compiles
    try:
        with _one_line_warnings(args.command):
            return COMMANDS[args.command][1](args) or 0
    except (ValueError, FileNotFoundError, TimeoutError, *_user_errors()) as e:
        # User errors: one clear line, no traceback.
        print(f"lucidax {args.command}: error: {e}", file=sys.stderr)
        return 2
    except (PermissionError, IsADirectoryError, NotADirectoryError) as e:
        if e.filename is None:  # not about a path: a bug, keep the traceback
            raise
        # A user's path that cannot be read or written: one line naming it.
        print(f"lucidax {args.command}: error: {e.strerror or e}: {e.filename!r}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - no flush error at exit
        return 0


if __name__ == "__main__":
    sys.exit(main())
