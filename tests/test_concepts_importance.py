"""lucidax.concepts importance: Sobol total indices (CRAFT) and gradient x concept."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import lucidax.models as lm
from lucidax.concepts import (
    ConceptImportance,
    gradient_importance,
    importance_agreement,
    sobol_design,
    sobol_importance,
    sobol_total_indices,
)

C = 5  # channels of the hidden layer
SIDE = 3  # hidden layer [N, 3, 3, C]
LABELS = ("zero", "one", "two")


def _linear_model(logits_layer: str | None = "logits"):
    """``h = U W_planted`` with codes ``U = images[..., :2]`` and a logit linear in ``h``."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(2, C)).astype(np.float32)
    v = rng.normal(size=(C, len(LABELS))).astype(np.float32)
    v[:, 2] = np.linalg.pinv(w) @ np.array([0.5, 1.5])  # class "two": W v = (0.5, 1.5) > 0
    params = {"w": jnp.asarray(w), "v": jnp.asarray(v), "b": jnp.asarray([0.5, -1.0, 2.0])}

    def fn(p, images, layers):
        codes = images[..., :2] * 2.0  # [N, 3, 3, 2]
        h = codes @ p["w"]  # [N, 3, 3, C]
        out = {"h": h, "logits": h.sum(axis=(1, 2)) @ p["v"] + p["b"]}
        return {name: out[name] for name in layers}

    model = lm.wrap(fn, params, input_spec=lm.InputSpec(side=SIDE, channels=3),
                    layer_names=("h", "logits"), logits_layer=logits_layer, labels=LABELS,
                    name="linear2")
    pinv = jnp.asarray(np.linalg.pinv(w))  # [C, 2]: recovers U exactly from h = U W

    def encode(acts):
        return acts @ pinv

    return model, params, w, v, encode


def _images(n=3, seed=1):
    return np.random.default_rng(seed).uniform(0.1, 1.0, (n, SIDE, SIDE, 3)).astype(np.float32)


def _contributions(images, w, v, cls):
    """a_k = sum over positions of U_k * (W_k . v_cls): the logit is sum_k a_k M_k + const."""
    codes = images[..., :2] * 2.0
    return codes.sum(axis=(1, 2)) * (w @ v[:, cls])[None]  # [N, 2]


# ---------------------------------------------------------------------------------------------
# the estimator alone
# ---------------------------------------------------------------------------------------------
def test_design_layout():
    k, d = 3, 8
    m = sobol_design(k, d, seed=4)
    assert m.shape == ((k + 2) * d, k) and m.dtype == np.float32
    assert m.min() >= 0 and m.max() <= 1
    a, b = m[:d], m[d : 2 * d]
    for i in range(k):
        ci = m[(2 + i) * d : (3 + i) * d]
        np.testing.assert_array_equal(ci[:, i], b[:, i])
        np.testing.assert_array_equal(np.delete(ci, i, 1), np.delete(a, i, 1))
    np.testing.assert_array_equal(m, sobol_design(k, d, seed=4))
    assert not np.array_equal(m, sobol_design(k, d, seed=5))


def test_total_indices_of_an_interaction_function():
    # f = x1 + x2 x3 on U[0,1]^3: Var = 1/12 + 7/144 = 19/144; ST = (12, 4, 4) / 19
    k, d = 3, 1024
    m = sobol_design(k, d, seed=0).astype(np.float64)
    f = m[:, 0] + m[:, 1] * m[:, 2]
    st = sobol_total_indices(f, k, d)
    np.testing.assert_allclose(st, np.array([12, 4, 4]) / 19, atol=0.03)
    assert np.all(sobol_total_indices(np.ones(len(m)), k, d) == 0)  # nothing varies
    with pytest.raises(ValueError, match="outputs"):
        sobol_total_indices(f[:-1], k, d)


