"""builtin:photos: the real photos shipped in installed packages, and every consumer of it."""

from __future__ import annotations

import json
import os
import types

import numpy as np
import pytest

import lucidax.models as lm
from lucidax.models import photos as P

SMALL = 32  # px: keeps every test here fast


@pytest.fixture(scope="module")
def starter():
    return lm.load("starter")


# -- the data -----------------------------------------------------------------------------------
def test_every_source_loads_offline_as_uint8_rgb():
    assert P.available_sources() == P.SOURCE_NAMES  # scikit-learn is installed in tests
    for name in P.SOURCE_NAMES:
        im = P.source_image(name)
        assert im.dtype == np.uint8 and im.ndim == 3 and im.shape[2] == 3, name
        assert min(im.shape[:2]) >= 150 and im.std() > 5, name  # a real picture, not blank
        assert not im.flags.writeable
    src = {s.name: s for s in P.SOURCES}
    assert all(s.license and s.credit and s.package for s in P.SOURCES)
    assert src["chelsea"].license == "CC0" and src["china"].license == "CC BY 2.0"


def test_shapes_range_labels_and_balance():
    ph = P.photos(3 * len(P.SOURCE_NAMES) + 5, side=SMALL, seed=0)
    n = len(ph)
    assert ph.images.shape == (n, SMALL, SMALL, 3) and ph.images.dtype == np.float32
    assert 0.0 <= ph.images.min() and ph.images.max() <= 1.0 and ph.images.std() > 0.05
    assert ph.label_names == P.SOURCE_NAMES and ph.labels.dtype == np.int64
    counts = np.bincount(ph.labels, minlength=len(P.SOURCE_NAMES))
    assert counts.max() - counts.min() <= 1  # dealt round robin over the sources
    assert ph.boxes.shape == (n, 4) and np.all(ph.boxes[:, 2:] > ph.boxes[:, :2])
    assert [s.name for s in ph.sources] == list(ph.label_names)
    # the first crop of every source is the whole photo (centre crop, largest scale)
    first = np.array([np.flatnonzero(ph.labels == j)[0] for j in range(len(P.SOURCE_NAMES))])
    np.testing.assert_allclose(ph.scales[first], 1.0)
    assert not ph.flipped[first].any()
    sub = ph.subset(slice(0, 4))
    assert len(sub) == 4 and sub.names() == ph.names()[:4]
    gray = P.photos(4, side=SMALL, channels=1)
    assert gray.images.shape == (4, SMALL, SMALL, 1)


def test_deterministic_order_by_seed():
    a = P.photos(60, side=SMALL, seed=0)
    b = P.photos(60, side=SMALL, seed=0)
    c = P.photos(60, side=SMALL, seed=1)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    assert a.names() != c.names() or not np.array_equal(a.boxes, c.boxes)
    assert not np.array_equal(a.images, c.images)
    # a longer batch starts with the shorter one's crops of each source (streams)
    more = P.photos(80, side=SMALL, seed=0)
    for j in range(len(P.SOURCE_NAMES)):
        np.testing.assert_array_equal(a.boxes[a.labels == j],
                                      more.boxes[more.labels == j][: (a.labels == j).sum()])


def test_every_scale_and_grid_crop():
    ph = P.photos(None, side=8)  # every grid crop once
    for j, name in enumerate(ph.label_names):
        got = np.unique(np.round(ph.scales[ph.labels == j], 2))
        np.testing.assert_allclose(got, sorted(P.DEFAULT_SCALES), atol=0.01, err_msg=name)
        boxes = ph.boxes[ph.labels == j]
        assert len(np.unique(boxes, axis=0)) == len(boxes)  # no crop twice
        h, w = P.source_image(name).shape[:2]
        assert boxes[:, :2].min() >= 0 and boxes[:, 2].max() <= h and boxes[:, 3].max() <= w
    assert 800 < len(ph) < 2000 and not ph.flipped.any()
    one = P.photos(None, side=8, scales=(0.5,), sources="coffee")
    assert one.label_names == ("coffee",) and np.allclose(one.scales, 0.5)


