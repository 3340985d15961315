"""Gradient attribution methods: finite-difference checks on a tiny CNN, IG completeness,
Grad-CAM weights, Guided Backprop vs. vanilla gradient, targets, compilation caching."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import lucidax.attribute as G
import lucidax.models as lm
from lucidax.attribute._common import TRACE_COUNT
from lucidax.models.hooks import apply_perturbed, apply_with_relu
from lucidax.visualize import objectives as obj

_DN = ("NHWC", "HWIO", "NHWC")
LAYERS = ("conv1_pre_relu", "conv1", "conv2", "logits")


def _tiny_params(seed: int = 0, *, bias: float = 0.1) -> dict:
    rng = np.random.default_rng(seed)

    def n(*shape, scale):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    return {
        "c1": {"kernel": n(3, 3, 3, 6, scale=0.4), "bias": n(6, scale=bias)},
        "c2": {"kernel": n(3, 3, 6, 8, scale=0.3), "bias": n(8, scale=bias)},
        "fc": {"kernel": n(8, 4, scale=0.5), "bias": n(4, scale=bias)},
    }


def _tiny_apply(params, x, layers, *, act=jax.nn.relu, pool=lax.max):
    """conv-relu-maxpool-conv-relu-mean-dense, 4 classes."""
    acts = {}
    h = lax.conv_general_dilated(x, params["c1"]["kernel"], (1, 1), "SAME",
                                 dimension_numbers=_DN) + params["c1"]["bias"]
    acts["conv1_pre_relu"] = h
    h = act(h)
    acts["conv1"] = h
    if pool is lax.max:
        h = lax.reduce_window(h, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    else:  # average pooling
        h = lax.reduce_window(h, 0.0, lax.add, (1, 2, 2, 1), (1, 2, 2, 1), "VALID") / 4
    h = act(lax.conv_general_dilated(h, params["c2"]["kernel"], (1, 1), "SAME",
                                     dimension_numbers=_DN) + params["c2"]["bias"])
    acts["conv2"] = h
    acts["logits"] = jnp.mean(h, axis=(1, 2)) @ params["fc"]["kernel"] + params["fc"]["bias"]
    return {k: acts[k] for k in layers}


def _wrap(apply_fn, params, name="tiny"):
    return lm.wrap(apply_fn, params, input_spec=lm.InputSpec(side=8, channels=3),
                   layer_names=LAYERS, name=name, logits_layer="logits")


@pytest.fixture(scope="module")
def tiny():
    return _wrap(_tiny_apply, _tiny_params())


@pytest.fixture(scope="module")
def linear():
    """The same network without ReLUs (max pooling kept)."""
    return _wrap(functools.partial(_tiny_apply, act=lambda h: h), _tiny_params(1), "linear")


@pytest.fixture(scope="module")
def smooth():
    """Softplus and average pooling: differentiable everywhere, for finite differences."""
    return _wrap(functools.partial(_tiny_apply, act=jax.nn.softplus, pool=lax.add),
                 _tiny_params(2), "smooth")


@pytest.fixture(scope="module")
def images():
    return jax.random.uniform(jax.random.key(0), (3, 8, 8, 3))


@pytest.fixture(scope="module")
def starter():
    return lm.load("starter")


@functools.partial(jax.jit, static_argnums=0)
def _logits(model, params, x):
    return model.apply(params, x, ("logits",))["logits"]


def _logit(model, params, x, cls):
    return np.asarray(_logits(model, params, x))[np.arange(len(x)), cls]


# ---------------------------------------------------------------------------------------------
# vanilla gradient, gradient x input
# ---------------------------------------------------------------------------------------------
def test_gradient_matches_central_differences(smooth, images):
    cls = np.array([0, 2, 3])
    r = G.vanilla_gradient(smooth, smooth.params, images, cls, return_raw=True)
    assert r.maps.shape == (3, 8, 8) and r.raw.shape == (3, 8, 8, 3)
    np.testing.assert_allclose(r.scores, _logit(smooth, smooth.params, images, cls), rtol=1e-5)
    eps = 1e-3
    for seed in range(3):
        v = jax.random.normal(jax.random.key(seed + 10), images.shape)
        fd = (_logit(smooth, smooth.params, images + eps * v, cls)
              - _logit(smooth, smooth.params, images - eps * v, cls)) / (2 * eps)
        directional = np.sum(np.asarray(r.raw * v), axis=(1, 2, 3))
        np.testing.assert_allclose(directional, fd, rtol=2e-2, atol=2e-3)
    # default reduction: max over channels of |gradient| (Simonyan)
    np.testing.assert_allclose(r.maps, np.abs(np.asarray(r.raw)).max(-1), rtol=1e-6)


def test_gradient_x_input_and_reductions(tiny, images):
    g = G.vanilla_gradient(tiny, tiny.params, images, 1, return_raw=True)
    gx = G.gradient_x_input(tiny, tiny.params, images, 1, return_raw=True)
    np.testing.assert_allclose(gx.raw, np.asarray(g.raw) * np.asarray(images), rtol=1e-5,
                               atol=1e-7)
    np.testing.assert_allclose(gx.maps, np.asarray(gx.raw).sum(-1), rtol=1e-5, atol=1e-6)
    l2 = G.vanilla_gradient(tiny, tiny.params, images, 1, reduce="l2")
    np.testing.assert_allclose(l2, np.sqrt((np.asarray(g.raw) ** 2).sum(-1)), rtol=1e-5)
    with pytest.raises(ValueError, match="max_abs"):
        G.vanilla_gradient(tiny, tiny.params, images, 1, reduce="maxabs")


def test_objective_target_is_the_gradient_of_the_objective(tiny, images):
    target = obj.channel("conv2", 5)
    r = G.vanilla_gradient(tiny, tiny.params, images, target, return_raw=True)

    def f(x):
        return jnp.sum(tiny.apply(tiny.params, x, ("conv2",))["conv2"][..., 5].mean((1, 2)))

    np.testing.assert_allclose(r.raw, jax.jit(jax.grad(f))(images), rtol=1e-5, atol=1e-7)


def test_bad_arguments_say_what_is_wrong(tiny, images):
    with pytest.raises(ValueError, match="batch"):
        G.vanilla_gradient(tiny, tiny.params, images[0], 0)
    with pytest.raises(ValueError, match="one class per image|per-image|images"):
        G.vanilla_gradient(tiny, tiny.params, images, [0, 1])
    with pytest.raises(ValueError, match="out of range|0..3|channels"):
        G.vanilla_gradient(tiny, tiny.params, images, 7)


def test_compiled_once_per_shape(tiny, images):
    """New images, classes and params of the same shapes reuse the compiled program."""
    G.gradient_x_input(tiny, tiny.params, images, 0)
    before = TRACE_COUNT["gradient_x_input"]
    other = tiny.with_params(_tiny_params(5))
    G.gradient_x_input(other, other.params, images * 0.5, [1, 2, 3])
    G.gradient_x_input(tiny, tiny.params, 1 - images, 2)
    assert TRACE_COUNT["gradient_x_input"] == before
    G.gradient_x_input(tiny, tiny.params, images[:2], 2)  # a new batch size compiles again
    assert TRACE_COUNT["gradient_x_input"] == before + 1


@pytest.mark.parametrize("method, key", [
    ("vanilla_gradient", "gradient"), ("smoothgrad", "smoothgrad"),
    ("integrated_gradients", "integrated_gradients"), ("gradcam", "gradcam"),
    ("guided_backprop", "guided_backprop"), ("lrp", "lrp"),
])
def test_every_method_reuses_its_program(tiny, images, method, key):
    """A second call, and a with_params copy with randomized weights (the randomization check),
    reuse the model's program: no new trace."""
    from lucidax.attribute import randomize_params

    fn = getattr(G, method)
    opts = {"n_samples": 2} if method == "smoothgrad" else {}
    opts = {"steps": 2} if method == "integrated_gradients" else opts
    fn(tiny, tiny.params, images, 0, **opts)
    before = TRACE_COUNT[key]
    fn(tiny, tiny.params, 1 - images, [1, 2, 3], **opts)
    rand = randomize_params(tiny.params, ["c2"], key=3)
    copy = tiny.with_params(rand)
    fn(copy, copy.params, images, 2, **opts)
    assert TRACE_COUNT[key] == before


