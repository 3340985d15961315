"""Network dissection: thresholds (exact radix select), IoU on hand-made masks, constructed
detector units, concept sources (arrays, starter, folders), files and the CLI runner."""

from __future__ import annotations

import csv
import dataclasses
import json
import os

import imageio.v3 as iio
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lucidax.models as lm
from lucidax.probes import (
    ArrayConcepts,
    DissectJob,
    FolderConcepts,
    StarterConcepts,
    concept_colors,
    dissect,
    format_dissection,
    iou_counts,
    plot_dissection,
    run_dissect,
    starter_concept_masks,
    starter_concepts,
    unit_thresholds,
)
from lucidax.probes._dissect import _key_to_float, _ordered_key

SIDE = 32


# ----------------------------------------------------------------------------------------------
# helpers: models whose units are known functions of the pixels
# ----------------------------------------------------------------------------------------------
def _identity_model(side: int, channels: int = 3) -> lm.Model:
    """Layer "id" = the image itself (each channel a unit, full resolution)."""

    def fn(p, x, layers):
        return {"id": x * p["s"]}

    return lm.wrap(fn, {"s": jnp.float32(1.0)}, layer_names=["id"], name="identity",
                   input_spec=lm.InputSpec(side=side, channels=channels))


def _constructed_model(side: int) -> lm.Model:
    """Layer "feat" (half resolution): unit 0 = redness, unit 1 = blueness, unit 2 = a
    position/pixel hash (noise); layer "logits" is dense."""

    def fn(p, x, layers):
        r, g, b = x[..., 0], x[..., 1], x[..., 2]
        red = jax.nn.relu(r - jnp.maximum(g, b))
        blue = jax.nn.relu(b - jnp.maximum(r, g))
        noise = jnp.sin(p["f"] * (r + 2.0 * g + 3.0 * b)) ** 2
        f = jnp.stack([red, blue, noise], axis=-1)
        f = f.reshape(f.shape[0], f.shape[1] // 2, 2, f.shape[2] // 2, 2, 3).mean(axis=(2, 4))
        return {"feat": f, "logits": f.mean(axis=(1, 2)) @ p["w"]}

    params = {"f": jnp.float32(997.0), "w": jnp.ones((3, 2), jnp.float32)}
    return lm.wrap(fn, params, layer_names=["feat", "logits"], name="constructed",
                   input_spec=lm.InputSpec(side=side))


def _squares(n: int, side: int = SIDE, seed: int = 0):
    """Gray noise images with one red and one blue square each; masks red-square,
    blue-square, left-half."""
    rng = np.random.default_rng(seed)
    gray = rng.uniform(0.2, 0.8, size=(n, side, side, 1))
    images = np.repeat(gray, 3, axis=-1).astype(np.float32)
    masks = np.zeros((n, side, side, 3), bool)
    masks[:, :, : side // 2, 2] = True
    for i in range(n):
        for ch, color in ((0, (0.9, 0.1, 0.1)), (1, (0.1, 0.1, 0.9))):
            s = int(rng.integers(4, 7))
            while True:
                y, x = rng.integers(0, side - s, size=2)
                if not masks[i, y : y + s, x : x + s, :2].any():
                    break
            images[i, y : y + s, x : x + s] = color
            masks[i, y : y + s, x : x + s, ch] = True
    return images, masks, ("square=red", "square=blue", "left-half")


@pytest.fixture(scope="module")
def constructed():
    return _constructed_model(SIDE)


@pytest.fixture(scope="module")
def squares():
    return _squares(24)


# ----------------------------------------------------------------------------------------------
# thresholds
# ----------------------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=False,
                          width=32), min_size=16,
                max_size=16))
def test_ordered_key_preserves_order_and_round_trips(values):
    x = np.asarray(values, np.float32)
    key = np.asarray(_ordered_key(jnp.asarray(x)))
    order = np.argsort(x, kind="stable")
    assert np.all(np.diff(key[order].astype(np.int64)) >= 0)  # monotone
    back = _key_to_float(key)
    np.testing.assert_array_equal(back, x)  # exact round trip (-0.0 == 0.0)


def test_thresholds_equal_numpy_quantile():
    rng = np.random.default_rng(0)
    imgs = rng.normal(size=(37, 8, 8, 3)).astype(np.float32)
    imgs[..., 1] = np.round(imgs[..., 1])  # heavy ties
    imgs[..., 2] = np.maximum(imgs[..., 2], 0)  # ReLU-like: half zeros
    model = _identity_model(8)
    src = ArrayConcepts(imgs, imgs[..., :1] > 1, ["a"])
    flat = imgs.reshape(-1, 3)
    for q in (0.005, 0.1, 0.7):
        ref = np.quantile(flat, 1 - q, axis=0, method="inverted_cdf")
        exact = unit_thresholds(model, src, ["id"], quantile=q, passes=3, batch_size=16)["id"]
        np.testing.assert_array_equal(exact, ref)
        assert np.all((flat > exact).mean(axis=0) <= q)
        two = unit_thresholds(model, src, ["id"], quantile=q, passes=2, batch_size=16)["id"]
        assert np.all(two <= ref)
        assert np.all(ref - two <= 2.0**-15 * np.abs(ref) + 1e-30)
        one = unit_thresholds(model, src, ["id"], quantile=q, passes=1, batch_size=16)["id"]
        assert np.all(one <= two)
        assert np.all(ref - one <= 2.0**-3 * np.abs(ref) + 1e-30)


