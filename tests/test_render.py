"""The render engine on a tiny CNN: optimization works, determinism per image, compile cache,
early errors, NaN reporting, resizing/crops, thresholds, multi-device sharding."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lucidax.models as lm
from lucidax import visualize as viz
from lucidax.visualize import _render as render_mod

SIDE = 32
STEPS = 24
KW = dict(size=SIDE, steps=STEPS, chunk=8, progress=False, transforms=[viz.jitter(2)],
          param=viz.pixel(), optimizer=0.2, thresholds=(0, 8, STEPS), model_side=False)


class TinyCNN(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(8, (3, 3), name="conv1")(x))
        x = nn.relu(nn.Conv(16, (3, 3), strides=2, name="conv2")(x))
        return nn.Dense(10, name="fc")(x.mean((1, 2)))


def tiny_model():
    mod = TinyCNN()
    params = jax.jit(mod.init)(jax.random.key(1), jnp.zeros((1, SIDE, SIDE, 3)))["params"]
    return lm.wrap(mod, params, input_spec=lm.InputSpec(side=SIDE),
                   layer_names=["conv1", "conv2", "fc"], logits_layer="fc", name="tiny")


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def batched(model):
    traces = render_mod._TRACE_COUNT["chunk"]
    result = viz.render(model, viz.channel("conv2", [0, 1, 2, 3]), **KW)
    return result, render_mod._TRACE_COUNT["chunk"] - traces


def _channel_means(model, images, units):
    """Channel means averaged over the 9 crops jitter(2) can draw (the optimized quantity)."""
    images = jnp.asarray(images)
    crops = [images[:, y : y + SIDE - 2, x : x + SIDE - 2] for y in range(3) for x in range(3)]
    acts = model.apply(model.params, jnp.concatenate(crops), ("conv2",))["conv2"]
    means = np.asarray(acts.mean((1, 2))).reshape(9, len(images), -1).mean(0)
    return means[np.arange(len(units)), units] if units is not None else means


def test_result_shapes_and_thresholds(batched):
    r, _ = batched
    assert r.images.shape == (4, SIDE, SIDE, 3) and r.images.dtype == np.float32
    assert r.loss.shape == (STEPS, 4)
    assert r.all_finite and r.failed_units == ()
    np.testing.assert_array_equal(r.unit_ids, [0, 1, 2, 3])
    np.testing.assert_allclose(r.objective_values, -r.loss[-1])
    assert sorted(r.threshold_images) == [0, 8, STEPS]
    np.testing.assert_array_equal(r.threshold_images[STEPS], r.images)
    # step 0 is the initialization: sigmoid pixels start close to flat grey
    assert np.abs(r.threshold_images[0] - 0.5).max() < 0.1
    assert not np.allclose(r.threshold_images[8], r.threshold_images[0])
    assert r.images.min() >= 0 and r.images.max() <= 1


def test_channel_objective_is_maximized(model, batched):
    r, _ = batched
    units = np.arange(4)
    noise = np.random.default_rng(0).uniform(size=(16, SIDE, SIDE, 3)).astype(np.float32)
    baseline = _channel_means(model, noise, None)[:, :4]  # [16 noise images, 4 channels]
    rendered = _channel_means(model, r.images, units)
    start = _channel_means(model, r.threshold_images[0], units)
    margin = baseline.max(0) + 10 * baseline.std(0)
    assert np.all(rendered > margin), (rendered, margin)
    assert np.all(rendered > start + 0.2), (rendered, start)
    assert np.all(r.loss[-1] < r.loss[0])  # progress on its own (transformed) objective


def test_second_render_with_other_units_does_not_recompile(model, batched):
    r, first_traces = batched
    assert first_traces == 1  # 24 steps = 3 chunks of 8: one program
    before = render_mod._TRACE_COUNT["chunk"]
    r2 = viz.render(model, viz.channel("conv2", [4, 5, 6, 7]), **KW)
    assert render_mod._TRACE_COUNT["chunk"] == before
    assert not np.allclose(r2.images, r.images)
    np.testing.assert_array_equal(r2.unit_ids, [4, 5, 6, 7])


def test_with_params_copy_reuses_the_program(model, batched):
    """The chunk program lives with the model (Model.program): a with_params copy (new
    weights) and a later call on the original reuse it; the new weights are used."""
    before = render_mod._TRACE_COUNT["chunk"]
    other = model.with_params(jax.tree.map(lambda p: p * 1.5, model.params))
    r_other = viz.render(other, viz.channel("conv2", [0, 1, 2, 3]), **KW)
    r_again = viz.render(model, viz.channel("conv2", [0, 1, 2, 3]), **KW)
    assert render_mod._TRACE_COUNT["chunk"] == before
    r, _ = batched
    np.testing.assert_allclose(r_again.images, r.images, atol=1e-5)
    assert not np.allclose(r_other.images, r.images)


def test_batched_equals_unbatched_per_image(model, batched):
    r, _ = batched
    for unit in (2, 0):
        single = viz.render(model, viz.channel("conv2", unit), **KW)
        assert single.images.shape == (1, SIDE, SIDE, 3)
        np.testing.assert_allclose(single.images[0], r.images[unit], atol=2e-4)
        np.testing.assert_allclose(single.loss[:, 0], r.loss[:, unit], rtol=1e-3, atol=1e-4)


def test_errors_before_compiling(model):
    before = render_mod._TRACE_COUNT["chunk"]
    with pytest.raises(lm.UnknownLayerError, match="conv2"):
        viz.render(model, viz.channel("conv3", 0), **KW)
    with pytest.raises(ValueError, match="16 channels"):
        viz.render(model, viz.channel("conv2", [0, 16]), **KW)
    with pytest.raises(ValueError, match="batch=3"):
        viz.render(model, viz.channel("conv2", [0, 1]), batch=3, **KW)
    with pytest.raises(ValueError, match="unit_ids"):
        viz.render(model, viz.channel("conv2", [0, 1]), unit_ids=[1, 2, 3], **KW)
    with pytest.raises(ValueError, match="thresholds"):
        viz.render(model, viz.channel("conv2", 0), **{**KW, "thresholds": (99,)})
    with pytest.raises(TypeError, match="Objective"):
        viz.render(model, "conv2:0", **KW)
    assert render_mod._TRACE_COUNT["chunk"] == before


def test_nan_images_are_flagged(model):
    def poisoned(acts):
        v = acts["conv2"].mean(axis=(1, 2, 3))
        return v * jnp.where(jnp.arange(v.shape[0]) == 1, jnp.nan, 1.0)

    objective = viz.Objective(poisoned, layers=("conv2",), name="poisoned")
    with pytest.warns(viz.NonFiniteRenderWarning, match="1 of 3"):
        r = viz.render(model, objective, batch=3, size=SIDE, steps=4, chunk=4, progress=False,
                       transforms=None)
    np.testing.assert_array_equal(r.finite, [True, False, True])
    assert r.failed_units == (1,)
    assert np.all(np.isfinite(r.images[[0, 2]])) and not np.all(np.isfinite(r.images[1]))


def _shape_recording_model(side):
    seen = []

    def fn(params, images, layers):
        seen.append(tuple(images.shape))
        return {"out": jnp.mean(images * params["w"], axis=(1, 2))}

    m = lm.wrap(fn, {"w": jnp.ones(3)}, input_spec=lm.InputSpec(side=side), layer_names=["out"])
    return m, seen


def test_upsampling_to_model_side_and_crops():
    m, seen = _shape_recording_model(48)
    common = dict(size=SIDE, steps=2, chunk=2, progress=False, param=viz.pixel())
    viz.render(m, viz.channel("out", 0), transforms=None, **common)
    assert seen[-1] == (1, 48, 48, 3)
    viz.render(m, viz.channel("out", 0), transforms=None, model_side=0, **common)
    assert seen[-1] == (1, SIDE, SIDE, 3)
    viz.render(m, viz.channel("out", 1), transforms=[viz.pad(4)], model_side=False, **common)
    assert seen[-1] == (1, SIDE + 8, SIDE + 8, 3)
    r = viz.render(m, viz.channel("out", [0, 2]), transforms=[viz.random_crops(3)], **common)
    assert seen[-1] == (6, 48, 48, 3)  # 3 crops per image, upsampled to the model side
    assert r.loss.shape == (2, 2) and r.all_finite
    # a plain function transform (no per-image key batches) runs per image
    viz.render(m, viz.channel("out", [0, 2]), transforms=lambda k, x: x[:, 2:-2, 2:-2],
               **common)
    assert seen[-1] == (2, 48, 48, 3)


def test_penalty_only_objective_skips_the_model():
    m, seen = _shape_recording_model(48)
    n = len(seen)
    r = viz.render(m, -viz.total_variation(), batch=2, size=16, steps=20, chunk=20,
                   progress=False, param=viz.pixel(sd=0.5), transforms=None, optimizer=0.1)
    assert len(seen) == n  # the model never ran
    tv = viz.total_variation()({"input": jnp.asarray(r.images)})
    assert np.all(r.loss[-1] < r.loss[0] / 2)  # loss = -objective = total variation
    np.testing.assert_allclose(tv, r.loss[-1], rtol=0.2)


def test_positional_params_and_init(model):
    kw = dict(size=SIDE, steps=4, chunk=4, progress=False, transforms=None, param=viz.pixel())
    a = viz.render(model, model.params, viz.channel("conv1", [1, 2]), **kw)
    b = viz.render(model, viz.channel("conv1", [1, 2]), **kw)
    np.testing.assert_array_equal(a.images, b.images)
    c = viz.render(model, viz.channel("conv1", [1, 2]), init=a.params, **kw)
    assert not np.allclose(c.images, a.images)  # continued from a's parameters
    with pytest.raises(ValueError, match="leading axis 2"):
        viz.render(model, viz.channel("conv1", [1, 2]), init=np.zeros((3, SIDE, SIDE, 3)), **kw)


_MULTI_DEVICE = textwrap.dedent(
    """
    import json, os, sys
    sys.path.insert(0, os.path.dirname({test_file!r}))
    import jax, numpy as np
    from test_render import tiny_model, SIDE
    from lucidax import visualize as viz
    model = tiny_model()
    kw = dict(size=SIDE, steps=6, chunk=3, progress=False, transforms=[viz.jitter(2)])
    out = {{"devices": len(jax.devices())}}
    for b in (3,):  # 3 images over 4 devices: padded to 4, the pad dropped
        units = list(range(b))
        multi = viz.render(model, viz.channel("conv2", units), **kw)
        one = viz.render(model, viz.channel("conv2", units), devices=jax.devices()[:1], **kw)
        out[f"diff{{b}}"] = float(np.abs(multi.images - one.images).max())
        out[f"used{{b}}"] = multi.devices
        out[f"shape{{b}}"] = list(multi.images.shape)
    print(json.dumps(out))
    """
)


def test_sharded_over_four_devices_matches_one_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    code = _MULTI_DEVICE.format(test_file=os.path.abspath(__file__))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["devices"] == 4
    assert out["used3"] == 4  # 3 images padded to 4 and sharded
    assert out["shape3"] == [3, SIDE, SIDE, 3]
    assert out["diff3"] < 1e-4, out


def test_no_python_warnings_from_donation(model):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        viz.render(model, viz.channel("conv2", [0, 1, 2, 3]), **KW)


def test_fast_grads_match_standard_gradients():
    """The render loop's conv / max-pool input gradients equal JAX's standard ones."""
    from lucidax.models import _layers as L
    from lucidax.models import fastgrad

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = L.relu(L.Conv(4, 7, 2, name="a")(x))  # stride 2, odd kernel, asymmetric pad
            x = L.max_pool(x, 3, 2)  # ties at 0 after the ReLU
            x = L.relu(L.Conv(5, 3, 1, padding=1, name="b")(x))
            x = L.max_pool(x, 3, 1)
            x = L.Conv(6, 4, 2, name="c")(x)  # even kernel
            return {"out": L.Conv(3, 1, 2, name="d")(x)}  # 1x1 stride 2

    net = Net()
    x = jax.random.uniform(jax.random.key(0), (2, 37, 35, 3))
    params = jax.jit(net.init)(jax.random.key(1), x)["params"]
    out = jax.eval_shape(lambda p: net.apply({"params": p}, x), params)["out"]
    w = jax.random.normal(jax.random.key(2), out.shape)

    def fn(p, v):
        return net.apply({"params": p}, v)

    def loss_std(v):
        return jnp.sum(fn(params, v)["out"] * w)

    def loss_fast(v):
        return jnp.sum(fastgrad.call(fn, params, v)["out"] * w)

    v1, g1 = jax.jit(jax.value_and_grad(loss_std))(x)
    v2, g2 = jax.jit(jax.value_and_grad(loss_fast))(x)
    assert float(v1) == float(v2)
    np.testing.assert_allclose(g2, g1, rtol=1e-4, atol=1e-5 * float(jnp.abs(g1).max()))


def test_redirected_relu_starts_dead_units():
    """A unit that no image activates: its gradient is 0 (nothing moves) unless redirected."""

    def fn(params, images, layers):
        pre = jnp.einsum("nhwc,cd->nhwd", images, params["w"]) - 5.0  # always negative
        return {"pre": pre, "relu": jnp.maximum(pre, 0.0)}

    m = lm.wrap(fn, {"w": jnp.ones((3, 2))}, input_spec=lm.InputSpec(side=16),
                layer_names=["pre", "relu"])
    kw = dict(size=16, steps=6, chunk=6, progress=False, transforms=None, param=viz.pixel(),
              optimizer=0.2, thresholds=(0,))
    plain = viz.render(m, viz.channel("relu", 0), **kw)
    np.testing.assert_array_equal(plain.images, plain.threshold_images[0])  # stuck
    redirected = viz.render(m, viz.channel("relu", 0), redirected_relu_steps=6, **kw)
    assert redirected.images.mean() > plain.images.mean() + 0.2  # brighter = less negative
    half = viz.render(m, viz.channel("relu", 0), redirected_relu_steps=3, **kw)
    assert plain.images.mean() < half.images.mean() < redirected.images.mean()


def test_render_job_units_keep_order_and_check_the_range():
    from lucidax.visualize import parse_units

    assert parse_units("7,0-2,1", 8) == [7, 0, 1, 2]
    assert parse_units("all", 3) == [0, 1, 2]
    with pytest.raises(ValueError, match=r"out of range.*0-7"):
        parse_units("3,8", 8)
    with pytest.raises(ValueError, match="end is before the start"):
        parse_units("5-2", 8)