# ---------------------------------------------------------------------------------------------
# SmoothGrad
# ---------------------------------------------------------------------------------------------
def test_smoothgrad(tiny, images):
    g = G.vanilla_gradient(tiny, tiny.params, images, 1, return_raw=True)
    opts = {"n_samples": 4, "batch_size": 2}
    zero = G.smoothgrad(tiny, tiny.params, images, 1, noise=0.0, return_raw=True, **opts)
    np.testing.assert_allclose(zero.raw, g.raw, rtol=1e-5, atol=1e-7)  # no noise: the gradient
    a = G.smoothgrad(tiny, tiny.params, images, 1, key=jax.random.key(3), **opts)
    b = G.smoothgrad(tiny, tiny.params, images, 1, key=jax.random.key(3), **opts)
    c = G.smoothgrad(tiny, tiny.params, images, 1, key=jax.random.key(4), **opts)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert not np.allclose(a, g.maps)
    sq = G.smoothgrad(tiny, tiny.params, images, 1, squared=True, reduce="sum", **opts)
    assert np.all(np.asarray(sq) >= 0) and np.asarray(sq).max() > 0


# ---------------------------------------------------------------------------------------------
# Integrated Gradients
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rule", ["trapezoid", "riemann_middle"])
def test_ig_completeness(tiny, images, rule):
    r = G.integrated_gradients(tiny, tiny.params, images, [0, 1, 2], steps=64, rule=rule,
                               completeness_rtol=0.02, return_raw=True)
    cls = np.array([0, 1, 2])
    np.testing.assert_allclose(r.scores, _logit(tiny, tiny.params, images, cls), rtol=1e-5)
    base = _logit(tiny, tiny.params, jnp.zeros_like(images), cls)
    np.testing.assert_allclose(r.baseline_scores, base, rtol=1e-5, atol=1e-6)
    diff = np.asarray(r.scores) - base
    np.testing.assert_allclose(np.asarray(r.raw).sum((1, 2, 3)), diff, rtol=0.02, atol=1e-3)
    np.testing.assert_allclose(r.maps, np.asarray(r.raw).sum(-1), rtol=1e-5, atol=1e-6)


