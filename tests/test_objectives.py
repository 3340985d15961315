"""Objectives: values, batched units, crops, algebra laws, validation, pytree structure."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lucidax.models as lm
from lucidax.visualize import objectives as obj

B = 4


@pytest.fixture(scope="module")
def acts():
    rng = np.random.default_rng(0)
    return {
        "conv": jnp.asarray(rng.normal(size=(B, 5, 6, 7)), jnp.float32),
        "fc": jnp.asarray(rng.normal(size=(B, 10)), jnp.float32),
        "input": jnp.asarray(rng.uniform(size=(B, 8, 8, 3)), jnp.float32),
    }


class _Tiny(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(7, (3, 3), name="conv")(x))
        return nn.Dense(10, name="fc")(x.mean((1, 2)))


@pytest.fixture(scope="module")
def model():
    mod = _Tiny()
    params = jax.jit(mod.init)(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))["params"]
    return lm.wrap(mod, params, input_spec=lm.InputSpec(side=16), layer_names=["conv", "fc"],
                   logits_layer="fc", labels=[f"c{i}" for i in range(10)], name="tiny")


def _np(x):
    return np.asarray(x, np.float64)


# -- values ------------------------------------------------------------------------------------
def test_channel_neuron_layer_values(acts):
    a = _np(acts["conv"])
    np.testing.assert_allclose(obj.channel("conv", 3)(acts), a[..., 3].mean((1, 2)), rtol=1e-5)
    np.testing.assert_allclose(obj.neuron("conv", 2)(acts), a[:, 2, 3, 2], rtol=1e-5)
    np.testing.assert_allclose(obj.neuron("conv", 2, x=1, y=4)(acts), a[:, 4, 1, 2], rtol=1e-5)
    np.testing.assert_allclose(obj.layer("conv")(acts), (a**2).mean((1, 2, 3)), rtol=1e-5)
    d = _np(acts["fc"])
    np.testing.assert_allclose(obj.channel("fc", 7)(acts), d[:, 7], rtol=1e-5)
    np.testing.assert_allclose(obj.class_logit("fc", 7)(acts), d[:, 7], rtol=1e-5)
    p = np.exp(d) / np.exp(d).sum(1, keepdims=True)
    np.testing.assert_allclose(obj.class_probability("fc", 7)(acts), p[:, 7], rtol=1e-5)


def test_batched_units_read_one_unit_per_image(acts):
    units = [6, 0, 3, 3]
    batched = obj.channel("conv", units)
    assert batched.batch == B and batched.unit_ids == (6, 0, 3, 3)
    want = [float(obj.channel("conv", u)(acts)[i]) for i, u in enumerate(units)]
    np.testing.assert_allclose(batched(acts), want, rtol=1e-5)
    want = [float(obj.neuron("conv", u)(acts)[i]) for i, u in enumerate(units)]
    np.testing.assert_allclose(obj.neuron("conv", np.array(units))(acts), want, rtol=1e-5)
    assert obj.channel("conv", range(4)).unit_ids == (0, 1, 2, 3)


def test_direction_values(acts):
    a = _np(acts["conv"])
    v = np.arange(7, dtype=np.float32)
    np.testing.assert_allclose(obj.direction("conv", v)(acts), (a @ v).mean((1, 2)), rtol=1e-5)
    per = np.eye(7, dtype=np.float32)[[1, 2, 3, 4]]
    np.testing.assert_allclose(obj.direction("conv", per)(acts),
                               [a[i, ..., i + 1].mean() for i in range(B)], rtol=1e-5)
    np.testing.assert_allclose(obj.direction_neuron("conv", v)(acts), a[:, 2, 3] @ v, rtol=1e-5)


def test_crops_average_per_image(acts):
    """Rows of a layer may be n contiguous copies per image; B comes from "input"."""
    rng = np.random.default_rng(1)
    rows = jnp.asarray(rng.normal(size=(B * 3, 5, 6, 7)), jnp.float32)
    a = {"conv": rows, "input": acts["input"]}
    vals = obj.channel("conv", [0, 1, 2, 3])(a)
    want = _np(rows).reshape(B, 3, 5, 6, 7)[np.arange(B), :, :, :, np.arange(B)].mean((1, 2, 3))
    np.testing.assert_allclose(vals, want, rtol=1e-5)
    assert vals.shape == (B,)
    assert obj.total_variation()(a).shape == (B,)


def test_diversity_and_alignment(acts):
    same = {"conv": jnp.broadcast_to(acts["conv"][:1], acts["conv"].shape)}
    np.testing.assert_allclose(obj.diversity("conv")(same), -(B - 1) / B * np.ones(B), rtol=1e-5)
    np.testing.assert_allclose(obj.alignment("conv")(same), np.zeros(B), atol=1e-6)
    # images with disjoint active channels have orthogonal Gram matrices: no penalty
    eye = jnp.eye(B, 7)[:, None, None, :] * jnp.ones((B, 3, 3, 7))
    np.testing.assert_allclose(obj.diversity("conv")({"conv": eye}), np.zeros(B), atol=1e-6)
    assert obj.diversity("conv").couples_batch and not obj.channel("conv", 0).couples_batch
    al = obj.alignment("conv")(acts)
    assert al.shape == (B,) and np.all(np.asarray(al) < 0)


def test_penalties(acts):
    x = _np(acts["input"])
    np.testing.assert_allclose(obj.l1()(acts), np.abs(x - 0.5).sum((1, 2, 3)), rtol=1e-5)
    tv = np.abs(np.diff(x, axis=1)).sum((1, 2, 3)) + np.abs(np.diff(x, axis=2)).sum((1, 2, 3))
    np.testing.assert_allclose(obj.total_variation()(acts), tv, rtol=1e-5)
    flat = {"input": jnp.full((2, 8, 8, 3), 0.3)}
    np.testing.assert_allclose(obj.blur_input_each_step()(flat), [0.0, 0.0], atol=1e-8)
    assert np.all(np.asarray(obj.blur_input_each_step()(acts)) > 0)


def test_channel_interpolate(acts):
    a = _np(acts["conv"])
    v = obj.channel_interpolate("conv", 1, "conv", 5)(acts)
    t = np.arange(B) / (B - 1)
    want = (1 - t) * a[..., 1].mean((1, 2)) + t * a[..., 5].mean((1, 2))
    np.testing.assert_allclose(v, want, rtol=1e-5)


def test_custom_objective(acts):
    o = obj.Objective(lambda ac: ac["fc"][:, 0] * 2.0, layers="fc", name="twice")
    np.testing.assert_allclose(o(acts), 2 * _np(acts["fc"])[:, 0], rtol=1e-6)
    np.testing.assert_allclose((o - o)(acts), np.zeros(B), atol=1e-6)
    with pytest.raises(KeyError, match="nope"):
        obj.channel("nope", 0)(acts)


# -- algebra laws ------------------------------------------------------------------------------
_BASES = [
    lambda: obj.channel("conv", 2),
    lambda: obj.channel("conv", [0, 1, 5, 6]),
    lambda: obj.neuron("fc", 3),
    lambda: obj.layer("conv"),
    lambda: obj.total_variation(),
    lambda: obj.diversity("conv"),
]
weights = st.floats(-4, 4, allow_nan=False, width=32)
bases = st.integers(0, len(_BASES) - 1)


@settings(max_examples=10, deadline=None)
@given(i=bases, j=bases, a=weights, b=weights)
def test_linear_combination_law(acts, i, j, a, b):
    o1, o2 = _BASES[i](), _BASES[j]()
    lhs = (a * o1 + o2 * b)(acts)
    rhs = a * _np(o1(acts)) + b * _np(o2(acts))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose((o1 - o2)(acts), _np(o1(acts)) - _np(o2(acts)), rtol=1e-4,
                               atol=1e-3)
    np.testing.assert_allclose((-o1)(acts), -_np(o1(acts)), rtol=1e-6)
    if abs(a) > 1e-2:
        np.testing.assert_allclose((o1 / a)(acts), _np(o1(acts)) / a, rtol=1e-4, atol=1e-4)


@settings(max_examples=8, deadline=None)
@given(idx=st.lists(bases, min_size=1, max_size=4))
def test_sum_law(acts, idx):
    objs = [_BASES[i]() for i in idx]
    want = np.sum([_np(o(acts)) for o in objs], axis=0)
    np.testing.assert_allclose(sum(objs)(acts), want, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(obj.Objective.sum(objs)(acts), want, rtol=1e-4, atol=1e-3)
    total = sum(objs)
    assert set(total.layers) == {name for o in objs for name in o.layers}


def test_algebra_rejects_non_scalars():
    with pytest.raises(TypeError):
        obj.channel("conv", 0) * obj.channel("conv", 1)
    with pytest.raises(TypeError):
        obj.channel("conv", 0) * "2"
    with pytest.raises(ValueError, match="batch"):
        obj.channel("conv", [0, 1]) + obj.channel("conv", [0, 1, 2])


# -- structure and metadata --------------------------------------------------------------------
def test_units_are_leaves_structure_is_static():
    t1 = jax.tree.structure(obj.channel("conv", [1, 2]) - 0.1 * obj.total_variation())
    t2 = jax.tree.structure(obj.channel("conv", [5, 6]) - 0.3 * obj.total_variation())
    t3 = jax.tree.structure(obj.channel("fc", [5, 6]) - 0.3 * obj.total_variation())
    assert t1 == t2
    assert t1 != t3
    o = 2 * obj.channel("conv", [3, 9]) + obj.neuron("fc", 4)
    assert o.max_unit == {"conv": 9, "fc": 4}
    assert o.layers == ("conv", "fc") and o.model_layers == ("conv", "fc")
    assert (obj.channel("conv", 1) - obj.l1()).model_layers == ("conv",)
    assert "channel(conv, 3..9)" in repr(obj.channel("conv", range(3, 10)))


def test_jit_traces_units(acts):
    traces = []

    @jax.jit
    def f(o, a):
        traces.append(1)
        return o(a)

    np.testing.assert_allclose(f(obj.channel("conv", [0, 1, 2, 3]), acts),
                               obj.channel("conv", [0, 1, 2, 3])(acts), rtol=1e-6)
    f(obj.channel("conv", [3, 2, 1, 0]), acts)
    assert len(traces) == 1


def test_pad_batch(acts):
    o = obj.channel("conv", [1, 2, 3]) + obj.l1()
    p = o.pad_batch(4)
    assert p.batch == 4
    vals = p(acts)
    np.testing.assert_allclose(vals[:3], o({k: v[:3] for k, v in acts.items()}), rtol=1e-5)
    with pytest.raises(ValueError, match="couples"):
        (obj.channel("conv", [1, 2]) + obj.diversity("conv")).pad_batch(4)


# -- validation --------------------------------------------------------------------------------
def test_validate(model):
    assert obj.channel("conv", 6).validate(model) is not None
    (obj.channel("conv", [0, 6]) - obj.total_variation()).validate(model)
    with pytest.raises(lm.UnknownLayerError, match="conv.*fc"):
        obj.channel("conv9", 0).validate(model)
    with pytest.raises(ValueError, match="7 channels"):
        obj.channel("conv", [0, 7]).validate(model)
    with pytest.raises(ValueError, match="10 channels"):
        obj.class_logit(model, 10).validate(model)
    with pytest.raises(ValueError, match="length 3"):
        obj.direction("conv", np.ones(3)).validate(model)
    with pytest.raises(TypeError):
        obj.channel("conv", 1.5)
    with pytest.raises(ValueError, match="empty"):
        obj.channel("conv", [])


def test_class_objectives_from_model(model, acts):
    o = obj.class_logit(model, "c3")
    assert o.layers == ("fc",) and o.unit_ids == (3,)
    np.testing.assert_allclose(o(acts), _np(acts["fc"])[:, 3], rtol=1e-6)
    with pytest.raises(ValueError, match="c3"):
        obj.class_logit(model, "c33")


def test_pickle_roundtrip(acts):
    import pickle

    o = obj.channel("conv", [1, 2, 3, 4]) - 0.5 * obj.total_variation()
    back = pickle.loads(pickle.dumps(o))
    assert back.name == o.name and back.unit_ids == o.unit_ids and back.layers == o.layers
    np.testing.assert_allclose(back(acts), o(acts), rtol=1e-6)
