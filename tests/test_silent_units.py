"""Silent units (issue 15): units that never activate are reported as such by ``lucidax
render`` and the gallery, instead of a noise render and arbitrary "top examples"."""

from __future__ import annotations

import json
import os

import imageio.v3 as iio
import numpy as np
import pytest
from test_gallery_support import fake_channel, fake_render, tiny_dataset, tiny_model

from lucidax.cli import main
from lucidax.gallery import GalleryConfig, GalleryReport
from lucidax.gallery._build import _build
from lucidax.visualize import describe_silence as describe
from lucidax.visualize import silent_on_data, stuck_renders

# ------------------------------------------------------------------------------------------
# the definitions


def test_stuck_renders_definition():
    steps = 20
    loss = np.zeros((steps, 6), np.float32)  # loss = -objective
    loss[0, 1] = -2e-4  # one blip (transforms), then 0 to the end: still stuck
    loss[:, 2] = -np.linspace(0.0, 1.0, steps)  # moved from 0: not stuck
    loss[-1, 3] = -0.5  # woke up at the end: not stuck
    loss[:3, 4] = -0.1  # > 0 on 3 of 20 steps (85% zero, < 90%): not stuck
    loss[5, 5] = np.nan  # a NaN step is not a zero step: 19/20 zero is still >= 90%
    assert stuck_renders(loss).tolist() == [True, True, False, False, False, True]
    assert stuck_renders(np.zeros(7)).tolist() == [True]  # one render's trace


def test_silent_on_data_definition():
    assert silent_on_data([0.0, 0.0, 0.0])
    assert silent_on_data([0.0, -np.inf])  # padding (fewer images than k) is ignored
    assert not silent_on_data([0.03, 0.0, 0.0])  # one image activates it
    assert not silent_on_data([-1.0, -2.0])  # a linear unit that is merely negative ranks
    assert not silent_on_data([-np.inf])  # no data: no verdict
    assert describe(["dataset"], n_images=5) == "never activates on the 5 dataset images"


# ------------------------------------------------------------------------------------------
# the starter model: conv2 unit 1 never activates on builtin:starter (test split)


def test_starter_conv2_unit_1_is_dead_on_its_data():
    import lucidax.models as lm
    from lucidax.gallery import top_k_examples
    from lucidax.models import starter

    model = lm.load("starter")
    images = starter.dataset(1000, split="test", seed=0).images  # what the gallery uses
    top = top_k_examples(model, images, ["conv2"], 1)["conv2"]
    assert top.max[1] == 0.0  # max over the 1000 images and every position
    assert top.max[0] > 0 and top.max[2] > 0


def test_render_summary_marks_silent_units(tmp_path, capsys):
    out = tmp_path / "r"
    rc = main(["render", "--model", "starter", "--layer", "conv2", "--units", "1,2",
               "--steps", "8", "--size", "32", "--out", str(out), "--quiet"])
    assert rc == 0
    line = capsys.readouterr().out
    assert f"rendered 2 units of conv2 (1 silent: 1) -> {out / 'conv2.png'}" in line
    summary = json.loads((out / "conv2" / "render.json").read_text())
    rec = {r["unit"]: r for r in summary["units"]}
    assert summary["silent"] == [1]
    assert rec[1]["silent"] and rec[1]["objective"] == 0.0
    assert "never left its start" in rec[1]["silent_reason"]
    assert rec[1]["png"] and (out / "conv2" / rec[1]["png"]).is_file()  # still written
    assert not rec[2]["silent"] and rec[2]["silent_reason"] is None


GALLERY_ARGS = ["gallery", "--model", "starter", "--layers", "conv2", "--units", "0,1",
                "--steps", "8", "--size", "32", "--variants", "1", "--top-k", "3", "--quiet"]


@pytest.fixture(scope="module")
def starter_gallery(tmp_path_factory):
    out = tmp_path_factory.mktemp("silent") / "g"
    return out, [*GALLERY_ARGS, "--out", str(out)]


