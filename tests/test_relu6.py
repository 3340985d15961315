"""ReLU6 (EfficientNet-Lite, MobileNet): recognized by the model hooks in all its spellings,
given Guided Backprop's and Lucid's redirected gradients, passed through by LRP; depthwise
convolutions (stride 2 with TF's asymmetric SAME padding) in all of these."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import lucidax.attribute as G
import lucidax.models as lm
from lucidax.models import fastgrad
from lucidax.models import hooks as H
from lucidax.models._layers import same_padding

L = G

_DN = ("NHWC", "HWIO", "NHWC")
LAYERS = ("conv1", "dw", "logits")
SAME_S2 = ((0, 1), (0, 1))  # TF SAME for k3 s2 on an even side: asymmetric

FORMS = {
    "relu6": jax.nn.relu6,
    "clip": lambda h: jnp.clip(h, 0, 6),
    "minmax": lambda h: jnp.minimum(jnp.maximum(h, 0.0), 6.0),
}


def _params(seed: int = 0, *, bias: float = 0.0) -> dict:
    rng = np.random.default_rng(seed)

    def n(*shape, scale):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    return {"c1": {"kernel": n(3, 3, 3, 6, scale=0.5), "bias": n(6, scale=bias)},
            "dw": {"kernel": n(3, 3, 1, 6, scale=0.8), "bias": n(6, scale=bias)},
            "fc": {"kernel": n(6, 4, scale=0.5), "bias": n(4, scale=bias)}}


def _pre(params, x):
    h = (x - 0.5) * 8.0
    return lax.conv_general_dilated(h, params["c1"]["kernel"], (1, 1), "SAME",
                                    dimension_numbers=_DN) + params["c1"]["bias"]


def _dw(params, a):
    return lax.conv_general_dilated(a, params["dw"]["kernel"], (2, 2), SAME_S2,
                                    dimension_numbers=_DN,
                                    feature_group_count=a.shape[-1]) + params["dw"]["bias"]


def _apply(params, x, layers, *, act=jax.nn.relu6):
    """conv 3x3 -> ReLU6 -> depthwise 3x3 stride 2 -> ReLU6 -> mean -> dense (4 classes)."""
    a1 = act(_pre(params, x))
    a2 = act(_dw(params, a1))
    acts = {"conv1": a1, "dw": a2,
            "logits": jnp.mean(a2, axis=(1, 2)) @ params["fc"]["kernel"] + params["fc"]["bias"]}
    return {k: acts[k] for k in layers}


def _wrap(params, form: str = "relu6", apply=_apply):
    return lm.wrap(functools.partial(apply, act=FORMS[form]), params,
                   input_spec=lm.InputSpec(side=8, channels=3), layer_names=LAYERS,
                   name=f"tiny-{form}", logits_layer="logits")


@pytest.fixture(scope="module")
def images():
    return jax.random.uniform(jax.random.key(0), (2, 8, 8, 3))


# ---------------------------------------------------------------------------------------------
# hooks: recognition
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fn, expect", [
    (jax.nn.relu6, [6.0]),
    (lambda x: jnp.clip(x, 0, 6), [6.0]),
    (lambda x: jnp.clip(x, 0.0, 6.0), [6.0]),
    (lambda x: jnp.minimum(jnp.maximum(x, 0.0), 6.0), [6.0]),
    (lambda x: jnp.minimum(6.0, jax.nn.relu(x)), [6.0]),
    (jax.jit(lambda x: jnp.minimum(jnp.maximum(x, 0), 3.0)), [3.0]),
    (jax.nn.relu, ["relu"]),
    (lambda x: jnp.clip(x, 0.0), ["relu"]),
    (lambda x: jnp.clip(x, 1.0, 6.0), []),  # not a ReLU
    (lambda x: jnp.clip(x, max=6.0), []),
    (lambda x: jnp.minimum(jnp.maximum(x, 0.0), -1.0), ["relu"]),  # cap must be > 0
    # the ReLU's output is also used elsewhere: a ReLU and a separate min
    (lambda x: (lambda r: jnp.minimum(r, 6.0) + r)(jnp.maximum(x, 0.0)), ["relu"]),
])
def test_relu6_spellings_are_recognized(fn, expect):
    x = jnp.linspace(-3.0, 9.0, 13)
    seen = []

    def rule(eqn, invals):
        if (capped := H.relu6_input(eqn, invals)) is not None:
            assert H.is_relu6(eqn) and not H.is_relu(eqn)
            seen.append(capped[1])
            return [jnp.minimum(jax.nn.relu(capped[0]), capped[1])]
        if H.relu_input(eqn, invals) is not None:
            seen.append("relu")
        return None

    np.testing.assert_array_equal(H.interpret(fn, x, rule=rule), fn(x))
    assert seen == expect


def test_unhandled_fused_relu6_evaluates_as_written():
    """A rule that leaves the (fused) min(max(x, 0), 6) alone sees its ReLU, and values and
    gradients are those of the two equations (ties included)."""
    x = jnp.array([-1.0, 0.0, 3.0, 6.0, 7.0])

    def f(v):
        return jnp.minimum(jnp.maximum(v, 0.0), 6.0)

    seen = []

    def rule(eqn, invals):
        if H.relu6_input(eqn, invals) is not None:
            seen.append(6)
        elif H.relu_input(eqn, invals) is not None:
            seen.append("relu")
        return None

    g = jax.grad(lambda v: H.interpret(f, v, rule=rule).sum())(x)
    np.testing.assert_array_equal(g, jax.grad(lambda v: f(v).sum())(x))
    assert seen == [6, "relu"]


@pytest.mark.parametrize("form", list(FORMS))
def test_apply_with_relu_on_relu6_networks(form, images):
    """Every ReLU6 becomes min(relu(x), 6): the same values; with a custom-gradient ReLU that
    has the ordinary gradient, the ordinary gradient of the ReLU6 network."""
    model = _wrap(_params(1, bias=0.2), form)
    p = model.params
    pre = _pre(p, images)
    assert float(pre.max()) > 6 and float(pre.min()) < 0  # both sides of ReLU6 are used
    ref = model.apply(p, images, LAYERS)
    out = H.apply_with_relu(model, p, images, LAYERS, jax.nn.relu)
    for k in LAYERS:
        np.testing.assert_allclose(out[k], ref[k], rtol=1e-5, atol=1e-5)

    @jax.custom_vjp
    def plain_relu(h):
        return jnp.maximum(h, 0.0)

    plain_relu.defvjp(lambda h: (plain_relu(h), h), lambda h, ct: (jnp.where(h > 0, ct, 0.0),))

    def logit(apply, im):
        return apply(p, im, ("logits",))["logits"][:, 2].sum()

    g = jax.grad(functools.partial(logit, model.apply))(images)
    g_hook = jax.grad(functools.partial(
        logit, lambda pp, im, ls: H.apply_with_relu(model, pp, im, ls, plain_relu)))(images)
    np.testing.assert_allclose(g_hook, g, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Guided Backprop
# ---------------------------------------------------------------------------------------------
def _guided_reference(p, x, cls):
    """Guided Backprop of logit ``cls`` written out layer by layer: through each ReLU6 only
    where 0 < z < 6 and the incoming gradient is positive (linear maps by their vjp)."""
    z1, lin1 = jax.vjp(lambda im: _pre(p, im), x)
    a1 = jax.nn.relu6(z1)
    z2, lin2 = jax.vjp(lambda a: _dw(p, a), a1)
    n, h, w, c = z2.shape
    g = jnp.broadcast_to(p["fc"]["kernel"][:, cls] / (h * w), z2.shape)  # d logit / d a2
    g = jnp.where((z2 > 0) & (z2 < 6) & (g > 0), g, 0.0)
    (g,) = lin2(g)
    mixed = (z1 > 6) | ((z1 > 0) & (z1 < 6) & (g < 0))  # where guiding changes the gradient
    g = jnp.where((z1 > 0) & (z1 < 6) & (g > 0), g, 0.0)
    (g,) = lin1(g)
    return g, mixed


@pytest.mark.parametrize("form", ["relu6", "minmax"])
def test_guided_backprop_through_relu6_and_a_depthwise_conv(form, images):
    model = _wrap(_params(2, bias=0.2), form)
    gb = G.guided_backprop(model, model.params, images, 1, return_raw=True)
    ref, mixed = _guided_reference(model.params, images, 1)
    assert bool(jnp.any(mixed))
    np.testing.assert_allclose(gb.raw, ref, rtol=1e-4, atol=1e-6 * float(jnp.abs(ref).max()))
    g = G.vanilla_gradient(model, model.params, images, 1, return_raw=True)
    assert not np.allclose(gb.raw, g.raw, atol=1e-3 * float(np.abs(g.raw).max()))


def test_guided_relu6_backward():
    """One ReLU6 under apply_with_relu(guided_relu): g passes only where 0 < x < 6, g > 0."""
    x = jnp.array([-1.0, 2.0, 3.0, 7.0, 8.0, 5.0])
    g = jnp.array([1.0, 1.0, -1.0, 1.0, -1.0, 2.0])

    def f(v):
        return H.interpret(jax.nn.relu6, v, rule=lambda e, iv: None if (
            c := H.relu6_input(e, iv)) is None else [jnp.minimum(G.guided_relu(c[0]), c[1])])

    _, vjp = jax.vjp(f, x)
    np.testing.assert_array_equal(vjp(g)[0], [0.0, 1.0, 0.0, 0.0, 0.0, 2.0])


# ---------------------------------------------------------------------------------------------
# fast gradients: redirected ReLU6, depthwise convolutions
# ---------------------------------------------------------------------------------------------
def _redirected_relu6_reference(x, g, active, cap=6.0):
    """Lucid's redirected_relu6_grad in numpy (g: gradient of a minimized loss)."""
    x, g = np.asarray(x), np.asarray(g)
    relu6_grad = np.where((x > 0) & (x < cap), g, 0.0)
    redirected = np.where(((x < 0) & (g > 0)) | ((x > cap) & (g < 0)), 0.0, g)
    blocked = np.all(relu6_grad.reshape(len(x), -1) == 0, axis=1) & (active > 0)
    return np.where(blocked[:, None], redirected, relu6_grad)


