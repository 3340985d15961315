"""Occlusion, LIME, KernelSHAP and superpixels: exact answers on linear models, sane maps on
the starter model."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lucidax.models as lm
from lucidax.attribute import (
    METHODS,
    get_method,
    kernel_shap,
    kernel_shap_values,
    lime,
    lime_coefficients,
    method_names,
    occlusion,
    patch_masks,
    superpixels,
)
from lucidax.models._base import InputSpec

SIDE = 8


@pytest.fixture(scope="module")
def linear():
    """logits_k = sum_{h,w,c} W[h,w,c,k] * x[h,w,c]: every attribution has a closed form."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(SIDE, SIDE, 3, 4)).astype(np.float32)

    def fn(p, x, layers):
        return {"logits": jnp.einsum("nhwc,hwck->nk", x, p["w"])}

    model = lm.wrap(fn, {"w": w}, input_spec=InputSpec(side=SIDE, channels=3),
                    layer_names=["logits"], logits_layer="logits", name="linear")
    x = rng.random((3, SIDE, SIDE, 3)).astype(np.float32)
    return model, w, x


@pytest.fixture(scope="module")
def starter():
    from lucidax.models import starter as st_

    model = lm.load("starter")
    data = st_.dataset(2, split="test", seed=0)
    return model, data


def test_patch_masks_cover_every_pixel():
    m = patch_masks(10, 7, patch=4, stride=3)
    assert m.shape[1:] == (10, 7)
    assert (m.sum(0) >= 1).all()
    assert set(np.unique(m.sum((1, 2)))) == {16.0}
    with pytest.raises(ValueError, match="larger"):
        patch_masks(4, 4, patch=5)
    with pytest.raises(ValueError, match="stride"):
        patch_masks(8, 8, patch=2, stride=0)


def test_occlusion_pixel_patch_is_gradient_times_input(linear):
    model, w, x = linear
    maps = np.asarray(occlusion(model, model.params, x, [0, 1, 2], patch=1, stride=1,
                                baseline=0.0))
    expect = np.stack([(x[i] * w[..., i]).sum(-1) for i in range(3)])
    np.testing.assert_allclose(maps, expect, rtol=1e-4, atol=1e-4)


@settings(max_examples=5, deadline=None)
@given(base=st.floats(-1.0, 1.0, allow_nan=False))
def test_occlusion_linear_model_any_baseline(linear, base):
    model, w, x = linear
    maps = np.asarray(occlusion(model, model.params, x, 2, patch=1, stride=1, baseline=base))
    np.testing.assert_allclose(maps, ((x - base) * w[..., 2]).sum(-1), rtol=1e-3, atol=1e-3)


def test_perturbation_methods_reuse_their_programs(linear):
    """Occlusion, LIME, KernelSHAP, the curves and PGD compile one program of the model each:
    a second call (other images, classes) and a with_params copy reuse it."""
    from lucidax.attribute import deletion_curve, pgd

    model, w, x = linear
    calls = {
        "occlusion": lambda m, im, t: occlusion(m, m.params, im, t, patch=4),
        "lime": lambda m, im, t: lime(m, m.params, im, t, samples=16, superpixel="grid"),
        "kernelshap": lambda m, im, t: kernel_shap(m, m.params, im, t, samples=16,
                                                   superpixel="grid"),
        "curve": lambda m, im, t: deletion_curve(m, m.params, im, im[..., 0], t, steps=4),
        "pgd": lambda m, im, t: pgd(m, m.params, im, t, eps=0.1, steps=2),
    }
    copy = model.with_params({"w": -w})

    def programs(m):
        return {k: f for k, f in m._programs.items() if k[0] == "attribute"}

    for name, call in calls.items():
        call(model, x, 1)
        before = programs(model)
        sizes = {k: f._cache_size() for k, f in before.items()}
        call(model, 1 - x, [0, 1, 2])
        call(copy, x, 3)
        after = programs(copy)
        assert after.keys() == before.keys(), name  # shared by the copy, no new program
        assert {k: f._cache_size() for k, f in after.items()} == sizes, name  # no new trace


def test_occlusion_patch_average_matches_loop(linear):
    model, w, x = linear
    patch, stride = 3, 2
    maps = np.asarray(occlusion(model, model.params, x[:1], 1, patch=patch, stride=stride,
                                baseline=0.0))
    contrib = (x[0] * w[..., 1]).sum(-1)
    masks = patch_masks(SIDE, SIDE, patch=patch, stride=stride)
    drop = np.array([(contrib * m).sum() for m in masks])
    expect = np.einsum("p,phw->hw", drop, masks) / masks.sum(0)
    np.testing.assert_allclose(maps[0], expect, rtol=1e-4, atol=1e-4)


