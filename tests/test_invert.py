"""Feature inversion and caricatures on the real, shipped starter model."""

import json
import os

import imageio.v3 as iio
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.metrics import structural_similarity

import lucidax.models as lm
from lucidax import visualize as viz
from lucidax.models import starter as starter_pkg
from lucidax.models._base import UnknownLayerError
from lucidax.visualize import _invert as inv
from lucidax.visualize import _render as render_mod
from lucidax.visualize import objectives as ob

LAYERS = ("conv1", "conv3", "conv5")


@pytest.fixture(scope="module")
def starter():
    return lm.load("starter")


@pytest.fixture(scope="module")
def photos():
    return starter_pkg.dataset(3, split="test", seed=0).images  # real photos/textures + digits


@pytest.fixture(scope="module")
def inverted(starter, photos):
    # 3 images x 3 layers = 9 rows, one compiled program
    return inv.invert(starter, starter.params, photos, LAYERS, steps=128, key=0)


@pytest.fixture(scope="module")
def noise_error(starter, photos):
    """Relative activation error of uniform-noise images to the photos' activations."""
    noise = np.random.default_rng(0).uniform(size=photos.shape).astype(np.float32)
    a = starter.apply(starter.params, photos, LAYERS)
    b = starter.apply(starter.params, noise, LAYERS)
    return {lyr: inv._relative_error(np.asarray(b[lyr]), np.asarray(a[lyr])) for lyr in LAYERS}


# --- similarity metrics -----------------------------------------------------------------------
def test_ssim_matches_scikit_image():
    rng = np.random.default_rng(1)
    a = rng.uniform(size=(2, 20, 24, 3))
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1)
    ours = inv.ssim(a, b)
    ref = [structural_similarity(x, y, channel_axis=-1, data_range=1.0)
           for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-8)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0.01, 0.5))
def test_psnr_and_ssim_laws(seed, sigma):
    rng = np.random.default_rng(seed)
    a = rng.uniform(size=(8, 8, 3))
    b = np.clip(a + rng.normal(0, sigma, a.shape), 0, 1)
    assert inv.ssim(a, a) == pytest.approx(1.0)
    assert inv.ssim(a, b) == pytest.approx(inv.ssim(b, a))
    assert inv.ssim(a, b) < 1.0
    mse = np.mean((a - b) ** 2)
    assert inv.psnr(a, b) == pytest.approx(-10 * np.log10(mse))


# --- the objective terms ------------------------------------------------------------------------
def test_activation_terms_at_the_target(starter, photos):
    acts = starter.apply(starter.params, photos, ("conv2",))
    t = np.asarray(acts["conv2"])
    l2 = ob.activation_match("conv2", t)(acts)
    cos = ob.activation_match("conv2", t, loss="cosine")(acts)
    dot = ob.activation_dot("conv2", t)(acts)
    np.testing.assert_allclose(l2, 0.0, atol=1e-6)
    np.testing.assert_allclose(cos, 1.0, atol=1e-4)
    np.testing.assert_allclose(dot, 1.0, atol=1e-4)  # normalized: 1 for the original itself
    # twice the activations: l2 = -1, cosine still 1, dot doubles (unbounded: caricatures)
    twice = {"conv2": 2 * acts["conv2"]}
    np.testing.assert_allclose(ob.activation_match("conv2", t)(twice), -1.0, rtol=1e-4)
    np.testing.assert_allclose(ob.activation_dot("conv2", t)(twice), 2.0, rtol=1e-4)
    w = np.asarray([1.0, 0.0, 2.0], np.float32)
    np.testing.assert_allclose(ob.activation_dot("conv2", t, weight=w)(twice), 2 * w, rtol=1e-4)


def test_activation_match_is_one_compiled_program_for_any_target(starter, photos):
    # different images (targets are pytree leaves) reuse the compiled render program
    # (the same program serves test_per_layer_... and test_run_invert_cli_...)
    inv.invert(starter, None, photos[:2], "conv2", steps=2)
    before = render_mod._TRACE_COUNT["chunk"]
    inv.invert(starter, None, photos[1:3], "conv2", steps=2, key=5)
    assert render_mod._TRACE_COUNT["chunk"] == before


def test_invalid_arguments_are_reported(starter, photos):
    t = np.zeros((1, 64, 64, 5), np.float32)
    with pytest.raises(ValueError, match="channels"):
        ob.activation_match("conv1", t).validate(starter)
    with pytest.raises(ValueError, match="loss"):
        ob.activation_match("conv1", np.zeros((1, 4, 4, 24)), loss="L1")
    with pytest.raises(ValueError, match="weight"):
        ob.activation_match("conv1", np.zeros((2, 4, 4, 24)), weight=[1.0])
    acts = {"conv1": jnp.zeros((1, 32, 32, 24))}
    with pytest.raises(ValueError, match="shape"):
        ob.activation_match("conv1", np.zeros((1, 64, 64, 24)))(acts)
    with pytest.raises(UnknownLayerError, match="conv1"):
        inv.invert(starter, None, photos[:1], "conv9")
    with pytest.raises(ValueError, match="images"):
        inv.invert(starter, None, photos[:1, ..., :2], "conv1")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        inv.invert(starter, None, photos[:1] * 255, "conv1")
    with pytest.raises(ValueError, match="steps"):
        inv.invert(starter, None, photos[:1], "conv1", steps=0)
    with pytest.raises(ValueError, match="loss"):
        inv.invert(starter, None, photos[:1], "conv1", loss="l3")
    with pytest.raises(ValueError, match="power"):
        inv.caricature(starter, None, photos[:1], "conv1", power=0)