# ---------------------------------------------------------------------------------------------
# a model linear in two planted concepts
# ---------------------------------------------------------------------------------------------
def test_sobol_matches_hand_computed_indices():
    model, params, w, v, encode = _linear_model()
    images = _images()
    res = sobol_importance(model, params, images, "h", w, encode, "two", designs=256,
                           batch_size=128, progress=False)
    a = _contributions(images, w, v, 2)
    expected = a**2 / (a**2).sum(axis=1, keepdims=True)  # uniform independent masks
    assert isinstance(res, ConceptImportance)
    assert res.method == "sobol" and res.target == 2 and res.target_name == "two"
    assert res.per_image.shape == (3, 2) and res.mean.shape == (2,)
    np.testing.assert_allclose(res.per_image, expected, atol=0.03)
    np.testing.assert_allclose(res.mean, expected.mean(0), atol=0.03)
    np.testing.assert_allclose(res.std, res.per_image.std(0))
    assert list(res.ranking) == list(np.argsort(-res.mean))
    d = res.to_dict()
    assert d["target_name"] == "two" and len(d["per_image"]) == 3 and d["settings"]["designs"]


def test_residual_keeps_the_reconstruction_error():
    # with a W that does not reconstruct h, a mask of ones gives back the original logit with
    # residual=True, and the logit of U W without (CRAFT)
    from lucidax.concepts._importance import _sobol_fn

    model, params, w, v, encode = _linear_model()
    image = _images(1)
    w_bad = w + np.float32(0.1)
    acts = model.apply(params, image, ("h", "logits"))
    a = acts["h"][0]
    u = encode(a)  # the true codes: U W_bad != h
    ones = jnp.ones((1, 2))
    k = jnp.asarray(1, jnp.int32)
    with_res = _sobol_fn(model, "h", True)(params, image, a, u, jnp.asarray(w_bad), ones, k)
    without = _sobol_fn(model, "h", False)(params, image, a, u, jnp.asarray(w_bad), ones, k)
    np.testing.assert_allclose(with_res[0], acts["logits"][0, 1], rtol=1e-5)
    recon = (np.asarray(u) @ w_bad).sum(axis=(0, 1)) @ v[:, 1] - 1.0
    np.testing.assert_allclose(without[0], recon, rtol=1e-4)
    # the added error does not depend on the masks: same indices for this linear model
    images = _images(2)
    r0 = sobol_importance(model, params, images, "h", w_bad, encode, 1, designs=64,
                          progress=False)
    r1 = sobol_importance(model, params, images, "h", w_bad, encode, 1, designs=64,
                          residual=True, progress=False)
    np.testing.assert_allclose(r0.per_image, r1.per_image, atol=1e-4)
    assert r1.settings["residual"] is True and r0.settings["residual"] is False


def test_gradient_matches_hand_computed_and_agrees_with_sobol():
    model, params, w, v, encode = _linear_model()
    images = _images()
    g = gradient_importance(model, params, images, "h", w, encode, 0, batch_size=2,
                            progress=False)
    np.testing.assert_allclose(g.per_image, _contributions(images, w, v, 0), rtol=1e-4,
                               atol=1e-4)
    assert g.method == "gradient" and g.target_name == "zero"
    # class "two": both concepts raise the logit; Sobol ranks by a_k^2, the gradient by a_k
    g = gradient_importance(model, params, images, "h", w, encode, "two", progress=False)
    a = _contributions(images, w, v, 2)
    np.testing.assert_allclose(g.per_image, a, rtol=1e-4)
    assert np.all(a > 0) and a.mean(0)[1] > a.mean(0)[0]
    s = sobol_importance(model, params, images, "h", w, encode, "two", designs=64,
                         progress=False)
    agree = importance_agreement(s, g)
    assert agree["spearman"] == pytest.approx(1.0)
    assert agree["kendall"] == pytest.approx(1.0)
    assert agree["top_overlap"] == 1.0 and agree["top"] == 2
    assert list(s.ranking) == list(g.ranking) == [1, 0]
    # class "zero": the concepts lower the logit; by magnitude the rankings agree again
    g0 = gradient_importance(model, params, images, "h", w, encode, 0, progress=False)
    s0 = sobol_importance(model, params, images, "h", w, encode, 0, designs=64,
                          progress=False)
    assert importance_agreement(s0, g0, absolute=True)["spearman"] == pytest.approx(1.0)


