"""Deletion / insertion curves, rank correlation, SSIM, parameter randomization, the
``lucidax attribute`` runner and its page."""

from __future__ import annotations

import functools
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import lucidax.models as lm
from lucidax.attribute import (
    deletion_curve,
    insertion_curve,
    occlusion,
    random_map,
    randomization_check,
    randomize_params,
    spearman,
    ssim,
)


@pytest.fixture(scope="module")
def starter():
    from lucidax.models import starter as st_

    model = lm.load("starter")
    data = st_.dataset(3, split="test", seed=0)
    return model, data


def test_spearman_basics():
    a = np.arange(12.0).reshape(1, 3, 4)
    assert spearman(a, a)[0] == pytest.approx(1.0)
    assert spearman(a, -a)[0] == pytest.approx(-1.0)
    assert spearman(a, np.exp(a))[0] == pytest.approx(1.0)  # ranks only
    assert np.isnan(spearman(a, np.zeros_like(a))[0])
    # ties share their mean rank: [0, 0, 1] vs [1, 2, 3] -> ranks [1.5, 1.5, 3] vs [1, 2, 3]
    assert spearman(np.array([[0.0, 0, 1]]), np.array([[1.0, 2, 3]]))[0] == pytest.approx(
        np.corrcoef([1.5, 1.5, 3], [1, 2, 3])[0, 1])
    with pytest.raises(ValueError, match="same shape"):
        spearman(a, a[:, :2])


@settings(max_examples=20, deadline=None)
@given(arrays(np.float64, (2, 5, 5), elements=st.floats(-10, 10, allow_nan=False)))
def test_spearman_invariant_to_increasing_maps(a):
    r = spearman(a, 3 * a + a**3)  # strictly increasing, and exact for tiny values
    for v, row in zip(r, a, strict=True):
        if np.unique(row).size > 1:
            assert v == pytest.approx(1.0)


def _loop_ranks(x):
    """The ranks spearman used before scipy.stats.rankdata: 0-based, ties share their mean."""
    out = np.empty_like(x, dtype=np.float64)
    for idx in np.ndindex(x.shape[:-1]):
        row = x[idx]
        order = np.argsort(row, kind="stable")
        srt = row[order]
        first = np.r_[True, srt[1:] != srt[:-1]]
        starts = np.flatnonzero(first)
        ends = np.r_[starts[1:], len(row)]
        r = np.empty(len(row))
        r[order] = ((starts + ends - 1) / 2.0)[np.cumsum(first) - 1]
        out[idx] = r
    return out


def test_ranks_equal_the_former_loop_with_ties():
    from lucidax.attribute._evaluate import _rank

    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, size=(3, 4, 50)).astype(np.float32)  # many ties
    np.testing.assert_array_equal(_rank(x), _loop_ranks(x))
    y = rng.normal(size=(2, 7))
    np.testing.assert_array_equal(_rank(y), _loop_ranks(y))


def test_ssim_identical_and_different():
    rng = np.random.default_rng(0)
    a = rng.random((2, 16, 16))
    np.testing.assert_allclose(ssim(a, a), 1.0, atol=1e-9)
    np.testing.assert_allclose(ssim(a, 5 * a + 2), 1.0, atol=1e-9)  # min-max scaled
    assert (ssim(a, rng.random((2, 16, 16))) < 0.5).all()


def test_curves_rank_a_good_map_above_a_random_one(starter):
    model, data = starter
    x, y = data.images, data.labels["digit"]
    digit = data.digit_mask.astype(np.float32)
    rnd = np.asarray(random_map(model, model.params, x, y, key=3))
    d_good = deletion_curve(model, model.params, x, digit, y, steps=8)
    d_rand = deletion_curve(model, model.params, x, rnd, y, steps=8)
    assert d_good.scores.shape == (3, 9) and d_good.fractions[[0, -1]].tolist() == [0, 1]
    np.testing.assert_allclose(d_good.scores[:, 0], d_rand.scores[:, 0], rtol=1e-5)  # clean
    np.testing.assert_allclose(d_good.scores[:, -1], d_rand.scores[:, -1], rtol=1e-4)  # all gone
    assert d_good.mean_auc < d_rand.mean_auc
    i_good = insertion_curve(model, model.params, x, digit, y, steps=8)
    i_rand = insertion_curve(model, model.params, x, rnd, y, steps=8)
    assert i_good.mean_auc > i_rand.mean_auc
    np.testing.assert_allclose(i_good.scores[:, -1], d_good.scores[:, 0], rtol=1e-4)
    with pytest.raises(ValueError, match="maps must be"):
        deletion_curve(model, model.params, x, digit[:2], y)


