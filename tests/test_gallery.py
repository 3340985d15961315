"""lucidax.gallery: configuration, planning, dataset examples, files, site, resume, safety."""

from __future__ import annotations

import dataclasses
import html
import json
import os
import re
from pathlib import Path

import imageio.v3 as iio
import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_gallery_support import XSS, fake_channel, fake_render, tiny_dataset, tiny_model

from lucidax.gallery import (
    GalleryConfig,
    GalleryConfigError,
    ManifestMismatchError,
    UnsafePathError,
    parse_layer_units,
    parse_units,
    plan_batches,
    receptive_field,
    receptive_fields,
    safe_name,
    safe_path,
    top_k_examples,
    unit_activation,
)
from lucidax.gallery._build import _build
from lucidax.gallery._config import IMAGENET_SHOWCASE
from lucidax.gallery._examples import example_tile
from lucidax.gallery._io import atomic_write_bytes, clean_stale_tmp

# ------------------------------------------------------------------------------------------
# pure parts


def test_parse_units_ranges_and_errors():
    assert parse_units("all") is None
    assert parse_units("0-3,7, 2") == (0, 1, 2, 3, 7)
    assert parse_units([5, 1, 1]) == (1, 5)
    assert parse_units((np.int64(3),)) == (3,)
    for bad in ("3-1", "a", "1-", "-1", ",", "1;2"):
        with pytest.raises(GalleryConfigError, match="units"):
            parse_units(bad)
    with pytest.raises(GalleryConfigError):
        parse_units([-1])


@settings(max_examples=30, deadline=None)
@given(st.sets(st.integers(0, 300), min_size=1, max_size=20))
def test_parse_units_roundtrip(units):
    # write the set as ranges, parse it back
    xs = sorted(units)
    parts, start = [], xs[0]
    for a, b in zip(xs, [*xs[1:], None], strict=True):
        if b != a + 1:
            parts.append(f"{start}-{a}" if a > start else str(a))
            start = b
    assert parse_units(",".join(parts)) == tuple(xs)


def test_config_validation_and_defaults():
    c = GalleryConfig()
    assert (c.model, c.layers, c.units, c.out) == ("efficientnet_lite0", None, None, "gallery")
    r = c.resolved()  # the real network's preset: a few block depths plus class logits
    assert r.layers == "blocks.4,blocks.7,blocks.10,blocks.14,logits"
    assert parse_layer_units(r.units) == (tuple(range(8)), {"logits": IMAGENET_SHOWCASE})
    assert (r.size, r.model_side, r.variants, r.init_sd) == (128, 128, 1, 0.01)
    s = GalleryConfig(model="starter", steps=7).resolved()  # the small model's old defaults
    assert (s.layers, s.units, s.size, s.model_side, s.variants, s.steps) == (
        "all", "all", 48, 0, 2, 7)
    assert GalleryConfig().resolved("my_wrapped_model").layers == "all"
    # the user's layers without units: every unit (the preset's units name its own layers)
    assert GalleryConfig(layers="blocks.4").resolved().units == "all"
    assert GalleryConfig(layers="all", units="0-3").resolved().units == "0-3"
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.steps = 3  # type: ignore[misc]
    json.dumps(c.to_dict())
    assert GalleryConfig(layers=["a", "b"], units=[3, 1]).units == (1, 3)
    bad = (
        {"steps": 0},
        {"variants": 0},
        {"batch_size": -1},
        {"lr": 0},
        {"units": "x"},
        {"transforms": "fancy"},
        {"init_sd": -1.0},
        {"process_id": -1},
        {"model_side": -1},
        {"units": "0-3;0-4"},
        {"units": "logits=1;logits=2"},
        {"units": "=3"},
        {"dataset": "builtin:photo"},
    )
    for kw in bad:
        with pytest.raises(GalleryConfigError):
            GalleryConfig(**kw)


def test_plan_batches_partition():
    lu = {"a": tuple(range(10)), "b": (1, 2, 3), "c": ()}
    plan = plan_batches(lu, 4)
    assert [(b.layer, b.units, b.width) for b in plan] == [
        ("a", (0, 1, 2, 3), 4),
        ("a", (4, 5, 6, 7), 4),
        ("a", (8, 9), 4),
        ("b", (1, 2, 3), 3),
    ]
    for nproc in (1, 2, 3):
        shares = [[b for b in plan if b.index % nproc == p] for p in range(nproc)]
        seen = sorted((b.layer, u) for s in shares for b in s for u in b.units)
        assert seen == sorted((k, u) for k, v in lu.items() for u in v)