def test_deterministic_and_compiled_once():
    model, params, w, _, encode = _linear_model()
    images = _images(3)
    r1 = sobol_importance(model, params, images, "h", w, encode, 1, designs=16, batch_size=20,
                          seed=3, progress=False)
    n_programs = len(model._programs)
    sizes = {k: fn._cache_size() for k, fn in model._programs.items()}
    r2 = sobol_importance(model, params, images, "h", w, encode, 1, designs=16, batch_size=20,
                          seed=3, progress=False)
    np.testing.assert_array_equal(r1.per_image, r2.per_image)
    assert len(model._programs) == n_programs
    assert {k: fn._cache_size() for k, fn in model._programs.items()} == sizes
    assert all(v == 1 for v in sizes.values())  # padding: one shape per program
    r3 = sobol_importance(model, params, images, "h", w, encode, 1, designs=16, batch_size=20,
                          seed=4, progress=False)
    assert not np.array_equal(r1.per_image, r3.per_image)
    gradient_importance(model, params, images, "h", w, encode, 1, batch_size=2, progress=False)
    sizes = {k: fn._cache_size() for k, fn in model._programs.items()}
    gradient_importance(model, params, images, "h", w, encode, 1, batch_size=2, progress=False)
    assert {k: fn._cache_size() for k, fn in model._programs.items()} == sizes


def test_bad_inputs():
    model, params, w, _, encode = _linear_model()
    images = _images(1)
    for fn in (sobol_importance, gradient_importance):
        with pytest.raises(ValueError, match="Did you mean 'h'|Valid layers"):
            fn(model, params, images, "hh", w, encode, 0, progress=False)
        with pytest.raises(ValueError, match="class label.*'two'|Did you mean 'two'"):
            fn(model, params, images, "h", w, encode, "tow", progress=False)
        with pytest.raises(ValueError, match="out of range"):
            fn(model, params, images, "h", w, encode, 7, progress=False)
        with pytest.raises(ValueError, match="C = 5 channels"):
            fn(model, params, images, "h", w[:, :3], encode, 0, progress=False)
        with pytest.raises(ValueError, match="codes"):
            fn(model, params, images, "h", np.ones((3, C)), encode, 0, progress=False)
        with pytest.raises(ValueError, match="uint8|floating"):
            fn(model, params, (images * 255).astype(np.uint8), "h", w, encode, 0,
               progress=False)
    no_logits, p2, *_ = _linear_model(logits_layer=None)
    with pytest.raises(ValueError, match="no logits_layer"):
        sobol_importance(no_logits, p2, images, "h", w, encode, 0, progress=False)
    with pytest.raises(ValueError, match="different numbers of concepts"):
        a = ConceptImportance.from_per_image("sobol", 0, None, "h", np.ones((1, 2)))
        b = ConceptImportance.from_per_image("sobol", 0, None, "h", np.ones((1, 3)))
        importance_agreement(a, b)
    with pytest.raises(ValueError, match="designs"):
        sobol_design(2, 0)


# ---------------------------------------------------------------------------------------------
# a real network
# ---------------------------------------------------------------------------------------------
def test_starter_conv_layer_runs():
    model = lm.load("starter")
    params = model.params
    k = 3
    c = model.channels("conv4")
    w = np.abs(np.random.default_rng(0).normal(size=(k, c))).astype(np.float32)
    pinv = jnp.asarray(np.linalg.pinv(w))

    def encode(acts):
        return acts @ pinv

    images = np.random.default_rng(2).uniform(0, 1, (2, 64, 64, 3)).astype(np.float32)
    s = sobol_importance(model, params, images, "conv4", w, encode, 3, designs=8,
                         batch_size=16, progress=False)
    g = gradient_importance(model, params, images, "conv4", w, encode, 3, progress=False)
    for r in (s, g):
        assert r.per_image.shape == (2, k) and np.all(np.isfinite(r.per_image))
        assert sorted(r.ranking.tolist()) == list(range(k)) and r.target_name == "3"
    assert np.all(s.per_image >= 0)
    agree = importance_agreement(s, g)
    assert set(agree) == {"spearman", "kendall", "top_overlap", "top"}