def test_randomize_params_touches_only_the_named_groups(starter):
    model, _ = starter
    p = randomize_params(model.params, ("logits", "conv5"), key=0)
    for g in ("conv1", "conv2", "conv3", "conv4"):
        assert p[g] is model.params[g]
    for g in ("logits", "conv5"):
        old, new = np.asarray(model.params[g]["kernel"]), np.asarray(p[g]["kernel"])
        assert new.shape == old.shape and not np.allclose(new, old)
        assert new.std() == pytest.approx(old.std(), rel=0.2)
    with pytest.raises(ValueError, match="conv5"):
        randomize_params(model.params, ("conv6",), key=0)


def test_randomization_check_separates_model_dependent_maps(starter):
    model, data = starter
    x, y = data.images, data.labels["digit"]  # 3 images: shares programs with the others
    occ = functools.partial(occlusion, patch=16, stride=16)

    def ignores_model(model, params, images, target):  # an "edge detector": fails the check
        return np.abs(np.diff(np.asarray(images).mean(-1), axis=1, append=0))

    r = randomization_check(model, model.params, x, y, {"occ": occ, "edges": ignores_model},
                            groups=("logits", "conv5"))
    assert r.stages == ("logits", "conv5")
    assert r.spearman["occ"].shape == (2, 3)
    np.testing.assert_allclose(r.spearman["edges"], 1.0)
    np.testing.assert_allclose(r.ssim["edges"], 1.0, atol=1e-9)
    assert np.nanmean(r.spearman["occ"][-1]) < 0.9
    table = r.table()
    assert set(table) == {"occ", "edges"} and len(table["occ"]["spearman_abs"]) == 2


def test_run_attribute_writes_page_and_grids(tmp_path, starter):
    from lucidax.attribute import AttributeJob, run_attribute

    model, data = starter
    folder = tmp_path / "imgs"
    folder.mkdir()
    from lucidax._files import save_png

    save_png(folder / "<b>evil&.png", data.images[0])
    save_png(folder / "two.png", data.images[1])
    save_png(folder / "three.png", data.images[2])
    out = tmp_path / "out"
    job = AttributeJob(model, images=str(folder), methods="occlusion,random", out=out, n=3,
                       steps=8, options={"occlusion": {"patch": 16, "stride": 16}})
    run = run_attribute(job, progress=False)
    assert set(run.maps) == {"occlusion", "random"} and run.maps["occlusion"].shape == (3, 64, 64)
    assert set(run.metrics) == {"occlusion", "random"}
    for key in ("html", "figure", "json", "maps", "grid:occlusion", "grid:random"):
        assert os.path.getsize(run.files[key]) > 0
    page = (out / "index.html").read_text()
    assert "&lt;b&gt;evil&amp;.png" in page and "<b>evil" not in page
    assert 'src="occlusion.png"' in page and "deletion AUC" in page
    # a colour legend: the scaling, and a bar per colour scheme (occlusion's map is signed)
    assert "Colour legend" in page and "99th percentile" in page
    assert page.count("linear-gradient(") >= 2  # the legend section, and under the grid
    assert "(against)" in page and "red = evidence for the target class" in page
    import imageio.v3 as iio

    grid = iio.imread(run.files["grid:occlusion"])
    assert grid.shape[0] > 3 * 64 and grid.shape[1] > 2 * 64  # 3 rows x (image, map)
    with pytest.raises(ValueError, match="occlusion"):
        AttributeJob(model, images=str(folder), methods="oclusion", out=out)
    with pytest.raises(FileNotFoundError):
        run_attribute(AttributeJob(model, images=str(tmp_path / "nope"), methods="random",
                                   out=out))
    with pytest.raises(ValueError, match="--n"):  # checked when the job is made
        AttributeJob(model, n=0)