def test_beyond_the_grid_crops_are_mirrored_then_random():
    g = len(P.photos(None, side=8, sources="astronaut"))
    ph = P.photos(3 * g, side=8, sources="astronaut", seed=3)
    assert not ph.flipped[:g].any() and ph.flipped[g:2 * g].all()
    assert len(np.unique(ph.boxes[:g], axis=0)) == g
    np.testing.assert_array_equal(np.unique(ph.boxes[:g], axis=0),
                                  np.unique(ph.boxes[g:2 * g], axis=0))
    s = ph.scales[2 * g:]
    assert s.min() >= min(P.DEFAULT_SCALES) - 0.01 and s.max() <= 1.0
    assert len(np.unique(ph.boxes[2 * g:], axis=0)) > g // 2  # random, not the grid again
    # a flipped crop is the mirror image of the same box
    plain = P.photos(None, side=16, sources="astronaut", seed=3)
    j = g  # first mirrored crop
    k = np.flatnonzero((plain.boxes == ph.boxes[j]).all(axis=1))[0]
    big = P.photos(2 * g, side=16, sources="astronaut", seed=3)
    np.testing.assert_array_equal(big.images[j], plain.images[k][:, ::-1])


def test_whole_photos():
    w = P.whole_photos(SMALL, sources=("chelsea", "coffee"))
    assert w.names() == ["chelsea", "coffee"] and w.images.shape == (2, SMALL, SMALL, 3)
    np.testing.assert_allclose(w.scales, 1.0)
    assert len(P.whole_photos(8)) == len(P.SOURCE_NAMES)


def test_parse_builtin_and_errors():
    assert P.parse_builtin("some/folder") is None
    assert P.parse_builtin("builtin:photos").sources == P.SOURCE_NAMES
    assert P.parse_builtin("builtin:photos:chelsea").sources == ("chelsea",)
    st = P.parse_builtin("builtin:starter", "train")
    assert st.kind == "starter" and st.split == "train"
    assert P.parse_builtin("builtin:starter:test").split == "test"
    with pytest.raises(ValueError, match=r"Unknown builtin data 'builtin:foo'\. Valid: "
                                         r"builtin:starter.*builtin:photos"):
        P.parse_builtin("builtin:foo")
    with pytest.raises(ValueError, match="Did you mean 'chelsea'"):
        P.parse_builtin("builtin:photos:chelsae")
    with pytest.raises(ValueError, match="'builtin:starter:val'. Valid: builtin:starter, "
                                         "builtin:starter:train"):
        P.parse_builtin("builtin:starter:val")
    for bad in ({"n": -1}, {"n": 2.5}, {"side": 0}, {"scales": ()}, {"scales": (1.5,)},
                {"channels": 2}, {"sources": ["nope"]}, {"seed": -1}):
        with pytest.raises(ValueError):
            P.photos(**{"n": 2, **bad})


# -- the consumers ------------------------------------------------------------------------------
def test_probe_on_photos(starter, tmp_path):
    from lucidax.probes import ProbeJob, load_data, run_probe

    d = load_data("builtin:photos", n=8, seed=0, side=SMALL)
    assert d.data.shape == (8, SMALL, SMALL, 3) and set(d.labels) == {"source"}
    assert d.label_names["source"] == P.SOURCE_NAMES
    sources = "builtin:photos:chelsea"
    assert load_data(sources, n=3).data.shape == (3, 224, 224, 3)
    # source labels, crops at the model's side (64 px)
    run = run_probe(ProbeJob(starter, layers="conv1", data="builtin:photos", n=4 * 20,
                             folds=2, test_size=0.5, out=tmp_path / "p"), progress=False)
    r = run.results[0]
    assert r.layer == "conv1" and r.target == "source" and r.n_test == 40
    doc = json.loads((tmp_path / "p" / "results.json").read_text())
    assert doc["class_names"] == list(P.SOURCE_NAMES)
    with pytest.raises(ValueError, match="builtin:photos"):
        run_probe(ProbeJob(starter, data="builtin:foo", out=tmp_path / "q"), progress=False)