@pytest.mark.parametrize("active", [0.0, 1.0])
def test_redirected_relu6_gradient(active):
    x = jnp.array([[-1.0, 2.0, 7.0, 3.0],     # active units: the ordinary ReLU6 gradient
                   [-1.0, -2.0, 7.0, 8.0],    # none: redirected
                   [-1.0, 0.5, 9.0, -3.0]])   # one active, with a zero gradient: redirected
    g = jnp.array([[1.0, -1.0, -1.0, 2.0],
                   [1.0, -1.0, -1.0, 2.0],
                   [-1.0, 0.0, 1.0, 1.0]])

    def f(v):
        return fastgrad.call(jax.nn.relu6, v, redirect=jnp.float32(active))

    y, vjp = jax.vjp(f, x)
    np.testing.assert_array_equal(y, jax.nn.relu6(x))
    expect = _redirected_relu6_reference(x, g, active)
    np.testing.assert_array_equal(vjp(g)[0], expect)
    if active:
        np.testing.assert_array_equal(expect[1], [0.0, -1.0, 0.0, 2.0])
        np.testing.assert_array_equal(expect[2], [-1.0, 0.0, 1.0, 0.0])


@pytest.mark.parametrize("form", list(FORMS))
def test_fast_grads_of_a_relu6_depthwise_network_match_autodiff(form, images):
    """fastgrad.call (convs, depthwise convs, ReLU6 with redirect off) == jax.grad; with
    redirect on, a row whose ReLU6s are all saturated still gets a gradient."""
    model = _wrap(_params(3, bias=0.2), form)
    p = model.params
    w = jax.random.normal(jax.random.key(1), (2, 4))

    def fn(pp, v):
        return model.apply(pp, v, ("logits",))

    def loss(v, redirect=None, fast=True):
        return jnp.sum(fastgrad.call(fn, p, v, redirect=redirect, fast=fast)["logits"] * w)

    g_ref = jax.grad(lambda v: jnp.sum(fn(p, v)["logits"] * w))(images)
    for kw in ({}, {"redirect": jnp.float32(0.0)}, {"redirect": jnp.float32(1.0)},
               {"fast": False, "redirect": jnp.float32(0.0)}):
        g = jax.jit(jax.grad(functools.partial(loss, **kw)))(images)
        np.testing.assert_allclose(g, g_ref, rtol=1e-4, atol=1e-6 * float(jnp.abs(g_ref).max()),
                                   err_msg=str(kw))
    # every unit above the cap: no ordinary gradient; redirected, it pulls the input down
    high = jnp.full((1, 3, 3), 10.0)

    def sat(v, redirect):
        return jnp.sum(fastgrad.call(FORMS[form], v, redirect=redirect))

    np.testing.assert_array_equal(jax.grad(sat)(high, jnp.float32(0.0)), 0.0)
    np.testing.assert_array_equal(jax.grad(sat)(high, jnp.float32(1.0)), 1.0)