# ----------------------------------------------------------------------------------------------
# IoU on hand-made masks
# ----------------------------------------------------------------------------------------------
def _hand_made():
    m = np.zeros((2, 2, 3, 1), bool)
    m[0, 0, 0] = m[0, 0, 1] = True  # image 0: unit fires on (0,0), (0,1)
    m[1, 1, 2] = True  # image 1: unit fires on (1,2)
    c = np.zeros((2, 2, 3, 2), bool)
    c[0, 0, 0, 0] = c[0, 1, 0, 0] = True  # concept A in image 0: (0,0), (1,0)
    c[1, 1, 2, 0] = True  # concept A in image 1: (1,2)
    c[1, 0, :, 1] = True  # concept B in image 1: the top row
    return m, c


def test_iou_counts_hand_made():
    m, c = _hand_made()
    inter, union, iou = iou_counts(m, c)
    # A: |M&A| = 1 + 1, |M|A| = 3 + 1; B: |M&B| = 0, |M|B| = 2 (image 0) + 4 (image 1)
    np.testing.assert_array_equal(inter, [[2, 0]])
    np.testing.assert_array_equal(union, [[4, 6]])
    np.testing.assert_allclose(iou, [[0.5, 0.0]])
    # only labeled images count: A labeled in image 0 only, B in image 1 only
    inter, union, iou = iou_counts(m, c, [[True, False], [False, True]])
    np.testing.assert_array_equal(inter, [[1, 0]])
    np.testing.assert_array_equal(union, [[3, 4]])
    np.testing.assert_allclose(iou, [[1 / 3, 0.0]])
    # empty union -> 0
    assert iou_counts(np.zeros((1, 2, 2, 1)), np.zeros((1, 2, 2, 1)))[2][0, 0] == 0.0


def test_dissect_pipeline_reproduces_hand_made_iou():
    """The jitted pass gives the hand-computed IoUs when the unit's map is the mask itself."""
    m, c = _hand_made()
    images = np.repeat(m.astype(np.float32), 3, axis=-1)  # every unit = the hand-made mask
    model = _identity_model(3)
    # 3 of 12 values are 1: any quantile >= 0.25 puts the threshold at 0 -> M = (act > 0)
    res = dissect(model, ArrayConcepts(images, c, ["A", "B"]), layers="id", quantile=0.3,
                  batch_size=2)
    np.testing.assert_array_equal(res.thresholds["id"], [0, 0, 0])
    np.testing.assert_allclose(res.iou["id"], [[0.5, 0.0]] * 3)
    lab = ArrayConcepts(images, c, ["A", "B"], labeled=[[True, False], [False, True]])
    res = dissect(model, lab, layers="id", quantile=0.3, batch_size=2)
    np.testing.assert_allclose(res.iou["id"][0], [1 / 3, 0.0])
    assert res.unit("id", 0).concept == "A" and res.unit("id", 0).detector
    np.testing.assert_allclose(res.unit("id", 0).coverage, 3 / 12)


# ----------------------------------------------------------------------------------------------
# constructed detectors
# ----------------------------------------------------------------------------------------------
def test_constructed_units_are_found(constructed, squares, tmp_path):
    images, masks, concepts = squares
    # batch 10 over 24 images: the zero-padded last batch must not count
    res = dissect(constructed, ArrayConcepts(images, masks, concepts), batch_size=10)
    assert res.layers == ("feat",)
    assert "logits" in res.skipped_layers and "spatial" in res.skipped_layers["logits"]
    red, blue, noise = (res.unit("feat", k) for k in range(3))
    assert red.concept == "square=red" and red.detector and red.iou >= 0.04
    assert blue.concept == "square=blue" and blue.detector and blue.iou >= 0.04
    assert not noise.detector and noise.iou < 0.04
    # the red unit barely overlaps the blue square and vice versa
    iou = res.iou["feat"]
    assert iou[0, 1] < 0.01 and iou[1, 0] < 0.01
    assert res.summary() == {"feat": {"square=blue": 1, "square=red": 1}}
    assert [u.unit for u in res.detectors()] == sorted([0, 1], key=lambda k: -iou[k].max())
    # the same data with another batch size gives identical counts
    again = dissect(constructed, ArrayConcepts(images, masks, concepts), batch_size=24)
    np.testing.assert_array_equal(again.iou["feat"], res.iou["feat"])
    # a stricter IoU threshold turns detectors off
    strict = dissect(constructed, ArrayConcepts(images, masks, concepts), batch_size=24,
                     iou_threshold=0.99)
    assert strict.detectors() == ()
    assert strict.summary() == {"feat": {}}
    assert os.path.getsize(plot_dissection(strict, tmp_path / "none.png")) > 0  # empty plot
    # two categories (a colour one among them) in one plot
    mixed = dataclasses.replace(res, categories=("square",) * (len(res.concepts) - 1)
                                + ("color",))
    assert os.path.getsize(plot_dissection(mixed, tmp_path / "mixed.png")) > 0
    text = format_dissection(res)
    assert "square=red" in text and "skipped logits" in text


