"""The README and the user guide (docs/guide/*.md) run as written.

Every fenced ``python`` block of these pages runs in a fresh namespace, and every command of
every fenced ``bash`` block runs through ``lucidax.cli.main``, each in its own empty folder, with
``LUCIDAX_MAX_STEPS=2`` (every render, inversion and gallery stops after 2 optimization
steps: the commands and code are the README's, only shorter). Setup lines (venv, pip) and the
test command itself are not run; commands too long for the suite even at 2 steps are listed in
``DRY_RUN`` and run with ``--dry-run`` (which still loads the model and resolves every layer
and unit). Commands quoted inline (`` `lucidax ...` ``) are parsed by the real argument parser.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# the README and the user guide's pages (the docs' tutorials are executed by the docs build)
PAGES = [README, *sorted((ROOT / "docs" / "guide").glob("*.md"))]

# Too long for the test suite even at 2 steps (a gallery's example search over 1000 photo
# crops, thousands of units; a concept run with its stability table): run with --dry-run
# instead.
DRY_RUN = {
    "lucidax gallery",
    "lucidax gallery --layers all --out lite0-all --dry-run",
    "lucidax gallery --layers blocks.12 --units 0-63 --variants 2 --out lite0-b12",
    "lucidax gallery --units 0-3;logits=1,207,285,947 --out lite0-mix",
    "lucidax gallery --model starter --out starter-all",
    # 400 lite0 crops, Sobol on 8 images, 9 stability fits: minutes even at 2 steps
    "lucidax concepts --model efficientnet_lite0 --layers head --data builtin:photos:chelsea "
    "--n 400 --k 12 --class 285 --stability 3 --out runs/concepts-cat",
}
# Lines of the quick start that set up the environment or run this test suite.
SETUP = ("python3 -m venv", ". .venv/bin/activate", "pip install", "python -m pytest",
         "bash docs/build.sh")


def _blocks(text: str, page: str = "README") -> list[tuple[str, str, str]]:
    """``(language, code, heading)`` of every fenced block (heading prefixed by the page)."""
    out, heading = [], page
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#") and not line.startswith("#!"):
            heading = f"{page} {line.lstrip('#').strip()}"
        m = re.match(r"^```([\w{}-]*)\s*$", line)
        if m:
            j = i + 1
            while not lines[j].startswith("```"):
                j += 1
            out.append((m.group(1), "\n".join(lines[i + 1:j]) + "\n", heading))
            i = j
        i += 1
    return out


def _commands(code: str) -> list[list[str]]:
    """The commands of a bash block: continuation lines joined, comments dropped, split at &&."""
    out = []
    for line in code.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        cmd: list[str] = []
        for w in [*words, "&&"]:
            if w == "&&":
                if cmd:
                    out.append(cmd)
                cmd = []
            else:
                cmd.append(w)
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40]


_TEXT = "\n".join(page.read_text() for page in PAGES)
_BLOCKS = [b for page in PAGES for b in _blocks(page.read_text(), page.stem)]
PYTHON = [(code, h) for lang, code, h in _BLOCKS if lang == "python"]
COMMANDS = [(cmd, h) for lang, code, h in _BLOCKS if lang == "bash" for cmd in _commands(code)]
RUN = list({" ".join(c): (c, h) for c, h in COMMANDS  # each distinct command once
             if not " ".join(c).startswith(SETUP)}.values())


@pytest.fixture
def readme_env(tmp_path, monkeypatch):
    """An empty working folder and the 2-step cap, in this process: the examples share the
    worker's imports and compiled programs (a fresh interpreter per example costs ~2x)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LUCIDAX_MAX_STEPS", "2")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    return tmp_path


def test_readme_has_runnable_blocks():
    assert len(PYTHON) >= 6 and len(RUN) >= 10
    # every line that is skipped is a setup line; everything else is a lucidax command
    for cmd, _ in COMMANDS:
        joined = " ".join(cmd)
        assert joined.startswith(SETUP) or cmd[0] == "lucidax", joined
    # the dry-run list names commands the README still has (it cannot rot)
    assert DRY_RUN <= {" ".join(c) for c, _ in RUN}


@pytest.mark.parametrize(
    "code", [c for c, _ in PYTHON], ids=[f"{i}-{_slug(h)}" for i, (_, h) in enumerate(PYTHON)])
def test_python_block_runs(code, readme_env):
    import matplotlib.pyplot as plt

    try:
        exec(compile(code, "README.md", "exec"), {"__name__": "__readme__"})
    finally:
        plt.close("all")


@pytest.mark.parametrize(
    "cmd", [c for c, _ in RUN], ids=[f"{i}-{_slug(' '.join(c[1:3]))}" for i, (c, _) in
                                     enumerate(RUN)])
def test_shell_command_runs(cmd, readme_env, capsys):
    from lucidax.cli import main

    joined = " ".join(cmd)
    argv = list(cmd[1:])
    if joined in DRY_RUN and "--dry-run" not in cmd:
        argv.append("--dry-run")
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 0, f"README command failed (exit {rc}): {joined}\n{out[-3000:]}\n{err[-3000:]}"
    assert "Traceback" not in err


def test_inline_commands_parse():
    from lucidax.cli import build_parser

    parser = build_parser()
    prose = re.sub(r"^```.*?^```", "", _TEXT, flags=re.S | re.M).replace("\n", " ")
    inline = re.findall(r"`(lucidax [^`]+)`", prose)
    assert len(inline) >= 5
    for text in inline:
        argv = shlex.split(text)[1:]
        if len(argv) < 2 or argv[0] not in parser._subparsers._group_actions[0].choices:
            continue  # a command's name in prose (`lucidax tcav tests whether ...`)
        try:
            parser.parse_args(argv)
        except SystemExit as e:  # argparse's way to refuse (exit 0: --help, which is fine)
            if e.code == 0:
                continue
            pytest.fail(f"README inline command does not parse: {text!r} (exit {e.code})")