def test_depthwise_conv_gradients_in_a_loop_match_autodiff():
    """Depthwise convs (k3/k5, stride 1/2, asymmetric SAME) under fastgrad.call inside a
    lax.scan: the gradient of JAX's rule, to float rounding."""
    x = jax.random.normal(jax.random.key(2), (2, 9, 10, 4))
    ks = [jax.random.normal(jax.random.key(3 + i), (k, k, 1, 4)) * 0.3
          for i, k in enumerate((3, 5))]

    def net(kk, v):
        for k, s in zip(kk, (2, 1), strict=True):
            v = jax.nn.relu6(lax.conv_general_dilated(
                v, k, (s, s), "SAME", dimension_numbers=_DN, feature_group_count=4) * 4.0)
        return v

    wt = jax.random.normal(jax.random.key(9), jax.eval_shape(net, ks, x).shape)

    def steps(f):
        def body(v, _):
            g = jax.grad(lambda u: jnp.sum(f(ks, u) * wt))(v)
            return v - 0.01 * g, g
        return jax.jit(lambda v: lax.scan(body, v, None, length=2))(x)

    (x1, g1) = steps(net)
    (x2, g2) = steps(lambda kk, v: fastgrad.call(net, kk, v))
    np.testing.assert_allclose(g2, g1, rtol=1e-5, atol=1e-6 * float(jnp.abs(g1).max()))


