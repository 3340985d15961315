"""The API reference: every public name (each package's ``__all__``) is documented with its
arguments and an example, and every example runs.

The reference pages (docs/api/*.md) are generated from these docstrings by docs/api_pages.py;
this test is what keeps them complete without building the docs. Examples run as doctests
(``ELLIPSIS`` and ``NORMALIZE_WHITESPACE``) with ``LUCIDAX_MAX_STEPS=2``, so an example may
ask for a realistic number of steps and still take a moment; each runs in an empty folder.
"""

from __future__ import annotations

import ast
import doctest
import importlib
import inspect
import re
from pathlib import Path

import pytest

PACKAGES = (
    "lucidax.models",
    "lucidax.visualize",
    "lucidax.probes",
    "lucidax.attribute",
    "lucidax.concepts",
    "lucidax.gallery",
)
ROOT = Path(__file__).resolve().parent.parent
# Names whose reference entry is not complete yet (``package.name`` per line): their check is
# an expected failure, strict, so documenting one fails the suite until it leaves the list.
PENDING_FILE = Path(__file__).resolve().parent / "api_docs_pending.txt"
PENDING = {
    line.strip() for line in (PENDING_FILE.read_text().splitlines() if PENDING_FILE.exists()
                              else []) if line.strip() and not line.startswith("#")
}


def _is_documented_callable(obj) -> bool:
    if inspect.isclass(obj) or inspect.isfunction(obj):
        return True
    return callable(obj) and hasattr(obj, "__wrapped__")  # jax.custom_vjp, functools.wraps


def _public():
    out = []
    for package in PACKAGES:
        module = importlib.import_module(package)
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.ismodule(obj):
                continue
            out.append((package, name, obj))
    return out


PUBLIC = _public()
CALLABLES = [(p, n, o) for p, n, o in PUBLIC if _is_documented_callable(o)]
CONSTANTS = [(p, n, o) for p, n, o in PUBLIC if not _is_documented_callable(o)]


def _ids(items):
    return [f"{p.split('.')[-1]}.{n}" for p, n, _ in items]


def _parameters(obj) -> list[str]:
    target = obj
    if inspect.isclass(obj):
        if not hasattr(obj, "__dataclass_fields__") and "__init__" not in vars(obj):
            return []
        target = obj
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return []
    return [
        name
        for name, p in sig.parameters.items()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and name not in ("self", "cls")
    ]


def _pending(items):
    """``items`` with a strict expected failure on the names of the pending list."""
    mark = pytest.mark.xfail(strict=True, reason="listed in tests/api_docs_pending.txt")
    return [pytest.param(p, n, o, marks=mark) if f"{p.split('.')[-1]}.{n}" in PENDING
            else (p, n, o) for p, n, o in items]


def test_pending_list_names_public_names():
    known = {f"{p.split('.')[-1]}.{n}" for p, n, _ in PUBLIC}
    assert PENDING <= known, sorted(PENDING - known)


@pytest.mark.parametrize(("package", "name", "obj"), _pending(CALLABLES), ids=_ids(CALLABLES))
def test_public_callable_has_arguments_and_an_example(package, name, obj):
    doc = inspect.getdoc(obj) or ""
    assert doc.strip(), f"{package}.{name} has no docstring"
    assert re.search(r"^Examples?:\s*$", doc, re.M), f"{package}.{name}: no 'Example:' section"
    assert ">>>" in doc, f"{package}.{name}: the Example section has no >>> lines"
    missing = [p for p in _parameters(obj) if not re.search(rf"\b{re.escape(p)}\b", doc)]
    assert not missing, f"{package}.{name}: arguments not described in the docstring: {missing}"


def _attr_comments() -> set[str]:
    """Names assigned at module level in lucidax/ with a ``#:`` comment right above them."""
    names: set[str] = set()
    for path in (ROOT / "lucidax").rglob("*.py"):
        lines = path.read_text().splitlines()
        tree = ast.parse("\n".join(lines))
        for node in tree.body:
            targets = []
            if isinstance(node, ast.Assign):
                targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                targets = [node.target.id]
            above = lines[node.lineno - 2].strip() if node.lineno >= 2 else ""
            if targets and above.startswith("#:"):
                names.update(targets)
    return names


@pytest.mark.parametrize(("package", "name", "obj"), _pending(CONSTANTS), ids=_ids(CONSTANTS))
def test_public_constant_has_a_doc_comment(package, name, obj):
    assert name in _attr_comments(), (
        f"{package}.{name}: write a '#:' comment on the line(s) right above its definition "
        "(Sphinx shows it in the reference)"
    )


@pytest.mark.parametrize(("package", "name", "obj"), CALLABLES, ids=_ids(CALLABLES))
def test_public_example_runs(package, name, obj, tmp_path, monkeypatch):
    monkeypatch.setenv("LUCIDAX_MAX_STEPS", "2")
    monkeypatch.chdir(tmp_path)
    finder = doctest.DocTestFinder(recurse=False, exclude_empty=True)
    tests = finder.find(obj, f"{package}.{name}", globs={})
    tests = [t for t in tests if t.examples]
    if not tests:
        pytest.skip("no example (the test above fails for it, or it is pending)")
    runner = doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    report: list[str] = []
    for test in tests:
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)