def test_tcav_sources_accept_photos(starter):
    from lucidax.probes import ImageSet
    from lucidax.probes._tcav_job import _parse_source

    name, s = _parse_source("builtin:photos", model=starter, n=5, split_default="test",
                            seed=7, what="random")
    assert name == "random" and s.n == 5 and "images" not in vars(s)  # lazy
    assert s.images.shape == (5, 64, 64, 3)
    name, c = _parse_source("builtin:photos:grass", model=starter, n=3, split_default="test",
                            seed=1, what="concept")
    assert name == "photos:grass" and c.key != s.key
    assert c.images.shape == (3, 64, 64, 3)
    assert ImageSet.photos(5, side=64, seed=7).key == s.key
    assert ImageSet.photos(5, side=64, seed=8).key != s.key
    with pytest.raises(ValueError, match="photo source"):
        _parse_source("builtin:photos:nope", model=starter, n=3, split_default="test", seed=0,
                      what="concept")
    # random sets leave out the concepts' own photos (no concept image among the "random")
    _, r = _parse_source("builtin:photos", model=starter, n=40, split_default="test", seed=7,
                         what="random", exclude=("grass", "chelsea"))
    assert r.key != s.key and "grass" not in r.key and "coffee" in r.key
    assert r.images.shape == (40, 64, 64, 3)


def test_run_tcav_with_photos(starter, tmp_path):
    from lucidax.probes import TCAVJob, run_tcav

    run = run_tcav(TCAVJob(starter, layers="conv1", concepts=["builtin:photos:grass"],
                           target_class=0, random="builtin:photos",
                           targets="builtin:photos:chelsea", runs=2, n_concept=6, n_random=6,
                           n_targets=4, out=None), progress=False)
    (r,) = run.results
    assert r.concept == "photos:grass" and r.layer == "conv1" and r.n_targets == 4


def test_attribution_on_photos(starter, tmp_path):
    from lucidax.attribute import AttributeJob, load_images, run_attribute

    src = load_images("builtin:photos", starter, n=2, seed=0)
    assert src.images.shape == (2, 64, 64, 3) and src.labels is None
    first = P.photos(2, side=64, seed=0)
    assert src.names == tuple(f"{s}-{i}" for i, s in enumerate(first.names()))
    run = run_attribute(AttributeJob(starter, images="builtin:photos", methods="random", n=2,
                                     evaluate=False, out=tmp_path / "a"), progress=False)
    assert run.maps["random"].shape == (2, 64, 64) and os.path.isfile(run.files["html"])
    with pytest.raises(ValueError, match="labelled"):
        run_attribute(AttributeJob(starter, images="builtin:photos", methods="random", n=2,
                                   target="label", evaluate=False, out=tmp_path / "b"),
                      progress=False)


def test_invert_reads_photos(tmp_path):
    import imageio.v3 as iio

    from lucidax.visualize._invert import _read_images

    f = tmp_path / "black.png"
    iio.imwrite(f, np.zeros((10, 20, 3), np.uint8))
    imgs, names = _read_images([str(f), "builtin:photos:chelsea", "builtin:photos:coffee"],
                               SMALL, 3)
    assert imgs.shape == (3, SMALL, SMALL, 3) and not imgs[0].any()
    assert names == [str(f), "builtin:photos:chelsea", "builtin:photos:coffee"]
    np.testing.assert_array_equal(imgs[1:], P.whole_photos(SMALL, sources=("chelsea", "coffee"))
                                  .images)
    all_, _ = _read_images(["builtin:photos"], 8, 1)
    assert all_.shape == (len(P.SOURCE_NAMES), 8, 8, 1)
    with pytest.raises(ValueError, match="Valid: builtin:starter"):
        _read_images(["builtin:foo"], 8, 3)