def test_redness_unit_detects_red_strokes_on_starter_data():
    model = _constructed_model(64)
    res = dissect(model, StarterConcepts(48, seed=1), layers="feat", batch_size=24)
    red, blue, noise = (res.unit("feat", k) for k in range(3))
    assert red.concept == "color=red" and red.detector, red
    assert blue.concept == "color=blue" and blue.detector, blue
    assert not noise.detector


def test_concept_colors_follow_the_category():
    """The starter's concepts: a colour family per category, so digit=3 and color=red (and
    digit=2 / color=green, ...) never look alike; concepts of a category are distinct shades
    of one hue; colour concepts are greys (no hue to contradict their names)."""
    import colorsys

    concepts, categories = starter_concepts()
    colors, family = concept_colors(concepts, categories)
    assert set(colors) == set(concepts) and set(family) == set(categories)
    assert len(set(family.values())) == len(family)  # categories: different colours
    by_cat: dict[str, list] = {}
    for c, k in zip(concepts, categories, strict=True):
        by_cat.setdefault(k, []).append(np.asarray(colors[c][:3]))
    for k, cs in by_cat.items():
        assert len({tuple(c) for c in cs}) == len(cs), k  # concepts: different shades
        others = [c for kk, v in by_cat.items() if kk != k for c in v]
        # every pair of concepts of different categories differs clearly (in RGB)
        assert min(np.abs(a - b).max() for a in cs for b in others) > 0.08, k
    hues = [colorsys.rgb_to_hsv(*c)[0] for c in by_cat["digit"]]
    assert max(hues) - min(hues) < 0.08  # one hue family
    assert all(np.ptp(c) < 0.02 for c in by_cat["color"])  # greys
    red, three = np.asarray(colors["color=red"][:3]), np.asarray(colors["digit=3"][:3])
    assert np.abs(red - three).max() > 0.3
    again, _ = concept_colors(concepts, categories)  # deterministic
    assert again == colors
    with pytest.raises(ValueError, match="categories"):
        concept_colors(concepts, categories[:-1])


def test_starter_concepts_masks():
    from lucidax.models import starter

    concepts, cats = starter_concepts()
    assert len(concepts) == 27 and concepts[0] == "stroke"
    assert set(cats) == {"stroke", "digit", "color", "background"}
    d = starter.dataset(6, split="test", seed=3)
    m = starter_concept_masks(d)
    assert m.shape == (6, 64, 64, 27)
    np.testing.assert_array_equal(m[..., 0], d.digit_mask)
    for i in range(6):
        digit, color, back = (d.labels[f][i] for f in ("digit", "color", "background"))
        on = {0, 1 + digit, 11 + color, 19 + back}
        for c in range(27):
            assert m[i, ..., c].any() == (c in on), (i, concepts[c])
        np.testing.assert_array_equal(m[i, ..., 19 + back], d.background_mask[i])


def test_layer_errors(constructed, squares):
    images, masks, concepts = squares
    src = ArrayConcepts(images, masks, concepts)
    with pytest.raises(ValueError, match="spatial map.*feat"):
        dissect(constructed, src, layers="logits")
    with pytest.raises(lm.UnknownLayerError, match="feat"):
        dissect(constructed, src, layers="conv9")
    with pytest.raises(ValueError, match="quantile"):
        dissect(constructed, src, quantile=0.0)
    with pytest.raises(ValueError, match="quantile_passes"):
        dissect(constructed, src, quantile_passes=4)
    with pytest.raises(ValueError, match="masks must be"):
        ArrayConcepts(images, masks[..., :2], concepts)


