"""Interpretability scores in the gallery: on the unit and layer pages (a sortable table, a
distribution plot), resumed without recomputing, skipped with one line when the observer is
not installed or turned off. A tiny model, a tiny observer (another random tiny model), fake
renders: fast."""

from __future__ import annotations

import json
import re

import imageio.v3 as iio
import numpy as np
import pytest
from test_gallery_support import fake_channel, fake_render, tiny_dataset, tiny_model

from lucidax.gallery import GalleryConfig
from lucidax.gallery._build import _build
from lucidax.gallery._unit_scores import MIN_IMAGES, SCORES_DIR


def _config(out, **kw):
    return GalleryConfig(out=str(out), steps=5, size=32, variants=2, batch_size=4, top_k=4,
                         layers="c1,c2", **kw)


def _run(cfg, **kw):
    kw.setdefault("observer", (tiny_model(seed=1), "c2"))
    return _build(cfg, progress=False, model=tiny_model(), dataset=tiny_dataset(120),
                  render_fn=fake_render, channel_fn=fake_channel, **kw)


def test_scores_on_unit_and_layer_pages_and_resume_does_not_recompute(tmp_path, monkeypatch):
    out = tmp_path / "g"
    report = _run(_config(out))
    assert report.scores_note is None
    section = json.loads((out / SCORES_DIR / "scores.json").read_text())
    assert section["observer"] == "tiny" and section["n_images"] == 120
    rows = section["layers"]["c2"]["rows"]
    assert sorted(rows, key=int) == [str(u) for u in range(6)]
    for r in rows.values():
        assert 0 <= r["natural_lo"] <= r["natural"] <= r["natural_hi"] <= 1
        assert 0 <= r["synthetic"] <= 1 and r["gap"] == pytest.approx(
            r["natural"] - r["synthetic"], abs=1e-3)
    unit = (out / "c2" / "3.html").read_text()
    assert "interpretability: natural exemplars" in unit
    assert f"{rows['3']['natural']:.2f} (95% CI" in unit
    assert "interpretability: renders (synthetic)" in unit
    layer = (out / "c2" / "index.html").read_text()
    assert '<table class="sortable" id="scores">' in layer and "<script>" in layer
    assert len(re.findall(r'<tr><td data-v="\d+">', layer)) == 6
    assert 'src="scores.png"' in layer and iio.imread(out / "c2" / "scores.png").ndim == 3
    assert "interpretability scores" in (out / "index.html").read_text()
    # renders' observer features come from the render loop, one file per unit
    key = next(p for p in (out / SCORES_DIR).iterdir() if p.is_dir())
    assert len(list((key / "renders").rglob("*.npy"))) == 4 + 6
    assert {p.name for p in (key / "acts").iterdir()} == {"c1.npy", "c2.npy"}

    # resume: nothing is scored or observed again; the pages keep their scores
    import lucidax.gallery._unit_scores as us
    import lucidax.probes

    def boom(*a, **k):
        raise AssertionError("recomputed")

    monkeypatch.setattr(lucidax.probes, "interpretability_scores", boom)
    monkeypatch.setattr(us.Scorer, "features", boom)
    again = _run(_config(out))
    assert again.units_rendered == 0 and again.scores_note is None
    assert f"{rows['3']['natural']:.2f} (95% CI" in (out / "c2" / "3.html").read_text()


def test_scores_for_a_gallery_made_without_them(tmp_path):
    """Turned off first (no files), then on: the renders' features come from the grid PNGs
    and the activations from one pass; the switch is no setting the gallery resumes by."""
    out = tmp_path / "g"
    first = _run(_config(out, interpretability=False))
    assert first.scores_note is None and not (out / SCORES_DIR).exists()
    assert "interpretability" not in (out / "c2" / "3.html").read_text()
    report = _run(_config(out))
    assert report.units_rendered == 0 and report.scores_note is None
    assert "interpretability: natural exemplars" in (out / "c2" / "3.html").read_text()


def test_missing_observer_skips_scores_with_one_line(tmp_path, monkeypatch):
    import lucidax.models
    from lucidax.models import MissingWeightsError

    real_load = lucidax.models.load

    def load(name, *a, **k):
        if name == "efficientnet_lite0":  # the default observer of the "tiny" model
            raise MissingWeightsError("efficientnet_lite0: not installed")
        return real_load(name, *a, **k)

    monkeypatch.setattr(lucidax.models, "load", load)
    out = tmp_path / "g"
    report = _run(_config(out), observer=None)
    assert report.units_rendered == 10
    note = report.scores_note
    assert note.startswith("interpretability scores skipped") and "\n" not in note
    assert "pip install 'lucidax[imagenet]'" in note and "--no-interpretability" in note
    assert "interpretability" not in (out / "c2" / "3.html").read_text()
    assert 'id="scores"' not in (out / "c2" / "index.html").read_text()
    # too few images: a note as well
    small = _build(_config(tmp_path / "s"), progress=False, model=tiny_model(),
                   dataset=tiny_dataset(40), render_fn=fake_render, channel_fn=fake_channel,
                   observer=(tiny_model(seed=1), "c2"))
    assert f"at least {MIN_IMAGES}" in small.scores_note


