"""Shared pieces of the ``lucidax`` command: the command registry, flags built from a config
dataclass (help, choices, required-ness and name from field metadata) and small text
helpers."""

from __future__ import annotations

import argparse
import dataclasses
import re
from collections.abc import Callable, Sequence
from typing import Any

#: ``{name: (add_parser, run)}`` in the order commands are listed by ``lucidax --help``.
COMMANDS: dict[str, tuple[Callable[[argparse._SubParsersAction], None],
                          Callable[[argparse.Namespace], int]]] = {}


def command(name: str, add: Callable[[argparse._SubParsersAction], None]):
    """Register ``run(args) -> exit code`` as subcommand ``name`` whose flags ``add`` defines."""

    def deco(run):
        COMMANDS[name] = (add, run)
        return run

    return deco


def field_help(cls: type) -> dict[str, str]:
    """``{field: text}`` from a Google-style ``Attributes:`` docstring section."""
    out: dict[str, str] = {}
    current = None
    for line in (cls.__doc__ or "").splitlines():
        m = re.match(r"^\s{6}([a-z_, ]+):\s*(.*)$", line)
        if m:
            names = [n.strip() for n in m.group(1).split(",")]
            current = names
            for n in names:
                out[n] = m.group(2)
        elif current and line.startswith(" " * 8) and line.strip():
            for n in current:
                out[n] += " " + line.strip()
        else:
            current = None
    return out


def add_dataclass_flags(
    p: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = (),
    presets: dict[str, dict[str, Any]] | None = None,
) -> None:
    """One flag per field of ``cls``; help from the field's ``metadata["help"]`` (else its
    docstring entry); ``metadata["choices"]``, ``["required"]`` and ``["name"]`` (the flag's
    name when it is not ``--field-name``) as :func:`lucidax._fields.flag` sets them.
    ``presets``: ``{family: {field: value}}`` for fields whose None default means "from the
    model's preset" (their help lists the presets' values)."""
    helps = field_help(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.metadata.get("name", f.name).replace("_", "-")
        text = f.metadata.get("help") or helps.get(f.name, "").replace("``", "")
        text = text.replace("%", "%%")
        default = f.default
        if isinstance(default, bool):
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                           default=default, help=f"{text} (default: {'on' if default else 'off'})")
            continue
        if f.metadata.get("required"):
            p.add_argument(flag, dest=f.name, required=True, help=text,
                           choices=f.metadata.get("choices"))
            continue
        kind = type(default) if default is not None and not isinstance(default, tuple) else str
        if default is None:  # Optional field: take the type from the annotation's first type
            ann = str(f.type).strip()
            kind = int if ann.startswith("int") else float if ann.startswith("float") else str
        if default is None and presets and any(f.name in v for v in presets.values()):
            shown = "the model's preset: " + "; ".join(
                f"{family}: {values[f.name]}" for family, values in presets.items())
        elif default is None:
            shown = None
        else:
            shown = default
        suffix = f" (default: {shown})" if shown is not None and "(default:" not in text else ""
        p.add_argument(flag, dest=f.name, type=kind, default=default,
                       choices=f.metadata.get("choices"),
                       help=f"{text}{suffix}".replace("%%%%", "%%"))


def dataclass_from_args(cls: type, args: argparse.Namespace) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in vars(args).items() if k in names})


def print_run(run: Any) -> None:
    """A finished job's table, then one ``kind: path`` line per file it wrote."""
    print(run.table)
    for kind, path in run.files.items():
        print(f"{kind}: {path}")


def few(names: Sequence[str], n: int = 10) -> str:
    """``a, b, c`` (the first ``n``, then ``... (+k more)``)."""
    more = f", ... (+{len(names) - n} more)" if len(names) > n else ""
    return ", ".join(names[:n]) + more