# ----------------------------------------------------------------------------------------------
# folders, files, CLI runner
# ----------------------------------------------------------------------------------------------
def _write_folder(root, images, masks, concepts, drop=()):
    os.makedirs(root / "images")
    for i, img in enumerate(images):
        iio.imwrite(root / "images" / f"im{i:02d}.png", np.round(img * 255).astype(np.uint8))
        for c, name in enumerate(concepts):
            if (i, name) in drop:
                continue
            os.makedirs(root / "masks" / name, exist_ok=True)
            iio.imwrite(root / "masks" / name / f"im{i:02d}.png",
                        masks[i, ..., c].astype(np.uint8) * 255)


def test_folder_concepts_and_cli_runner(tmp_path, constructed, squares):
    images, masks, concepts = squares
    images, masks = images[:8], masks[:8]
    root = tmp_path / "data"
    # image 0 has no left-half mask (not labeled); image 1 no blue mask (still labeled for
    # category "square" through its red mask)
    _write_folder(root, images, masks, concepts, drop={(0, "left-half"), (1, "square=blue")})
    src = FolderConcepts(root, size=SIDE)
    assert src.concepts == ("left-half", "square=blue", "square=red")
    assert src.categories == ("left-half", "square", "square")
    assert src.n == 8
    assert not src.labeled[0, 0] and src.labeled[1].all() and src.labeled[2:].all()
    (batch,) = list(src.batches(8))
    np.testing.assert_array_equal(batch.masks[..., 2], masks[..., 0])
    np.testing.assert_array_equal(batch.masks[1:, ..., 0], masks[1:, ..., 2])
    assert not batch.masks[1, ..., 1].any()  # missing file -> empty mask
    np.testing.assert_allclose(batch.images, np.round(images * 255) / 255, atol=1e-6)

    out = tmp_path / "out"
    run = run_dissect(DissectJob(constructed, data=root, out=out, batch_size=8), progress=False)
    red = run.result.unit("feat", 0)
    assert red.concept == "square=red" and red.detector
    for kind in ("json", "csv", "npz", "png", "svg"):
        assert os.path.getsize(run.files[kind]) > 0, kind
    with open(run.files["json"]) as f:
        doc = json.load(f)
    assert doc["summary"]["feat"]["square=red"] == 1
    assert doc["skipped_layers"] == {"logits": "dense layer: no spatial map to segment"}
    with open(run.files["csv"]) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and rows[0]["concept"] == "square=red"
    with np.load(run.files["npz"]) as z:
        np.testing.assert_allclose(z["iou/feat"], run.result.iou["feat"])
    assert iio.imread(run.files["png"]).shape[0] > 100
    assert "square=red" in run.table


def test_cli_runner_data_errors(tmp_path, constructed):
    with pytest.raises(ValueError, match="builtin:starter"):
        run_dissect(DissectJob(constructed, data="builtin:other", out=tmp_path), progress=False)
    with pytest.raises(FileNotFoundError, match="images/"):
        run_dissect(DissectJob(constructed, data=tmp_path / "nope", out=tmp_path),
                    progress=False)
    os.makedirs(tmp_path / "empty" / "images")
    with pytest.raises(FileNotFoundError, match="masks"):
        FolderConcepts(tmp_path / "empty", size=SIDE)
    with pytest.raises(ValueError, match="split"):
        StarterConcepts(8, split="val")


def test_starter_model_conv1(tmp_path):
    run = run_dissect(DissectJob("starter", layers="conv1", n=16, batch_size=16, out=tmp_path),
                      progress=False)
    res = run.result
    assert res.layers == ("conv1",) and len(res.units) == 24
    assert res.n_images == 16 and len(res.concepts) == 27
    # conv1 is full resolution (upsampling is the identity): a unit's mask is its top
    # floor(q * n) + 1 positions (plus the rare ties within the comparison slack)
    fired = np.asarray([u.coverage for u in res.units]) * (16 * 64 * 64)
    assert np.all(fired >= 328) and np.median(fired) == 328
    assert sum(res.summary()["conv1"].values()) == len(res.detectors("conv1"))


def test_dissection_compiles_once_per_architecture(constructed, squares, monkeypatch):
    """``Model.program``: a second dissection and one of a ``with_params`` copy trace nothing
    new (threshold passes and the IoU pass)."""
    import lucidax.probes._dissect as dm

    traces = []
    real = dm.fast_apply

    def counting(*a, **k):
        traces.append(1)
        return real(*a, **k)

    monkeypatch.setattr(dm, "fast_apply", counting)
    images, masks, concepts = squares
    src = ArrayConcepts(images, masks, concepts)
    first = dissect(constructed, src, batch_size=5)
    n = len(traces)
    assert n >= 4  # three threshold passes and the IoU pass
    dissect(constructed, src, batch_size=5)
    copy = constructed.with_params(jax.tree.map(lambda a: a * 0.5, constructed.params))
    halved = dissect(copy, src, batch_size=5)
    assert len(traces) == n
    assert [u.threshold for u in first.units] != [u.threshold for u in halved.units]
