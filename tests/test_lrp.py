"""LRP: relevance conservation per layer, hand-computed rules, bias absorption, unsupported
operations, the starter model."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax import lax

import lucidax.attribute as G
import lucidax.models as lm
from lucidax.attribute._common import TRACE_COUNT
from lucidax.visualize import objectives as obj

L = G

_DN = ("NHWC", "HWIO", "NHWC")
LAYERS = ("conv1", "conv2", "logits")


def _params(seed: int = 0, *, bias: float = 0.0) -> dict:
    rng = np.random.default_rng(seed)

    def n(*shape, scale):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    return {
        "c1": {"kernel": n(3, 3, 3, 6, scale=0.5), "bias": n(6, scale=bias)},
        "c2": {"kernel": n(3, 3, 6, 8, scale=0.3), "bias": n(8, scale=bias)},
        "fc": {"kernel": n(8, 4, scale=0.5), "bias": n(4, scale=bias)},
    }


def _apply(params, x, layers):
    """(x - 0.5) / 0.25, conv-relu, 2x2 max pool (reduce_window), 2x2 average pool (reshape +
    mean), conv-relu, global mean, dense: 4 classes."""
    acts = {}
    h = (x - 0.5) / 0.25
    h = lax.conv_general_dilated(h, params["c1"]["kernel"], (1, 1), "SAME",
                                 dimension_numbers=_DN) + params["c1"]["bias"]
    h = jax.nn.relu(h)
    acts["conv1"] = h
    h = lax.reduce_window(h, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    n, hh, ww, c = h.shape
    h = h.reshape(n, hh // 2, 2, ww // 2, 2, c).mean(axis=(2, 4))
    h = jnp.maximum(lax.conv_general_dilated(h, params["c2"]["kernel"], (1, 1), "SAME",
                                             dimension_numbers=_DN) + params["c2"]["bias"], 0.0)
    acts["conv2"] = h
    acts["logits"] = jnp.mean(h, axis=(1, 2)) @ params["fc"]["kernel"] + params["fc"]["bias"]
    return {k: acts[k] for k in layers}


def _wrap(params, apply=_apply, name="tiny"):
    return lm.wrap(apply, params, input_spec=lm.InputSpec(side=16, channels=3),
                   layer_names=LAYERS, name=name, logits_layer="logits")


@pytest.fixture(scope="module")
def tiny():
    return _wrap(_params())


@pytest.fixture(scope="module")
def images():
    return jax.random.uniform(jax.random.key(0), (2, 16, 16, 3))


@pytest.fixture(scope="module")
def starter():
    return lm.load("starter")


# ---------------------------------------------------------------------------------------------
# conservation
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("opts", [
    {"rule": "epsilon", "epsilon": 0.0},
    {"rule": "alphabeta", "alpha": 1.0, "beta": 0.0},
    {"rule": "alphabeta", "alpha": 2.0, "beta": 1.0},
])
def test_relevance_is_conserved_at_every_layer_without_biases(tiny, images, opts):
    per_layer = L.lrp_layer_relevance(tiny, tiny.params, images, [1, 3], **opts)
    names = list(per_layer)
    assert names[0] == "input" and names[-1] == "output"
    assert names[1:-1] == ["conv_general_dilated:0", "conv_general_dilated:1", "dot_general:2"]
    out = np.asarray(per_layer["output"])
    logits = np.asarray(tiny.apply(tiny.params, images, ("logits",))["logits"])
    np.testing.assert_allclose(out, logits[[0, 1], [1, 3]], rtol=1e-5)
    for name, total in per_layer.items():
        np.testing.assert_allclose(total, out, rtol=2e-4, atol=1e-5, err_msg=name)
    if opts["rule"] == "epsilon":
        r = L.lrp(tiny, tiny.params, images, [1, 3], return_raw=True, **opts)
        np.testing.assert_allclose(r.raw.sum((1, 2, 3)), out, rtol=2e-4, atol=1e-5)
        np.testing.assert_allclose(r.maps, np.asarray(r.raw).sum(-1), rtol=1e-5, atol=1e-6)


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 2**16), cls=st.integers(0, 3))
def test_lrp0_conserves_relevance_for_any_weights_and_images(tiny, seed, cls):
    """Law: bias-free ReLU network, epsilon = 0 -> every layer's total relevance is f(x)."""
    params = _params(seed)
    x = jax.random.uniform(jax.random.key(seed), (2, 16, 16, 3))
    per_layer = L.lrp_layer_relevance(tiny, params, x, cls, epsilon=0.0)
    out = np.asarray(per_layer["output"])
    for name, total in per_layer.items():
        np.testing.assert_allclose(total, out, rtol=1e-3, atol=1e-4, err_msg=name)


