"""Write the API reference pages (``docs/api/*.md``) from each package's ``__all__``.

Called by ``conf.py`` when the build starts. Functions get ``autofunction``, classes
``autoclass`` with their documented public methods, and constants a ``py:data`` entry with
their value and the ``#:`` comment written above their definition (in whichever private
module defines them). A page is rewritten only when its text changes, so Sphinx's incremental
builds stay incremental.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

#: (package, one-line summary) in the order of the reference's table of contents
PACKAGES = (
    ("lucidax.models", "the model zoo, checkpoints without torch, named activations"),
    ("lucidax.visualize", "rendering: objectives, parameterizations, transforms, inversion"),
    ("lucidax.probes", "linear probes, TCAV, network dissection, interpretability scores"),
    ("lucidax.attribute", "attribution maps, sanity checks, faithfulness, adversarial probes"),
    ("lucidax.concepts", "concept discovery: NMF / SAE / PCA, importance, stability"),
    ("lucidax.gallery", "the gallery builder and its distributed scheduler"),
)


def _attr_docs(package: str) -> dict[str, str]:
    """``#:`` comments of module-level assignments in every module of ``package``."""
    from sphinx.pycode import ModuleAnalyzer

    found: dict[str, str] = {}
    pkg = importlib.import_module(package)
    names = [package] + [
        f"{package}.{m.name}" for m in pkgutil.iter_modules(pkg.__path__) if not m.ispkg
    ]
    for modname in names:
        try:
            docs = ModuleAnalyzer.for_module(modname).find_attr_docs()
        except Exception:  # noqa: BLE001 - a module without source: nothing to read
            continue
        for (scope, name), lines in docs.items():
            if scope == "" and name not in found:
                found[name] = " ".join(line.strip() for line in lines).strip()
    return found


def _value_repr(value, limit: int = 300) -> str:
    text = repr(value)
    if isinstance(value, dict) or type(value).__name__ == "mappingproxy":
        text = "{" + ", ".join(repr(k) for k in value) + "}  (keys)"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _attributes_section(cls) -> list[str]:
    """Names an ``Attributes:`` section of ``cls``'s docstring describes (napoleon makes each
    an attribute entry: a property or field of the same name must not get a second one)."""
    doc = inspect.getdoc(cls) or ""
    m = re.search(r"^Attributes:\n((?:[ \t]+.*\n?|\n)+)", doc, re.M)
    if not m:
        return []
    names = re.findall(r"^  (\w+)(?=[ :(,])", m.group(1), re.M)
    return [n for n in dict.fromkeys(names) if hasattr(cls, n)]


def constant_names(module) -> list[str]:
    """Names of ``module.__all__`` that are neither functions, classes nor modules."""
    out = []
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isclass(obj) or inspect.ismodule(obj) or inspect.isfunction(obj):
            continue
        if callable(obj) and getattr(obj, "__doc__", None) and hasattr(obj, "__wrapped__"):
            continue  # a wrapped function (jax.custom_vjp, functools.wraps)
        out.append(name)
    return out


def page_text(package: str, summary: str) -> str:
    module = importlib.import_module(package)
    constants = set(constant_names(module))
    attr_docs = _attr_docs(package) if constants else {}
    doc = inspect.getdoc(module) or ""
    lines = [f"# `{package}`", "", f"*{summary}*", ""]
    # the module docstring's first paragraph is reStructuredText (roles such as :func:)
    lines += ["```{eval-rst}", f".. module:: {package}", "   :no-index:", "",
              f".. currentmodule:: {package}", ""]
    if doc:
        lines += [doc.split("\n\n")[0]]
    lines += ["```", ""]
    groups = {"Classes": [], "Functions": [], "Constants": []}
    for name in sorted(module.__all__, key=str.lower):
        obj = getattr(module, name)
        if name in constants:
            groups["Constants"].append(name)
        elif inspect.isclass(obj):
            groups["Classes"].append(name)
        elif inspect.ismodule(obj):
            continue
        else:
            groups["Functions"].append(name)
    for title, names in groups.items():
        if not names:
            continue
        lines += [f"## {title}", ""]
        for name in names:
            target = f"{package}.{name}"
            obj = getattr(module, name)
            lines += ["```{eval-rst}"]
            if title == "Classes":
                lines += [f".. autoclass:: {target}", "   :members:"]
                described = _attributes_section(obj)
                if described:  # described there already: not a second time as a member
                    lines += [f"   :exclude-members: {', '.join(described)}"]
                lines += [""]
            elif title == "Functions":
                lines += [f".. autofunction:: {target}", ""]
            else:
                lines += [f".. py:data:: {name}", f"   :module: {package}",
                          f"   :value: {_value_repr(obj)}", ""]
                text = attr_docs.get(name, "")
                if text:
                    lines += [f"   {text}", ""]
            lines += ["```", ""]
    return "\n".join(lines)


def index_text() -> str:
    lines = ["# API reference", "",
             "Generated from the docstrings of each package's public surface (its `__all__`).",
             "Everything not listed here is private and may change without notice.", "",
             "| package | what it is for |", "|---|---|"]
    for package, summary in PACKAGES:
        short = package.split(".")[-1]
        lines.append(f"| [`{package}`]({short}.md) | {summary} |")
    lines += ["", "```{toctree}", ":hidden:", ""]
    lines += [package.split(".")[-1] for package, _ in PACKAGES]
    lines += ["```", ""]
    return "\n".join(lines)


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def write_api_pages(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    _write_if_changed(folder / "index.md", index_text())
    for package, summary in PACKAGES:
        _write_if_changed(folder / f"{package.split('.')[-1]}.md", page_text(package, summary))