def test_safe_names_and_paths(tmp_path):
    assert safe_name("layer3.5") == "layer3.5"
    assert safe_name("mixed4a_pre_relu") == "mixed4a_pre_relu"
    for evil in ("../x", "..", ".", "/etc/passwd", "a/../../b", ".hidden", ""):
        s = safe_name(evil)
        assert "/" not in s and not s.startswith(".") and s
        p = safe_path(tmp_path, s)
        assert p.resolve().parent == tmp_path.resolve()
    for bad in ("..", "../x", "/abs", "a/b", "."):
        with pytest.raises(UnsafePathError):
            safe_path(tmp_path, bad)
    (tmp_path / "link").symlink_to(tmp_path.parent)
    with pytest.raises(UnsafePathError):
        safe_path(tmp_path, "link", "x.png")


@settings(max_examples=40, deadline=None)
@given(st.text(max_size=30))
def test_safe_name_never_escapes(name):
    root = Path("/tmp/lucidax-gallery-root")
    p = safe_path(root, safe_name(name), "0.png")
    assert root.resolve() in p.resolve().parents


def test_atomic_write_and_stale_tmp(tmp_path):
    target = tmp_path / "a.png"
    atomic_write_bytes(target, b"123", tag="p0")
    assert target.read_bytes() == b"123"
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))
    mine = tmp_path / ".b.png.p0.deadbeef.tmp"
    other = tmp_path / ".b.png.p1.deadbeef.tmp"
    mine.write_bytes(b"x")
    other.write_bytes(b"x")
    assert clean_stale_tmp(tmp_path, tag="p0") == 1
    assert not mine.exists() and other.exists()