@pytest.mark.parametrize(("hw", "k", "s"), [
    ((9, 9), 3, 2), ((10, 7), 5, 2), ((8, 8), 3, 1), ((13, 11), 5, 1), ((6, 6), 5, 2),
    ((7, 7), 3, 2),
])
def test_fast_depthwise_conv_equals_the_grouped_convolution(hw, k, s):
    """fastgrad's depthwise convolution (shifted sums; polyphase input gradient for stride 2)
    gives the grouped convolution's values, input gradient and kernel gradient, for odd and
    even sides, k3/k5, stride 1/2 with TF SAME padding; the grouped conv is gone from the
    program."""
    c = 3
    x = jax.random.normal(jax.random.key(0), (2, *hw, c))
    kern = jax.random.normal(jax.random.key(1), (k, k, 1, c))
    pads = [same_padding(n, k, s) for n in hw]

    def conv(v, kk):
        return lax.conv_general_dilated(v, kk, (s, s), pads, dimension_numbers=_DN,
                                        feature_group_count=c)

    wt = jax.random.normal(jax.random.key(2), jax.eval_shape(conv, x, kern).shape)

    def loss(v, kk):
        return jnp.sum(jnp.tanh(conv(v, kk)) * wt)

    np.testing.assert_allclose(fastgrad.call(conv, x, kern), conv(x, kern), rtol=1e-5,
                               atol=1e-5)
    ref = jax.grad(loss, argnums=(0, 1))(x, kern)
    got = jax.grad(lambda v, kk: fastgrad.call(loss, v, kk), argnums=(0, 1))(x, kern)
    for a, b in zip(got, ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(jnp.abs(b).max()))
    program = str(jax.make_jaxpr(lambda v, kk: fastgrad.call(conv, v, kk))(x, kern))
    assert "feature_group_count=3" not in program


