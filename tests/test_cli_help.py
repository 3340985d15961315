"""`lucidax <command> --help` is complete: every flag explained, defaults shown, CLI words."""

from __future__ import annotations

import argparse

import pytest

from lucidax.cli import build_parser

PARSER = build_parser()
COMMANDS = dict(PARSER._subparsers._group_actions[0].choices)


def _flags(p: argparse.ArgumentParser):
    return [a for a in p._actions if a.option_strings and a.dest != "help"]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_flag_has_help_with_its_default(name):
    for action in _flags(COMMANDS[name]):
        text = action.help or ""
        flag = action.option_strings[0]
        assert len(text) > 10, f"{name} {flag}: no help"
        # Python vocabulary must not leak into the CLI's help
        for word in ("None", "tuple", "True", "False", "``"):
            assert word not in text, f"{name} {flag}: {word!r} in help: {text}"
        if action.default not in (None, False, argparse.SUPPRESS):
            assert "(default:" in text, f"{name} {flag}: default {action.default!r} not shown"
        # a sentence cut by the docstring scraper ends in a dangling word
        assert not text.rstrip().endswith((" a", " the", " have", " whole", ",")), text


def test_help_texts_render(capsys):
    for name in COMMANDS:
        with pytest.raises(SystemExit) as e:
            PARSER.parse_args([name, "--help"])
        assert e.value.code == 0
    assert "--dry-run" in capsys.readouterr().out
