"""Sphinx configuration of the lucidax documentation.

Build (from the repository root): ``bash docs/build.sh`` (installs the ``docs`` extra and runs
``sphinx-build -W --keep-going -n``: every warning, broken cross-reference included, fails the
build). ``LUCIDAX_DOCS_FAST=1`` runs the tutorials at reduced steps and sizes (CI).

The API reference is generated at build time from each package's ``__all__`` (the curated
public surface), so a new public name gets its page without anyone remembering to add it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from api_pages import write_api_pages  # noqa: E402

import lucidax  # noqa: E402

project = "lucidax"
author = "the lucidax authors"
copyright = "2026, the lucidax authors"
release = lucidax.__version__
version = release

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]

FAST = os.environ.get("LUCIDAX_DOCS_FAST", "0") == "1"
if FAST:
    # the notebooks' kernels inherit the environment: every optimization runs at most this
    # many steps (lucidax.visualize.max_steps)
    os.environ.setdefault("LUCIDAX_MAX_STEPS", "4")

# the notebooks' kernels use lucidax's persistent JAX compilation cache, as the CLI does: a
# rebuild (and a CI run after another) does not compile the tutorials' programs again
_CACHE = os.environ.get("LUCIDAX_COMPILE_CACHE", "1").lower()
if _CACHE not in ("", "0", "off", "none", "false", "no"):
    from lucidax._compile_cache import default_compile_cache_dir

    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(default_compile_cache_dir()))

exclude_patterns = ["_build", "**.ipynb_checkpoints", "api_pages.py", "build.sh", "*.png"]
source_suffix = {".md": "myst-nb", ".rst": "restructuredtext"}
root_doc = "index"

myst_enable_extensions = ["colon_fence", "dollarmath", "deflist"]
myst_heading_anchors = 3

# tutorials: executed at every build, in the docs folder (they write to a temporary folder)
nb_execution_mode = os.environ.get("LUCIDAX_DOCS_EXECUTE", "force")
nb_execution_timeout = int(os.environ.get("LUCIDAX_DOCS_TIMEOUT", "1800"))
nb_execution_raise_on_error = True
nb_execution_in_temp = True
nb_execution_show_tb = True
nb_merge_streams = True

autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_member_order = "bysource"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_custom_sections = [("Raises (before compiling anything)", "Raises"), "Shapes"]

nitpicky = True
# names of other libraries that docstrings and annotations mention (no inventory offline)
nitpick_ignore_regex = [
    (r"py:.*", r"(jax|jnp|np|numpy|optax|flax|nn|jaxlib|fsspec|PIL|matplotlib|scipy|torch)(\..*)?"),
    (r"py:.*", r"(Array|ArrayLike|PRNGKey|PyTree|Path|Callable|Iterable|Iterator)"),
    (r"py:.*", r"(Sequence|Mapping)"),
    (r"py:.*", r"(typing|collections|pathlib|os|concurrent|dataclasses|enum|types)\..*"),
    (r"py:.*", r"(int|float|str|bool|bytes|dict|list|tuple|object|None|type|slice|Any)"),
    (r"py:.*", r"(optional|callable|array|array-like|pytree|default .*)"),
    (r"py:.*", r"_pickle\..*"),
    # type aliases of lucidax's annotations (documented in prose where they are used)
    (r"py:class", r"(ApplyFn|Params|Acts|ScoreFn)"),
    # private helper types in return annotations (``_Data``, ``_Images``): plain text
    (r"py:class", r"(.*\.)?_[A-Za-z]\w*"),
]

html_theme = "furo"
html_title = f"lucidax {release}"
html_static_path = []
html_show_sourcelink = False

suppress_warnings = ["myst.header"]


def _generate(app):
    write_api_pages(Path(app.srcdir) / "api")


def setup(app):
    app.connect("builder-inited", _generate)
    return {"parallel_read_safe": True}