def test_gallery_marks_silent_unit(starter_gallery, capsys):
    out, args = starter_gallery
    assert main(args) == 0
    printed = capsys.readouterr().out.splitlines()
    m = json.loads((out / "manifest.json").read_text())
    silent = m["summary"]["silent"]
    assert "conv2/1" in silent
    assert printed[0].startswith(f"2 units rendered, 0 already done, 0 failed, {len(silent)} "
                                 "silent, in ")
    assert printed[1] == f"silent units (greyed in the gallery): {', '.join(silent)}"
    u0, u1 = m["units"]["conv2"]["0"], m["units"]["conv2"]["1"]
    # unit 1: silent on the data, no (arbitrary) examples
    assert u1["status"] == "done" and u1["silent"] and "dataset" in u1["silent_reasons"]
    assert u1["examples"] == [] and u1["dataset_max"] == 0.0
    # unit 0: active on a few images only; those are its examples (none at activation 0)
    assert "dataset" not in u0["silent_reasons"] and u0["examples"]
    assert all(ex["value"] > 0 for ex in u0["examples"])
    page1 = (out / "conv2" / "1.html").read_text()
    assert "silent" in page1 and "never activates on the 1000 dataset images" in page1
    assert "Top dataset examples" not in page1
    assert "Top dataset examples" in (out / "conv2" / "0.html").read_text()
    layer_page = (out / "conv2" / "index.html").read_text()
    assert 'class="card silent" href="1.html"' in layer_page
    assert "silent" in (out / "index.html").read_text()
    sheet = iio.imread(out / "conv2" / "sheet.png")  # unit 1's tile: greyed
    tile1 = sheet[2:34, 36:68].astype(int)
    assert np.all(tile1[..., 0] == tile1[..., 1]) and np.all(tile1[..., 1] == tile1[..., 2])


def test_gallery_resume_does_no_work(starter_gallery, capsys):
    out, args = starter_gallery
    if not (out / "manifest.json").exists():
        pytest.skip("needs test_gallery_marks_silent_unit")
    before = json.loads((out / "manifest.json").read_text())
    grids = {p: os.stat(p).st_mtime_ns for p in out.glob("conv2/*.png")}
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "0 units rendered, 2 already done, 0 failed" in printed
    assert "conv2/1" in printed  # the silent count covers the finished units too
    after = json.loads((out / "manifest.json").read_text())
    assert after["units"] == before["units"] and after["summary"] == before["summary"]
    assert {p: os.stat(p).st_mtime_ns for p in grids if p.name != "sheet.png"} == {
        p: t for p, t in grids.items() if p.name != "sheet.png"}


# ------------------------------------------------------------------------------------------
# rescue reporting (fake renderer: fast)


def _grey(rescue_too: bool):
    def render_fn(model, params, objective, **kw):
        rescue = "clip" in getattr(kw.get("param"), "name", "") or kw.get("rescue", False)
        res = fake_render(model, params, objective, **kw)
        if rescue_too or not rescue:  # flat grey: c1 = relu(conv(x - 0.5)) is exactly 0
            res.images[:] = 0.5
        return res

    return render_fn


@pytest.mark.parametrize("works", [True, False])
def test_rescue_outcome_is_reported(tmp_path, works, capsys, monkeypatch):
    cfg = GalleryConfig(out=str(tmp_path / "g"), layers="c1", steps=6, size=32, variants=2,
                        batch_size=4, top_k=5)
    report = _build(cfg, progress=False, model=tiny_model(), dataset=tiny_dataset(),
                    render_fn=_grey(rescue_too=not works), channel_fn=fake_channel)
    units = tuple(f"c1/{u}" for u in range(4))
    assert report.rescue_needed == units
    assert report.rescue_succeeded == (units if works else ())
    m = json.loads((tmp_path / "g" / "manifest.json").read_text())
    outcome = "succeeded" if works else "failed"
    assert {e["rescue"] for e in m["units"]["c1"].values()} == {outcome}
    assert m["summary"]["rescue"] == {"needed": list(units), "succeeded": list(
        units if works else ()), "failed": list(() if works else units)}
    page = (tmp_path / "g" / "c1" / "0.html").read_text()
    assert ("it woke the unit" if works else "it did not wake the unit") in page

    # the CLI line
    import lucidax.gallery

    monkeypatch.setattr(lucidax.gallery, "build_gallery", lambda *a, **k: report)
    main(["gallery", "--model", "starter", "--out", str(tmp_path / "g"), "--quiet"])
    printed = capsys.readouterr().out
    woke = f"woke 4 ({', '.join(units)})" if works else "woke 0"
    assert f"rescue from a high-contrast start: needed by 4, {woke}" in printed


def test_report_fields_default_for_old_callers():
    r = GalleryReport("o", None, "m", 0, 1, 1, 1, 0, (), 1.0, 1.0)
    assert r.silent_units == r.rescue_needed == r.rescue_succeeded == ()