def test_fast_apply_of_efficientnet_matches_apply():
    """``fastgrad.apply`` (the forward pass with fast depthwise convs that dataset examples and
    extraction use) gives the model's activations."""
    model = lm.load("efficientnet_lite0")
    x = jax.random.uniform(jax.random.key(0), (1, 67, 67, 3))
    layers = ("blocks.3.depthwise", "blocks.5", "logits")
    ref = jax.jit(lambda p, v: model.apply(p, v, layers))(model.params, x)
    got = jax.jit(lambda p, v: fastgrad.apply(model, p, v, layers))(model.params, x)
    for name in layers:
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-4,
                                   atol=1e-5 * float(jnp.abs(ref[name]).max()))


# ---------------------------------------------------------------------------------------------
# LRP
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("opts", [
    {"rule": "epsilon", "epsilon": 0.0},
    {"rule": "alphabeta", "alpha": 1.0, "beta": 0.0},
])
def test_lrp_conserves_relevance_through_relu6_and_depthwise_convs(images, opts):
    """Bias-free: every layer's total relevance is f(x), also with units above the cap
    (whose relevance a gradient-like rule would drop); the spellings of ReLU6 agree."""
    params = _params(4)
    assert float(_pre(params, images).max()) > 6
    raws = []
    for form in FORMS if opts["rule"] == "epsilon" else ["relu6"]:  # (compile time)
        model = _wrap(params, form)
        per_layer = L.lrp_layer_relevance(model, params, images, [1, 3], **opts)
        assert list(per_layer) == ["input", "conv_general_dilated:0", "conv_general_dilated:1",
                                   "dot_general:2", "output"]
        out = np.asarray(per_layer["output"])
        for name, total in per_layer.items():
            np.testing.assert_allclose(total, out, rtol=2e-4, atol=1e-5, err_msg=name)
        raws.append(L.lrp(model, params, images, [1, 3], return_raw=True, **opts).raw)
    for raw in raws[1:]:
        np.testing.assert_allclose(raw, raws[0], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("act, what", [
    (lambda h: jnp.minimum(h, 6.0), "min with a constant"),  # a clip, not a ReLU6
    (lambda h: jnp.clip(h, -1.0, 6.0), "max with a constant other than 0"),
])
def test_lrp_refuses_other_clippings(images, act, what):
    model = lm.wrap(functools.partial(_apply, act=act), _params(5),
                    input_spec=lm.InputSpec(side=8, channels=3), layer_names=LAYERS,
                    name="clipped", logits_layer="logits")
    with pytest.raises(L.LRPUnsupportedError, match=what) as err:
        L.lrp(model, model.params, images, 0)
    assert "ReLU6" in str(err.value)


def test_redirected_gradients_of_a_scalar_input():
    """A 0-d input is one row: redirected ReLU / ReLU6 gradients work on it (no shape error)."""
    on, off = jnp.float32(1.0), jnp.float32(0.0)

    def grad(act, x, redirect):
        return float(jax.grad(lambda v: fastgrad.call(act, v, redirect=redirect))(jnp.float32(x)))

    assert grad(jax.nn.relu6, 7.0, off) == 0.0  # saturated: no ordinary gradient
    assert grad(jax.nn.relu6, 7.0, on) == 1.0  # redirected: lowering it is allowed
    assert grad(jax.nn.relu, -1.0, on) == 0.0  # would push a negative input further down
    assert grad(jax.nn.relu, 2.0, on) == 1.0
