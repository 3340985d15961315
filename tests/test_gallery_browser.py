"""The generated gallery site in a real browser (headless Chromium through Playwright).

Skipped when the ``playwright`` package or a ``chromium`` binary is missing.
"""

from __future__ import annotations

import json
import shutil

import pytest
from test_gallery_support import XSS, fake_channel, fake_render, tiny_dataset, tiny_model

from lucidax.gallery import GalleryConfig
from lucidax.gallery._build import _build

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _check_page(page, url):
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda d: (errors.append(f"dialog: {d.message}"), d.dismiss()))
    page.goto(url)
    page.wait_for_load_state("load")
    widths = page.evaluate(
        "Array.from(document.images).map(i => [i.getAttribute('src'), i.naturalWidth])"
    )
    return widths, errors


def test_site_in_chromium(tmp_path):
    out = tmp_path / "site"
    (out / "tcav").mkdir(parents=True)
    (out / "tcav" / "scores.json").write_text(json.dumps({"concept": XSS, "score": 0.7}))
    _build(
        GalleryConfig(out=str(out), steps=5, size=32, variants=2, batch_size=4, top_k=4),
        progress=False,
        model=tiny_model(),
        dataset=tiny_dataset(),
        render_fn=fake_render,
        channel_fn=fake_channel,
    )
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            for rel, n_min in (("index.html", 3), ("logits/2.html", 2), ("c2/index.html", 1)):
                page = browser.new_page()
                widths, errors = _check_page(page, (out / rel).as_uri())
                assert len(widths) >= n_min, (rel, widths)
                broken = [src for src, w in widths if not w > 0]
                assert not broken, (rel, broken)
                assert not errors, (rel, errors)
                if rel == "logits/2.html":  # the XSS-looking label shows as text
                    assert XSS in page.inner_text("h1")
                page.close()
            page = browser.new_page()
            _, errors = _check_page(page, (out / "tcav.html").as_uri())
            assert XSS in page.inner_text("body") and not errors
        finally:
            browser.close()