def test_lrp0_is_gradient_times_input_for_a_bias_free_relu_net(images):
    def apply(params, x, layers):  # no preprocessing: relevance of x = x * gradient
        return _apply(params, 0.25 * x + 0.5, layers)

    model = _wrap(_params(3), apply, "no-preproc")
    r = L.lrp(model, model.params, images, 2, epsilon=0.0, return_raw=True)
    g = G.gradient_x_input(model, model.params, images, 2, return_raw=True)
    np.testing.assert_allclose(r.raw, g.raw, rtol=1e-4, atol=1e-6)


def test_biases_absorb_relevance(images):
    """With biases the pixels get f(x) minus the biases' share (b_j R_j / z_j per unit)."""
    model = _wrap(_params(1, bias=0.3))
    per_layer = L.lrp_layer_relevance(model, model.params, images, 0, epsilon=0.0)
    out = np.asarray(per_layer["output"])
    # last layer: R(dense input) = sum_j (z_j - b_j) R_j / z_j with R = one-hot f(x)
    b = model.params["fc"]["bias"][0]
    np.testing.assert_allclose(per_layer["dot_general:2"], out - b, rtol=1e-4, atol=1e-5)
    assert not np.allclose(per_layer["input"], out, rtol=1e-2)


# ---------------------------------------------------------------------------------------------
# the rules against a hand computation (one dense layer + ReLU + dense)
# ---------------------------------------------------------------------------------------------
def _mlp_apply(params, x, layers):
    h = x.reshape(x.shape[0], -1)
    h1 = jax.nn.relu(h @ params["w1"] + params["b1"])
    out = {"hidden": h1, "logits": h1 @ params["w2"] + params["b2"]}
    return {k: out[k] for k in layers}


def _mlp_reference(p, x, k, *, rule, eps=0.0, alpha=1.0, beta=0.0):
    """numpy LRP of logit k (Bach et al. 2015; Montavon et al. 2019)."""
    x = np.asarray(x, np.float64).reshape(x.shape[0], -1)
    w1, b1, w2, b2 = (np.asarray(p[n], np.float64) for n in ("w1", "b1", "w2", "b2"))

    def layer(a, w, b, r):
        if rule == "epsilon":
            z = a @ w + b
            s = r / (z + eps * np.where(z >= 0, 1, -1))
            return a * (s @ w.T)
        contrib = a[:, :, None] * w[None]  # [N, I, J]
        zp = np.clip(contrib, 0, None).sum(1) + np.clip(b, 0, None)
        zn = np.clip(contrib, None, 0).sum(1) + np.clip(b, None, 0)
        sp = np.where(zp != 0, r / np.where(zp != 0, zp, 1), 0)
        sn = np.where(zn != 0, r / np.where(zn != 0, zn, 1), 0)
        return (alpha * np.clip(contrib, 0, None) * sp[:, None]
                - beta * np.clip(contrib, None, 0) * sn[:, None]).sum(2)

    h = np.maximum(x @ w1 + b1, 0)
    logits = h @ w2 + b2
    r = np.zeros_like(logits)
    r[:, k] = logits[:, k]
    return layer(x, w1, b1, layer(h, w2, b2, r))