def test_invert_reads_starter_images(monkeypatch):
    from lucidax.models import starter
    from lucidax.visualize._invert import STARTER_IMAGES, _read_images

    calls = []

    def dataset(n, *, split, seed):  # stands in for the real one (its MNIST decode is slow)
        calls.append((n, split, seed))
        return types.SimpleNamespace(images=np.linspace(0, 1, n * 64 * 64 * 3, dtype=np.float32)
                                     .reshape(n, 64, 64, 3))

    monkeypatch.setattr(starter, "dataset", dataset)
    imgs, names = _read_images(["builtin:starter", "builtin:photos:chelsea"], SMALL, 1)
    k = STARTER_IMAGES
    assert calls == [(k, "test", 0)] and imgs.shape == (k + 1, SMALL, SMALL, 1)
    assert names == [f"starter-test-{i}" for i in range(k)] + ["builtin:photos:chelsea"]
    _, names = _read_images(["builtin:starter:train"], 64, 3)
    assert names[0] == "starter-train-0"


def test_run_invert_on_a_photo(starter, tmp_path):
    from lucidax.visualize import InvertJob, run_invert

    run = run_invert(InvertJob(starter, layers="conv1", images=["builtin:photos:chelsea"],
                               out=tmp_path / "i", steps=1), progress=False)
    assert os.path.isfile(tmp_path / "i" / "chelsea" / "original.png")
    metrics = json.loads(open(run.files["metrics"]).read())
    assert metrics["images"] == ["builtin:photos:chelsea"]


def test_gallery_dataset_photos_and_auto(starter, tmp_path):
    from test_gallery_support import fake_channel, fake_render, tiny_model

    from lucidax.gallery import GalleryConfig, GalleryConfigError
    from lucidax.gallery._build import _build
    from lucidax.gallery._dataset import _load_examples

    tiny = tiny_model()  # 32 px RGB, no dataset of its own
    cfg = GalleryConfig(out=str(tmp_path / "x"), dataset="auto", dataset_size=12, top_k=2)
    ex = _load_examples(cfg, tiny, None)
    assert ex.images.shape == (12, 32, 32, 3) and ex.source.startswith("builtin:photos")
    assert set(ex.captions) <= set(P.SOURCE_NAMES)
    ex2 = _load_examples(dataclasses_replace(cfg, dataset="builtin:photos"), tiny, None)
    np.testing.assert_array_equal(ex.images, ex2.images)
    assert ex.sha256 == ex2.sha256
    own = _load_examples(cfg, starter, None)  # the starter model ships its dataset
    assert own.source.startswith("lucidax.models.starter.dataset") and own.images.shape[1] == 64
    nat = types.SimpleNamespace(input_spec=lm.InputSpec(side=None, channels=3), name="free")
    assert _load_examples(dataclasses_replace(cfg, dataset_size=2), nat, None).images.shape \
        == (2, 224, 224, 3)
    gray = types.SimpleNamespace(input_spec=lm.InputSpec(side=32, channels=1), name="gray")
    assert _load_examples(cfg, gray, None) is None
    with pytest.raises(GalleryConfigError, match="builtin:photos"):
        _load_examples(dataclasses_replace(cfg, dataset="builtin:foo"), tiny, None)
    with pytest.raises(GalleryConfigError, match="chelsea"):
        _load_examples(dataclasses_replace(cfg, dataset="builtin:photos:chelsae"), tiny, None)

    # a whole (tiny, fake-rendered) gallery with photo examples
    out = tmp_path / "g"
    cfg = GalleryConfig(out=str(out), layers="c1", steps=2, size=32, variants=1, batch_size=4,
                        top_k=3, dataset="builtin:photos", dataset_size=20)
    report = _build(cfg, progress=False, model=tiny, render_fn=fake_render,
                    channel_fn=fake_channel)
    assert report.units_rendered == 4
    m = json.loads((out / "manifest.json").read_text())
    ex = m["units"]["c1"]["0"]["examples"]
    assert len(ex) == 3


def dataclasses_replace(cfg, **kw):
    import dataclasses

    return dataclasses.replace(cfg, **kw)