# --- inversion quality on the starter model -----------------------------------------------------
def test_inversion_shapes_and_grid(inverted, photos):
    assert inverted.images.shape == (3, 3, 64, 64, 3)
    assert inverted.layers == LAYERS
    assert inverted.finite.all()
    assert 0.0 <= inverted.images.min() and inverted.images.max() <= 1.0
    grid = inverted.grid_images()
    assert grid.shape == (12, 64, 64, 3)
    np.testing.assert_array_equal(grid[4], photos[1])  # row 1 starts with the original
    np.testing.assert_array_equal(grid[6], inverted.images[1, 1])


def test_earliest_layer_reconstruction_is_close_to_the_original(inverted):
    # measured (128 steps): conv1 PSNR 15.9 / 29.0 / 37.8 dB, SSIM 0.34 / 0.96 / 0.99 (the
    # first image is a dark star field: conv1's ReLUs are all off in the black sky, so it is
    # not kept and cannot be reconstructed)
    conv1 = inverted.layers.index("conv1")
    assert inverted.psnr[:, conv1].mean() > 22.0, inverted.psnr
    assert inverted.ssim[:, conv1].mean() > 0.6, inverted.ssim
    assert inverted.ssim[:, conv1].max() > 0.9, inverted.ssim
    # scikit-image agrees with the reported SSIM
    ref = structural_similarity(inverted.images[0, conv1], inverted.originals[0],
                                channel_axis=-1, data_range=1.0)
    assert inverted.ssim[0, conv1] == pytest.approx(ref, abs=1e-5)


def test_similarity_decreases_with_depth(inverted):
    psnr, ssim = inverted.psnr.mean(0), inverted.ssim.mean(0)
    # measured: PSNR 27.5 / 12.3 / 11.4 dB, SSIM 0.76 / 0.074 / 0.043 for conv1 / conv3 / conv5
    assert psnr[0] > psnr[1] + 5 and psnr[0] > psnr[2] + 5, psnr
    assert ssim[0] > ssim[1] >= ssim[2] - 0.03, ssim
    assert np.corrcoef(np.arange(3), ssim)[0, 1] < 0


def test_reconstruction_activations_match_far_better_than_noise(inverted, noise_error):
    for j, lyr in enumerate(LAYERS):
        ours = inverted.act_error[:, j]
        assert ours.max() < 0.2 * noise_error[lyr].min(), (lyr, ours, noise_error[lyr])


def test_per_layer_renders_give_the_same_images(starter, photos):
    # images x layers in one render == one render per layer (row i * L + l keeps its key)
    kw = dict(steps=2, key=3)
    fused = inv.invert(starter, None, photos[:2], ("conv1", "conv2"), per_layer=False, **kw)
    split = inv.invert(starter, None, photos[:2], ("conv1", "conv2"), per_layer=True, **kw)
    assert len(fused.renders) == 1 and len(split.renders) == 2
    np.testing.assert_allclose(fused.images, split.images, atol=2e-3)


def test_caricature_exaggerates_the_layers_features(starter, photos):
    res = inv.caricature(starter, None, photos[:2], "conv3", steps=64, key=0)
    assert res.images.shape == (2, 1, 64, 64, 3) and res.finite.all()
    # the original scores exactly 1 (see test_activation_terms_at_the_target); measured 3.9, 1.6
    # (objective_values include the total-variation penalty)
    assert (res.objective_values > 1.3).all(), res.objective_values
    a = starter.apply(starter.params, res.images[:, 0], ("conv3",))["conv3"]
    t = starter.apply(starter.params, photos[:2], ("conv3",))["conv3"]
    dots = np.sum(np.asarray(a) * np.asarray(t), axis=(1, 2, 3))
    ratio = dots / np.sum(np.asarray(t) ** 2, axis=(1, 2, 3))
    assert (ratio > 1.3).all(), ratio  # measured 4.7, 1.8
    # what the caricature reports is that gain (and the cosine), not an inversion's error
    np.testing.assert_allclose(res.act_gain[:, 0], ratio, rtol=1e-4)
    cos = dots / (np.linalg.norm(np.asarray(a).reshape(2, -1), axis=1)
                  * np.linalg.norm(np.asarray(t).reshape(2, -1), axis=1))
    np.testing.assert_allclose(res.act_cosine[:, 0], cos, rtol=1e-4)
    m = res.metrics()
    assert "act_error" not in m and "act_error" not in m["per_layer"]["conv3"]
    assert m["per_layer"]["conv3"]["act_gain"] == pytest.approx(float(np.mean(ratio)), rel=1e-4)
    assert np.asarray(m["act_cosine"]).shape == (2, 1)
    table = inv._table(res)
    assert "act err" not in table and "act gain" in table and "act cos" in table