@pytest.mark.parametrize("opts", [
    {"rule": "epsilon", "epsilon": 0.1},
    {"rule": "alphabeta", "alpha": 2.0, "beta": 1.0},
])
def test_rules_match_a_hand_computation(opts):
    rng = np.random.default_rng(7)
    p = {"w1": rng.standard_normal((12, 5)).astype(np.float32),
         "b1": (0.3 * rng.standard_normal(5)).astype(np.float32),
         "w2": rng.standard_normal((5, 3)).astype(np.float32),
         "b2": (0.3 * rng.standard_normal(3)).astype(np.float32)}
    model = lm.wrap(_mlp_apply, p, input_spec=lm.InputSpec(side=2, channels=3),
                    layer_names=("hidden", "logits"), name="mlp", logits_layer="logits")
    x = jax.random.uniform(jax.random.key(1), (4, 2, 2, 3))
    r = L.lrp(model, model.params, x, 1, return_raw=True, **opts)
    ref = _mlp_reference(p, x, 1, rule=opts["rule"], eps=opts.get("epsilon", 0.0),
                         alpha=opts.get("alpha", 1.0), beta=opts.get("beta", 0.0))
    np.testing.assert_allclose(np.asarray(r.raw).reshape(4, -1), ref, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# targets, errors, caching
# ---------------------------------------------------------------------------------------------
def test_objective_target_and_compiled_once(tiny, images):
    r = L.lrp(tiny, tiny.params, images, obj.channel("conv2", 3), epsilon=0.0,
              return_raw=True)
    act = tiny.apply(tiny.params, images, ("conv2",))["conv2"][..., 3].mean((1, 2))
    np.testing.assert_allclose(r.scores, act, rtol=1e-5)
    np.testing.assert_allclose(r.raw.sum((1, 2, 3)), act, rtol=1e-3, atol=1e-5)
    before = TRACE_COUNT["lrp"]
    L.lrp(tiny, tiny.params, 1 - images, obj.channel("conv2", 5), epsilon=0.0)
    assert TRACE_COUNT["lrp"] == before


def test_unsupported_operations_are_refused(images):
    def apply(params, x, layers):  # a local-response-normalization-like step
        h = _apply(params, x, ("conv1",))["conv1"]
        h = h / (1.0 + h**2)
        logits = jnp.exp(jnp.mean(h, axis=(1, 2))) @ params["fc"]["kernel"][:6]
        return {"conv1": h, "conv2": h, "logits": logits}

    model = _wrap(_params(), apply, "lrn")
    with pytest.raises(L.LRPUnsupportedError, match="integer_pow.*|exp") as err:
        L.lrp(model, model.params, images, 0)
    assert "exp" in str(err.value) and "integer_pow" in str(err.value)


def test_bad_rule_arguments(tiny, images):
    with pytest.raises(ValueError, match="epsilon"):
        L.lrp(tiny, tiny.params, images, 0, rule="eps")
    with pytest.raises(ValueError, match="alpha - beta = 1"):
        L.lrp(tiny, tiny.params, images, 0, rule="alphabeta", alpha=2.0, beta=0.0)


def test_starter_lrp(starter):
    x = jax.random.uniform(jax.random.key(5), (2, 16, 16, 3))
    params0 = jax.tree.map(lambda a: a, starter.params)
    params0 = {k: {"kernel": v["kernel"], "bias": np.zeros_like(v["bias"])}
               for k, v in starter.params.items()}
    r0 = L.lrp(starter, params0, x, [2, 7], epsilon=0.0, return_raw=True)
    assert r0.maps.shape == (2, 16, 16)
    np.testing.assert_allclose(r0.raw.sum((1, 2, 3)), r0.scores, rtol=1e-3, atol=1e-4)
    r = L.lrp(starter, starter.params, x, [2, 7], epsilon=0.0, return_raw=True)  # biases
    assert np.all(np.isfinite(np.asarray(r.maps)))
    assert not np.allclose(r.maps, r0.maps)


def test_batchnorm_after_a_layer_is_part_of_the_layer(images):
    """conv -> (u - mean) * scale + shift (inference batch-norm, some scales negative) gives the
    same relevance as the canonized conv (weights * scale, bias folded), under both rules."""
    rng = np.random.default_rng(11)
    p = _params(4)
    mean, scale, shift = (rng.standard_normal(6).astype(np.float32) for _ in range(3))
    scale[:2] *= -1

    def bn_apply(params, x, layers):
        h = lax.conv_general_dilated(x, params["c1"]["kernel"], (1, 1), "SAME",
                                     dimension_numbers=_DN)
        h = jax.nn.relu((h - mean) * scale + shift)
        logits = jnp.mean(h, axis=(1, 2)) @ params["fc"]["kernel"][:6]
        return {"conv1": h, "conv2": h, "logits": logits}

    folded = {"c1": {"kernel": p["c1"]["kernel"] * scale, "bias": shift - mean * scale},
              "fc": p["fc"]}

    def folded_apply(params, x, layers):
        h = lax.conv_general_dilated(x, params["c1"]["kernel"], (1, 1), "SAME",
                                     dimension_numbers=_DN) + params["c1"]["bias"]
        h = jax.nn.relu(h)
        logits = jnp.mean(h, axis=(1, 2)) @ params["fc"]["kernel"][:6]
        return {"conv1": h, "conv2": h, "logits": logits}

    bn, canon = _wrap(p, bn_apply, "bn"), _wrap(folded, folded_apply, "folded")
    for opts in ({"epsilon": 0.01}, {"rule": "alphabeta", "alpha": 2.0, "beta": 1.0}):
        a = L.lrp(bn, bn.params, images, 1, return_raw=True, **opts)
        b = L.lrp(canon, canon.params, images, 1, return_raw=True, **opts)
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(a.raw, b.raw, rtol=1e-3, atol=1e-5 * np.abs(b.raw).max())