def test_run_attribute_of_a_job_with_a_model(tmp_path, starter):
    from lucidax.attribute import AttributeJob, run_attribute

    model, data = starter
    run = run_attribute(AttributeJob(model, images="builtin:starter:test", methods="random",
                                     n=2, evaluate=False, out=tmp_path / "o"), progress=False)
    assert set(run.maps) == {"random"} and os.path.exists(run.files["html"])


def test_page_escapes_every_text_and_quotes_every_link():
    """The page template (jinja2, autoescape): no text reaches the HTML unescaped."""
    from lucidax.attribute._report import page

    html = page("Attribution: <script>x</script>", {"images": "<b>evil&'.png"},
                ["occ<lusion"], {"occ<lusion": {"deletion_auc": 0.12345, "insertion_auc": 0.5,
                                                "seconds": 1.0}},
                {"grid:occ<lusion": "/o/a b&c.png", "figure": "/o/figure.png",
                 "json": "/o/results.json"},
                [("<i>img</i>", "cat's")], {"occ<lusion": True})
    assert "<script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html
    assert "<b>evil" not in html and "&lt;b&gt;evil&amp;&#39;.png" in html
    assert "<i>img" not in html and "&lt;i&gt;img&lt;/i&gt; &rarr; cat&#39;s" in html
    assert 'src="a%20b%26c.png"' in html and 'alt="occ&lt;lusion"' in html
    assert "<td>0.1235</td>" in html and '<a href="results.json">results.json</a>' in html
    assert "occ<lusion" not in html


def test_colour_legend_matches_the_overlay(tmp_path):
    """The legend strip is the overlay of the scaled values -1..1 (0..1 unsigned) on grey: its
    ends are blue / red (signed) and its middle shows the grey; figure.png has a colour-bar
    row under the images."""
    from lucidax.attribute import save_figure
    from lucidax.attribute._overlay import legend_css, legend_labels, legend_strip

    strip = legend_strip(True, width=5)[0]
    assert strip[0, 2] > strip[0, 0] and strip[-1, 0] > strip[-1, 2]  # blue ... red
    np.testing.assert_allclose(strip[2], 0.5, atol=1e-6)  # 0: the bare (grey) image
    unsigned = legend_strip(False, width=3)[0]
    np.testing.assert_allclose(unsigned[0], 0.5, atol=1e-6)
    assert legend_labels(True)[0].startswith("-1") and legend_labels(False)[2].startswith("1")
    assert legend_css(False, stops=3).count("%") == 3
    import imageio.v3 as iio

    img = np.full((2, 16, 16, 3), 0.5, np.float32)
    maps = {"a": np.random.default_rng(0).normal(size=(2, 16, 16))}
    save_figure(tmp_path / "f.png", img, maps, cell=1.0, dpi=50)
    save_figure(tmp_path / "g.png", img[:1], {"a": maps["a"][:1]}, cell=1.0, dpi=50)
    h2, h1 = iio.imread(tmp_path / "f.png").shape[0], iio.imread(tmp_path / "g.png").shape[0]
    assert h2 - h1 == 50  # one more row of images: the bar row is there in both
    assert h1 > 50 * 1.0 + 0.3 * 50  # taller than one row of images and the titles


def test_parse_options():
    from lucidax.attribute import parse_options

    assert parse_options(["occlusion.patch=16", "lime.baseline=blur", "occlusion.stride=8"]) == {
        "occlusion": {"patch": 16, "stride": 8}, "lime": {"baseline": "blur"}}
    with pytest.raises(ValueError, match="METHOD.OPTION=VALUE"):
        parse_options(["patch=16"])
    with pytest.raises(ValueError, match="occlusion"):
        parse_options(["oclusion.patch=3"])