def test_caricature_gain_is_nan_for_a_silent_original():
    gain, cos = inv._gain_and_cosine(np.ones((2, 3)), np.array([[0.0, 0, 0], [1, 2, 2]]), 1.0)
    assert np.isnan(gain[0]) and np.isnan(cos[0])
    assert gain[1] == pytest.approx(5 / 9) and cos[1] == pytest.approx(5 / (3 * 3 ** 0.5))
    squared, _ = inv._gain_and_cosine(np.ones((1, 2)), np.array([[1.0, -2.0]]), 2.0)
    assert squared[0] == pytest.approx((1 - 4) / (1 + 8))  # t = sign(o) o^2


def test_labeled_grid_headers_row_labels_and_crisp_tiles():
    from lucidax._files import image_grid
    from lucidax.visualize._labeled_grid import labeled_grid

    rng = np.random.default_rng(0)
    tiles = rng.uniform(size=(6, 16, 16, 3)).astype(np.float32)
    g = labeled_grid(tiles, cols=3, col_labels=["original", "conv1", "conv3"],
                     row_labels=["cat", "dog"], scale=4)
    bare = np.repeat(np.repeat(image_grid(tiles, cols=3), 4, 0), 4, 1)
    assert g.top > 0 and g.left > 0 and g.image.shape == (bare.shape[0] + g.top,
                                                          bare.shape[1] + g.left, 3)
    np.testing.assert_array_equal(g.image[g.top:, g.left:],
                                  np.round(bare * 255).astype(np.uint8))  # nearest: exact
    assert g.col_labels == ("original", "conv1", "conv3") and g.row_labels == ("cat", "dog")
    assert not g.vertical_headers
    assert (g.image[:g.top, g.left:] < 128).any()  # text drawn in the header band
    assert (g.image[g.top:, :g.left] < 128).any()  # and in the row-label band
    narrow = labeled_grid(tiles, cols=3, col_labels=["original", "blocks.4.conv_pw", "x"],
                          row_labels=["a" * 60, "b"])
    assert narrow.vertical_headers and narrow.top > narrow.cell[0]
    assert len(narrow.row_labels[0]) < 60 and "..." in narrow.row_labels[0]
    assert labeled_grid(tiles, cols=3).image.shape == (*bare.shape[:2] // np.array(4), 3)
    with pytest.raises(ValueError, match="row labels"):
        labeled_grid(tiles, cols=3, row_labels=["a"])


# --- files and the command-line runner ----------------------------------------------------------
def test_run_invert_writes_grid_images_and_metrics(starter, photos, tmp_path):
    photo = tmp_path / "photo0.png"
    iio.imwrite(photo, np.round(photos[0] * 255).astype(np.uint8))
    wide = tmp_path / "wide.png"  # not square: centre-cropped and resized
    iio.imwrite(wide, np.zeros((40, 100, 3), np.uint8))
    files = [str(photo), str(wide)]
    run = viz.run_invert(viz.InvertJob(starter, layers="conv2", images=files,
                                       out=tmp_path / "out", steps=2, scale=2), progress=False)
    grid = iio.imread(run.files["grid"])
    bare = 2 * (2 * 64 + 3 * 2)  # 2 rows, 2 columns, enlarged twice
    assert grid.shape[0] > bare and grid.shape[1] > bare  # plus the header / row-label bands
    top, left = grid.shape[0] - bare, grid.shape[1] - bare
    assert (grid[:top, left:] < 128).any() and (grid[top:, :left] < 128).any()  # labels
    np.testing.assert_array_equal(grid[top + 4:top + 4 + 128:2, left + 4:left + 4 + 128:2],
                                  np.round(photos[0] * 255).astype(np.uint8))  # crisp original
    for stem in ("photo0", "wide"):
        for name in ("original", "conv2"):
            assert os.path.isfile(tmp_path / "out" / stem / f"{name}.png")
    original = iio.imread(tmp_path / "out" / "photo0" / "original.png")
    np.testing.assert_array_equal(original, np.round(photos[0] * 255).astype(np.uint8))
    np.testing.assert_array_equal(iio.imread(tmp_path / "out" / "wide" / "original.png"), 0)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["layers"] == ["conv2"] and metrics["mode"] == "invert"
    assert np.asarray(metrics["psnr"]).shape == (2, 1)
    assert set(metrics["per_layer"]) == {"conv2"}
    assert "conv2" in run.table
    with pytest.raises(ValueError, match="mode"):
        viz.run_invert(viz.InvertJob(starter, layers="conv1", images=files, out=tmp_path,
                                     mode="dream"))
    with pytest.raises(FileNotFoundError):
        viz.run_invert(viz.InvertJob(starter, layers="conv1",
                                     images=[str(tmp_path / "nope.png")], out=tmp_path))