def test_ig_exact_on_a_linear_model_and_checked(linear, tiny, images):
    # without ReLUs or pooling decisions changing along the path, one step is exact only for
    # a linear function: use a baseline that keeps the max-pool winners (x0 = x / 2)
    r = G.integrated_gradients(linear, linear.params, images, 2, baseline=images * 0.5,
                               steps=1, rule="riemann_left", return_raw=True)
    np.testing.assert_allclose(r.completeness_gap, 0, atol=1e-4)
    with pytest.raises(ValueError, match="completeness"):
        G.integrated_gradients(tiny, tiny.params, images, 2, steps=1, rule="riemann_right",
                               completeness_rtol=1e-4)
    with pytest.raises(ValueError, match="trapezoid"):
        G.integrated_gradients(tiny, tiny.params, images, 2, rule="simpson")


def test_ig_on_starter_is_complete(starter):
    x = jax.random.uniform(jax.random.key(2), (2, 16, 16, 3))
    r = G.integrated_gradients(starter, starter.params, x, "predicted", steps=32,
                               rule="riemann_middle", batch_size=32, return_raw=True)
    gap = np.abs(np.asarray(r.completeness_gap))
    # a trained ReLU network is piecewise linear with many kinks: 32 steps get within ~5%
    assert np.all(gap <= 0.1 * np.abs(np.asarray(r.scores - r.baseline_scores)) + 1e-3)
    cls = np.asarray(jnp.argmax(starter.apply(starter.params, x, ("logits",))["logits"], -1))
    np.testing.assert_allclose(r.scores, _logit(starter, starter.params, x, cls), rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Grad-CAM
# ---------------------------------------------------------------------------------------------
def test_gradcam_weights_match_finite_differences(smooth, images):
    tiny = smooth
    cls = np.array([3, 0, 1])
    r = G.gradcam(tiny, tiny.params, images, cls, layer="conv1", return_raw=True)
    assert r.raw.shape == (3, 8, 8) and r.maps.shape == (3, 8, 8)
    act = tiny.apply(tiny.params, images, ("conv1",))["conv1"]
    n, h, w, c = act.shape
    eps = 1e-2
    alphas = np.zeros((n, c))


    @jax.jit
    def logit(d):
        out = apply_perturbed(tiny, tiny.params, images, ("logits",), {"conv1": d})
        return out["logits"][np.arange(n), cls]

    for k in range(c):  # alpha_k = mean over positions of d logit / d A_k, by differences
        delta = jnp.zeros((c,)).at[k].set(eps)
        alphas[:, k] = (np.asarray(logit(delta)) - np.asarray(logit(-delta))) / (2 * eps * h * w)
    cam = np.einsum("nhwc,nc->nhw", np.asarray(act), alphas)
    np.testing.assert_allclose(r.raw, cam, rtol=2e-2, atol=2e-3 * np.abs(cam).max())
    np.testing.assert_allclose(r.maps, np.maximum(np.asarray(r.raw), 0), rtol=1e-5,
                               atol=1e-6)  # same resolution: resize is the identity


def test_gradcam_upsamples_and_checks_layer(tiny, images):
    r = G.gradcam(tiny, tiny.params, images, 1, return_raw=True)  # default: last conv layer
    assert r.raw.shape == (3, 4, 4) and r.maps.shape == (3, 8, 8)
    assert np.all(np.asarray(r.maps) >= 0)
    up = jax.image.resize(jax.nn.relu(r.raw), (3, 8, 8), "bilinear")
    np.testing.assert_allclose(r.maps, up, rtol=1e-5, atol=1e-6)
    signed = G.gradcam(tiny, tiny.params, images, 1, relu=False)
    assert np.asarray(signed).min() < 0 <= np.asarray(r.maps).min()
    with pytest.raises(ValueError, match="conv"):
        G.gradcam(tiny, tiny.params, images, 1, layer="logits")
    with pytest.raises(ValueError, match="conv2"):
        G.gradcam(tiny, tiny.params, images, 1, layer="conv3")


def test_gradcam_on_starter(starter):
    x = jax.random.uniform(jax.random.key(3), (2, 16, 16, 3))
    r = G.gradcam(starter, starter.params, x, [4, 7], return_raw=True)
    assert r.raw.shape == (2, 1, 1) and r.maps.shape == (2, 16, 16)  # conv5 by default
    r3 = G.gradcam(starter, starter.params, x, [4, 7], layer="conv3", return_raw=True)
    assert r3.raw.shape == (2, 4, 4)
    assert np.ptp(np.asarray(r3.maps)) > 0
    assert np.all(np.isfinite(np.asarray(r.maps)))


# ---------------------------------------------------------------------------------------------
# Guided Backprop
# ---------------------------------------------------------------------------------------------
def test_guided_relu_backward():
    x = jnp.array([-1.0, 2.0, 3.0, -4.0])
    g = jnp.array([1.0, 1.0, -1.0, -1.0])
    _, vjp = jax.vjp(G.guided_relu, x)
    np.testing.assert_array_equal(vjp(g)[0], [0.0, 1.0, 0.0, 0.0])


def test_guided_backprop_equals_gradient_without_relus(linear, images):
    gb = G.guided_backprop(linear, linear.params, images, 2, return_raw=True)
    g = G.vanilla_gradient(linear, linear.params, images, 2, return_raw=True)
    np.testing.assert_allclose(gb.raw, g.raw, rtol=1e-5, atol=1e-7)


def test_guided_backprop_differs_only_through_relus(starter):
    x = jax.random.uniform(jax.random.key(4), (2, 16, 16, 3))
    gb = G.guided_backprop(starter, starter.params, x, 3, return_raw=True)
    g = G.vanilla_gradient(starter, starter.params, x, 3, return_raw=True)
    assert not np.allclose(gb.raw, g.raw, atol=1e-3 * float(np.abs(g.raw).max()))
    np.testing.assert_allclose(gb.scores, g.scores, rtol=1e-6)

    # the same ReLU replacement with the ordinary ReLU gradient gives the vanilla gradient
    @jax.custom_vjp
    def plain_relu(h):
        return jnp.maximum(h, 0.0)

    plain_relu.defvjp(lambda h: (plain_relu(h), h),
                      lambda h, ct: (jnp.where(h > 0, ct, 0.0),))

    def f(im):
        return apply_with_relu(starter, starter.params, im, ("logits",), plain_relu
                               )["logits"][:, 3].sum()

    np.testing.assert_allclose(jax.jit(jax.grad(f))(x), g.raw, rtol=1e-4, atol=1e-6)