def test_cli_prints_the_skip_line(tmp_path, monkeypatch, capsys):
    """``lucidax gallery`` prints the report's note (here: too few images)."""
    import lucidax.gallery
    from lucidax.cli import main

    def fake_build(config, progress=True):
        assert config.interpretability is False or config.interpretability is True
        return _build(config, progress=False, model=tiny_model(), dataset=tiny_dataset(40),
                      render_fn=fake_render, channel_fn=fake_channel,
                      observer=(tiny_model(seed=1), "c2"))

    monkeypatch.setattr(lucidax.gallery, "build_gallery", fake_build)
    rc = main(["gallery", "--out", str(tmp_path / "g"), "--steps", "5", "--size", "32",
               "--layers", "c1", "--quiet"])
    assert rc == 0
    assert "interpretability scores skipped: 40 dataset images" in capsys.readouterr().out
    main(["gallery", "--out", str(tmp_path / "h"), "--steps", "5", "--size", "32",
          "--layers", "c1", "--quiet", "--no-interpretability"])
    assert "skipped" not in capsys.readouterr().out


def test_sort_script_orders_rows(tmp_path):
    """The layer page's inline sort, in a real browser (skipped without Playwright)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium binary on PATH")
    out = tmp_path / "g"
    _run(_config(out))
    rows = json.loads((out / SCORES_DIR / "scores.json").read_text())["layers"]["c2"]["rows"]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto((out / "c2" / "index.html").as_uri())
            page.click("#scores th:nth-child(3)")  # natural, ascending
            first = page.eval_on_selector_all(
                "#scores tbody tr", "rs => rs.map(r => r.cells[2].dataset.v)")
            vals = [float(v) for v in first]
            assert vals == sorted(vals) and len(vals) == len(rows)
            page.click("#scores th:nth-child(3)")  # descending
            again = page.eval_on_selector_all(
                "#scores tbody tr", "rs => rs.map(r => r.cells[2].dataset.v)")
            assert [float(v) for v in again] == sorted(vals, reverse=True)
            assert not errors, errors
        finally:
            browser.close()
    assert np.isfinite(vals).all()


def test_two_processes_score_like_one(tmp_path):
    """Each process writes the observer features of the renders it makes; process 0 scores
    every unit at the end: the same scores as one process."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_gallery_procs import SETTINGS, TESTS, _free_port, _start, finish_all
    from test_gallery_support import RUNNER

    runner = tmp_path / "run_gallery.py"
    runner.write_text(RUNNER.format(tests=TESTS))
    base = {**SETTINGS, "layers": "c1,c2", "units": "0-3", "batch_size": 2}
    two = tmp_path / "two"
    coord = f"127.0.0.1:{_free_port()}"
    procs = [_start(runner, {**base, "out": str(two), "distributed": True,
                             "shard_timeout": 120},
                    LUCIDAX_COORDINATOR=coord, LUCIDAX_NUM_PROCESSES="2",
                    LUCIDAX_PROCESS_ID=str(i), LUCIDAX_TEST_SCORES="1") for i in range(2)]
    one = tmp_path / "one"
    from test_gallery_support import render_fns

    render, channel = render_fns()
    _build(GalleryConfig(**base, out=str(one)), progress=False, model=tiny_model(),
           dataset=tiny_dataset(120), render_fn=render, channel_fn=channel,
           observer=(tiny_model(seed=1), "c2"))
    reports = finish_all(procs, 180)
    assert sum(int(r[1]) for r in reports) == 8
    m2 = json.loads((two / "manifest.json").read_text())
    assert {e["process"] for us in m2["units"].values() for e in us.values()} == {0, 1}
    s1 = json.loads((one / SCORES_DIR / "scores.json").read_text())
    s2 = json.loads((two / SCORES_DIR / "scores.json").read_text())
    for layer in ("c1", "c2"):
        r1, r2 = s1["layers"][layer]["rows"], s2["layers"][layer]["rows"]
        assert sorted(r1) == sorted(r2) == ["0", "1", "2", "3"]
        for u in r1:
            assert r1[u]["natural"] == r2[u]["natural"]
            assert r1[u]["synthetic"] == pytest.approx(r2[u]["synthetic"], abs=0.02)
    assert "interpretability: natural exemplars" in (two / "c2" / "1.html").read_text()