def test_superpixels_grid_and_slic():
    rng = np.random.default_rng(1)
    imgs = rng.random((2, 16, 16, 3)).astype(np.float32)
    g = superpixels(imgs, method="grid", n_segments=16)
    assert g.shape == (2, 16, 16) and g.dtype == np.int32
    assert set(np.unique(g[0])) == set(range(16))
    smooth = np.repeat(np.repeat(imgs[:, ::4, ::4], 4, 1), 4, 2)  # 4x4 colour blocks
    s = superpixels(smooth, method="slic", n_segments=16)
    for lab in s:
        assert lab.min() == 0 and len(np.unique(lab)) == lab.max() + 1 >= 4
    with pytest.raises(ValueError, match="grid"):
        superpixels(imgs, method="quickshift")


def _segment_sums(x, w, seg, k):
    return np.array([[(x[i] * w[..., k]).sum(-1)[seg[i] == j].sum() for j in range(seg.max() + 1)]
                     for i in range(len(x))])


def test_kernel_shap_recovers_linear_coefficients(linear):
    """Per image its own class and number of superpixels (4, 9, 16): the Shapley values of a
    score linear in the superpixel indicators are its coefficients, recovered exactly."""
    model, w, x = linear
    seg = np.stack([superpixels(x[:1], method="grid", n_segments=n)[0] for n in (4, 9, 16)])
    phi, f0, _ = kernel_shap_values(model, model.params, x, [0, 1, 2], segments=seg,
                                    samples=64, baseline=0.0)
    phi = np.asarray(phi)
    np.testing.assert_allclose(np.asarray(f0), 0.0, atol=1e-5)  # baseline 0 -> logit 0
    for i in range(3):
        expect = _segment_sums(x[i : i + 1], w, seg[i : i + 1], i)[0]
        np.testing.assert_allclose(phi[i, : len(expect)], expect, atol=2e-3)
        assert np.all(phi[i, len(expect):] == 0)
        # efficiency: the values sum to f(image) - f(baseline)
        full = np.einsum("hwc,hwc->", x[i], w[..., i])
        assert phi[i].sum() == pytest.approx(full, rel=1e-4, abs=1e-4)


def test_lime_recovers_linear_coefficients(linear):
    model, w, x = linear
    seg = superpixels(x, method="grid", n_segments=4)
    coef, _, _ = lime_coefficients(model, model.params, x, 0, segments=seg, samples=32,
                                   baseline=0.0, ridge=1e-6)
    np.testing.assert_allclose(np.asarray(coef), _segment_sums(x, w, seg, 0), atol=2e-3)
    maps = np.asarray(lime(model, model.params, x, 0, segments=seg, samples=32, baseline=0.0,
                           ridge=1e-6))
    np.testing.assert_allclose(maps[0], np.asarray(coef)[0][seg[0]], atol=1e-5)


def test_bad_targets_are_user_errors(linear):
    model, _, x = linear
    with pytest.raises(ValueError, match="out of range"):
        occlusion(model, model.params, x, 7)
    with pytest.raises(ValueError, match="one class per image"):
        occlusion(model, model.params, x, [0, 1])
    with pytest.raises(ValueError, match="baseline"):
        occlusion(model, model.params, x, 0, baseline="grey")


def test_registry_lists_and_explains():
    assert {"occlusion", "lime", "kernelshap", "random"} <= set(method_names())
    assert METHODS["occlusion"] is occlusion and get_method("kernelshap") is kernel_shap
    with pytest.raises(ValueError, match="occlusion"):
        get_method("oclusion")


@pytest.mark.parametrize("method", ["occlusion", "lime"])  # kernelshap: exact test above
def test_starter_maps_point_at_the_digit(starter, method):
    model, data = starter
    fn = METHODS[method]
    opts = {"occlusion": {"patch": 8, "stride": 8}}.get(method, {"samples": 64})
    maps = np.asarray(fn(model, model.params, data.images, data.labels["digit"], **opts))
    assert maps.shape == (2, 64, 64) and np.isfinite(maps).all()
    for i in range(2):
        on = maps[i][data.digit_mask[i]].mean()
        off = maps[i][~data.digit_mask[i]].mean()
        assert on > off, (method, i, on, off)


def test_objective_target_equals_the_class_target(linear):
    from lucidax.visualize.objectives import channel

    model, _, x = linear
    by_class = np.asarray(occlusion(model, model.params, x, 2, patch=2, stride=2))
    by_unit = np.asarray(occlusion(model, model.params, x, channel("logits", 2), patch=2,
                                   stride=2))
    np.testing.assert_allclose(by_unit, by_class, rtol=1e-5, atol=1e-5)