# ------------------------------------------------------------------------------------------
# dataset examples


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def test_top_k_streaming_matches_brute_force(model):
    data = tiny_dataset(23, seed=1)
    got = top_k_examples(model, data.images, ("c1", "c2", "logits"), 5, chunk=7)
    acts = model.apply(model.params, data.images, ("c1", "c2", "logits"))
    for layer, tk in got.items():
        a = np.asarray(acts[layer])
        per_img = a.reshape(len(a), -1, a.shape[-1]).max(axis=1)  # [N, C]
        for u in range(per_img.shape[1]):
            order = np.argsort(-per_img[:, u], kind="stable")[:5]
            np.testing.assert_allclose(tk.values[u], per_img[order, u], rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(per_img[tk.index[u], u], tk.values[u], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(tk.max, per_img.max(axis=0), rtol=1e-4, atol=1e-6)
    # the recorded position is where the maximum is
    a = np.asarray(acts["c2"])
    i = int(got["c2"].index[2, 0])
    y, x = divmod(int(got["c2"].pos[2, 0]), a.shape[2])
    assert a[i, y, x, 2] == pytest.approx(got["c2"].values[2, 0], rel=1e-5)


def test_examples_and_unit_activation_do_not_recompile():
    """top_k_examples and unit_activation: one trace per architecture (Model.program), also
    for a second call and for a ``with_params`` copy with other weights."""
    from test_gallery_support import _apply

    from lucidax.models import wrap

    traces = []

    def counting(params, x, layers):
        if x.shape[0] > 1:  # the programs' batches (layer_shape's eval_shape uses 1 image)
            traces.append(tuple(layers))
        return _apply(params, x, layers)

    base = tiny_model(3)
    m = wrap(counting, base.params, input_spec=base.input_spec, layer_names=base.layer_names,
             name="counting")
    data = tiny_dataset(10, seed=2)
    units = np.arange(10) % 4

    def run(model):
        before = len(traces)
        top = top_k_examples(model, data.images, ("c1", "c2"), 3, chunk=4)
        act = unit_activation(model, data.images, "c1", units)
        return top, act, len(traces) - before

    _, act1, first = run(m)
    assert first >= 2  # compiled: the top-k step and the unit activation
    _, act1b, second = run(m)
    assert second == 0
    np.testing.assert_array_equal(act1, act1b)
    other = m.with_params(jax.tree.map(lambda p: p * 1.5, m.params))
    top2, act2, third = run(other)
    assert third == 0  # new weights, same program
    ref = np.asarray(other.apply(other.params, data.images, ("c1",))["c1"]).max(axis=(1, 2))
    np.testing.assert_allclose(act2, ref[np.arange(10), units], rtol=1e-5, atol=1e-6)
    assert not np.allclose(act1, act2)


def test_receptive_field_and_crop(model):
    rf1 = receptive_field(model, "c1")
    rf2, rfl = receptive_fields(model, ["c2", "logits"], seed=3).values()
    assert rf1.size == (3, 3) and rf1.stride == (1.0, 1.0)
    assert rf2.size == (8, 8) and rf2.stride == (2.0, 2.0)
    assert rfl.full and not rf2.full
    img = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    pos = 5 * rf2.shape[1] + 7
    y0, y1, x0, x1 = rf2.box_at(5, 7)
    tile = example_tile(img, rf2, pos, 16)
    np.testing.assert_array_equal(tile, np.repeat(np.repeat(img[y0:y1, x0:x1], 2, 0), 2, 1))
    corner = example_tile(img, rf2, 0, 8)  # partly outside: grey padding
    assert np.any(corner == 0.5) and corner.shape == (8, 8, 3)
    assert example_tile(img, rfl, 0, 32).shape == (32, 32, 3)


# ------------------------------------------------------------------------------------------
# a whole gallery (fake renderer: the gallery's own logic, fast)


def _cfg(out, **kw):
    base = {"steps": 6, "size": 32, "variants": 2, "batch_size": 4, "top_k": 5}
    base.update(kw)
    return GalleryConfig(out=str(out), **base)


def _run(cfg, **kw):
    kw.setdefault("model", tiny_model())
    kw.setdefault("dataset", tiny_dataset())
    return _build(cfg, progress=False, render_fn=fake_render, channel_fn=fake_channel, **kw)


def test_per_layer_units(tmp_path):
    """``units="0-1;c2=3"``: layers not named take the first part, named ones their own; a
    named layer that is not rendered or a unit past its width is refused before any work."""
    report = _run(_cfg(tmp_path / "g", layers="c1,c2", units="0-1;c2=3"))
    manifest = json.loads((tmp_path / "g" / "manifest.json").read_text())
    done = {layer: sorted(int(u) for u in units) for layer, units in manifest["units"].items()}
    assert done == {"c1": [0, 1], "c2": [3]} and report.units_rendered == 3
    for bad in ("0-1;logits=2", "c2=999"):
        with pytest.raises(GalleryConfigError, match="logits|999"):
            _run(_cfg(tmp_path / "bad", layers="c1,c2", units=bad))
    assert not (tmp_path / "bad" / "manifest.json").exists()


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    out = tmp_path_factory.mktemp("gal") / "out"
    (out / "probes").mkdir(parents=True)
    (out / "probes" / "result.json").write_text(
        json.dumps([{"layer": "c1", "concept": XSS, "accuracy": 0.9}])
    )
    report = _run(_cfg(out))
    return out, report


def _links(page: Path) -> list[str]:
    return re.findall(r'(?:href|src)="([^"]+)"', page.read_text())


def test_gallery_files_and_links(gallery):
    out, report = gallery
    assert report.units_total == 4 + 6 + 3 and report.units_rendered == 13
    m = json.loads((out / "manifest.json").read_text())
    assert m["model"]["params_sha256"] and m["versions"]["jax"] == jax.__version__
    assert {k: len(v) for k, v in m["units"].items()} == {"c1": 4, "c2": 6, "logits": 3}
    for layer, units in m["units"].items():
        for e in units.values():
            assert e["status"] == "done"
            grid = iio.imread(out / e["grid"])
            assert grid.shape[2] == 3 and grid.shape[0] > 64
            assert iio.imread(out / e["loss_png"]).ndim == 3
            assert (out / e["page"]).is_file()
            assert len(e["examples"]) == 5 and e["dataset_max"] == e["examples"][0]["value"]
        assert iio.imread(out / layer / "sheet.png").ndim == 3
    pages = [out / "index.html", out / "probes.html", *out.glob("*/*.html")]
    assert len(pages) == 2 + 13 + 3
    for page in pages:
        for link in _links(page):
            assert (page.parent / link).resolve().is_file(), (page, link)
    assert not list(out.rglob("*.tmp"))


def test_gallery_html_is_escaped(gallery):
    out, _ = gallery
    texts = {
        p.name if p.parent == out else f"{p.parent.name}/{p.name}": p.read_text()
        for p in out.rglob("*.html")
    }
    for name, text in texts.items():
        assert XSS not in text, name
        assert "<script" not in text, name
    escaped = html.escape(XSS)
    assert escaped in texts["logits/2.html"]  # a class label of the logits layer
    assert escaped in texts["probes.html"]  # analysis JSON content
    assert 'href="probes.html"' in texts["index.html"]
    assert any(escaped in t for k, t in texts.items() if k.startswith("c1/"))  # dataset labels


def test_resume_skips_and_repairs(gallery, tmp_path):
    out, _ = gallery
    again = _run(_cfg(out))
    assert again.units_rendered == 0 and again.units_skipped == 13
    before = (out / "c2" / "0.png").read_bytes()
    (out / "c2" / "3.png").unlink()
    (out / "c2" / "5.png").write_bytes(b"\x89PNG broken")
    fixed = _run(_cfg(out))
    assert fixed.units_rendered == 2  # only the missing and the corrupt unit
    assert (out / "c2" / "0.png").read_bytes() == before
    assert iio.imread(out / "c2" / "5.png").ndim == 3


def test_manifest_mismatch_refused_unless_forced(tmp_path):
    out = tmp_path / "g"
    _run(_cfg(out, layers="c1", units="0-1"))
    with pytest.raises(ManifestMismatchError, match="steps"):
        _run(_cfg(out, layers="c1", units="0-1", steps=7))
    forced = _run(_cfg(out, layers="c1", units="0-1", steps=7, force=True))
    assert forced.units_rendered == 2
    m = json.loads((out / "manifest.json").read_text())
    assert m["settings"]["steps"] == 7
    # more units with the same settings extend the gallery
    more = _run(_cfg(out, layers="c1", units="0-3", steps=7))
    assert (more.units_rendered, more.units_skipped) == (2, 2)


def test_hostile_layer_names_stay_inside(tmp_path):
    import jax.numpy as jnp

    from lucidax.models import InputSpec, wrap

    def fn(params, x, layers):
        h = jax.nn.relu(x @ params["w"])
        return {"../evil": h, "a/b": h * 2, XSS: h.mean(axis=(1, 2))}

    evil = wrap(
        fn,
        {"w": jnp.ones((3, 2))},
        input_spec=InputSpec(side=32),
        layer_names=["../evil", "a/b", XSS],
        name=XSS,
    )
    out = tmp_path / "inner" / "out"
    _run(_cfg(out, top_k=2), model=evil)
    assert sorted(p.name for p in (tmp_path / "inner").iterdir()) == ["out"]
    dirs = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert dirs == sorted(safe_name(n) for n in ["../evil", "a/b", XSS])
    assert all(not d.startswith(".") for d in dirs)
    for page in out.rglob("*.html"):
        assert "<script" not in page.read_text()


def test_unknown_layer_and_units_errors(tmp_path):
    with pytest.raises(ValueError, match="Valid layers"):
        _run(_cfg(tmp_path / "g", layers="c9"))
    with pytest.raises(GalleryConfigError, match="at most 6"):
        _run(_cfg(tmp_path / "g", layers="c1,c2", units="0,7"))


def test_distributed_needs_coordinates(tmp_path, monkeypatch):
    for var in ("LUCIDAX_COORDINATOR", "LUCIDAX_NUM_PROCESSES", "LUCIDAX_PROCESS_ID"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(GalleryConfigError, match="LUCIDAX_COORDINATOR"):
        _run(_cfg(tmp_path / "g", distributed=True))
    assert not os.path.exists(tmp_path / "g")


def test_silent_units_are_rescued(tmp_path):
    calls = []

    def grey_unless_rescue(model, params, objective, **kw):
        rescue = "clip" in getattr(kw.get("param"), "name", "") or kw.get("rescue", False)
        calls.append(rescue)
        res = fake_render(model, params, objective, **kw)
        if not rescue:  # a flat grey image: c1 = relu(conv(x - 0.5)) is exactly 0
            res.images[:] = 0.5
        return res

    def run(out, **kw):
        return _build(
            _cfg(out, layers="c1", **kw),
            progress=False,
            model=tiny_model(),
            dataset=tiny_dataset(),
            render_fn=grey_unless_rescue,
            channel_fn=fake_channel,
        )

    run(tmp_path / "a")
    assert calls == [False, True]
    m = json.loads((tmp_path / "a" / "manifest.json").read_text())
    entries = m["units"]["c1"].values()
    assert all(e["start"] == "rescue" and e["ratio"] > 0 for e in entries)
    assert "high-contrast" in (tmp_path / "a" / "c1" / "0.html").read_text()
    calls.clear()
    run(tmp_path / "b", rescue=False)
    assert calls == [False]
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert all(e["start"] == "default" and e["ratio"] == 0 for e in m["units"]["c1"].values())


def test_analysis_with_its_own_page_is_linked(tmp_path):
    """`lucidax attribute --out <gallery>/attribution` writes attribution/index.html: the gallery
    lists the analysis and its page links there; a link pointing outside is ignored."""
    from lucidax.gallery import _site as site

    (tmp_path / "attribution").mkdir()
    (tmp_path / "attribution" / "index.html").write_text("<html></html>")
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "index.html").write_text("x")
    (tmp_path / "invert").mkdir()
    (tmp_path / "invert" / "index.html").symlink_to(outside / "index.html")
    assert site.analysis_dirs(tmp_path) == ["attribution"]
    page = site._analysis_page(tmp_path, "attribution", ["attribution"])
    assert 'href="attribution/index.html"' in page


def test_analysis_page_lists_results_not_caches(tmp_path):
    """The TCAV page (as `lucidax tcav --out <gallery>/tcav` leaves it, cache included) opens
    with the figure, then the table, then the results: never a cache file; an SVG twin is a
    link next to its PNG."""
    from lucidax._files import save_png
    from lucidax.gallery import _site as site

    tcav = tmp_path / "tcav"
    (tcav / "cache").mkdir(parents=True)
    (tcav / "cache" / "data-0123.json").write_text('{"key": "cache internals"}')
    (tcav / "cache" / "conv1-0123.json").write_text("{}")
    (tmp_path / "probes" / "feature-cache").mkdir(parents=True)
    (tmp_path / "probes" / "feature-cache" / "x.json").write_text("{}")
    (tcav / "results.json").write_text('{"results": []}')
    (tcav / "results.csv").write_text("concept,layer\ncolor:red,conv1\n")
    save_png(tcav / "tcav.png", np.zeros((4, 4, 3)))
    (tcav / "tcav.svg").write_text("<svg/>")
    files = [p.relative_to(tcav).as_posix() for p in site._analysis_files(tmp_path, "tcav")]
    assert files == ["tcav.png", "tcav.svg", "results.csv", "results.json"]
    assert site.analysis_dirs(tmp_path) == ["tcav"]  # a folder of caches only is no result
    page = site._analysis_page(tmp_path, "tcav", ["tcav"])
    assert "cache" not in page
    assert page.index('src="tcav/tcav.png"') < page.index("results.csv") \
        < page.index("results.json")
    assert 'href="tcav/tcav.svg"' in page and 'src="tcav/tcav.svg"' not in page


@pytest.mark.slow
def test_default_gallery_is_efficientnet_lite0(tmp_path):
    """The main job's defaults on the real network (renders faked, everything else real): the
    preset's 48 units of blocks 4/7/10/14 and 16 classes, examples from the built-in photos at
    224 px, class names on the logits pages."""
    cfg = GalleryConfig(out=str(tmp_path / "g"), dataset_size=12, top_k=2)
    report = _build(cfg, progress=False, render_fn=fake_render, channel_fn=fake_channel)
    assert report.units_rendered == 48 and not report.failed_units
    manifest = json.loads((tmp_path / "g" / "manifest.json").read_text())
    assert manifest["settings"]["model"] == "efficientnet_lite0"
    assert manifest["settings"]["dataset"]["source"].startswith("builtin:photos")
    assert (manifest["settings"]["size"], manifest["settings"]["model_side"]) == (128, 128)
    units = {layer: sorted(int(u) for u in us) for layer, us in manifest["units"].items()}
    assert units == {**{f"blocks.{b}": list(range(8)) for b in (4, 7, 10, 14)},
                     "logits": sorted(IMAGENET_SHOWCASE)}
    page = (tmp_path / "g" / "logits" / "285.html").read_text()
    assert "Egyptian cat" in page
