"""The built documentation site in a real browser (headless Chromium, as the gallery test).

Runs when ``LUCIDAX_DOCS_HTML`` names a built site (CI builds the docs after the suite, then
runs this file: ``LUCIDAX_DOCS_HTML=docs/_build/html python -m pytest tests/test_docs_site.py``);
skipped otherwise, and where playwright or a chromium binary is missing.

Every page loads without a console error and with every image decoded; every tutorial shows
at least one picture; every public name of every package has its entry in the API reference.
"""

from __future__ import annotations

import importlib
import inspect
import os
from pathlib import Path

import pytest
from test_gallery_browser import ARGS, CHROMIUM, _check_page

SITE = os.environ.get("LUCIDAX_DOCS_HTML", "")
pytestmark = pytest.mark.skipif(not SITE, reason="LUCIDAX_DOCS_HTML is not set (no built docs)")
sync_api = pytest.importorskip("playwright.sync_api")

PACKAGES = ("models", "visualize", "probes", "attribute", "concepts", "gallery")


@pytest.fixture(scope="module")
def site() -> Path:
    root = Path(SITE).resolve()
    if not (root / "index.html").is_file():
        pytest.fail(f"LUCIDAX_DOCS_HTML={SITE!r} has no index.html: build the docs first")
    return root


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("no chromium binary on PATH")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def _pages(site: Path) -> list[Path]:
    skip = ("_static", "_sources", "_modules", "_images", "jupyter_execute")
    return sorted(
        p for p in site.rglob("*.html")
        if not any(part in skip for part in p.relative_to(site).parts)
    )


def test_every_page_loads_without_errors_and_its_images_decode(site, browser):
    pages = _pages(site)
    assert len(pages) >= 20, [str(p) for p in pages]
    problems = []
    for path in pages:
        page = browser.new_page()
        widths, errors = _check_page(page, path.as_uri())
        broken = [src for src, w in widths if not w > 0]
        if errors or broken:
            problems.append((str(path.relative_to(site)), errors, broken))
        page.close()
    assert not problems, problems


def test_every_tutorial_shows_its_pictures(site, browser):
    tutorials = sorted((site / "tutorials").glob("[0-9][0-9]-*.html"))
    assert len(tutorials) >= 10, [t.name for t in tutorials]
    for path in tutorials:
        page = browser.new_page()
        widths, errors = _check_page(page, path.as_uri())
        content = [src for src, w in widths if w > 0 and "_static" not in (src or "")]
        assert content, f"{path.name}: no picture in the executed tutorial"
        assert not errors, (path.name, errors)
        page.close()


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_has_a_reference_entry(site, browser, package):
    module = importlib.import_module(f"lucidax.{package}")
    page = browser.new_page()
    page.goto((site / "api" / f"{package}.html").as_uri())
    ids = set(page.evaluate("Array.from(document.querySelectorAll('dt[id]')).map(e => e.id)"))
    page.close()
    names = [n for n in module.__all__ if not inspect.ismodule(getattr(module, n))]
    missing = [n for n in names if f"lucidax.{package}.{n}" not in ids]
    assert not missing, f"lucidax.{package}: no reference entry for {missing}"
