"""The model API itself: wrap(), layer validation, registry errors, shapes, weight round trips."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lucidax.models as lm
from lucidax.models._base import flatten_params, normalize_layers, unflatten_params


class GrayCNN(nn.Module):
    """A user's own model: one input channel, a sown intermediate."""

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(8, (3, 3), name="conv1")(x))
        x = nn.max_pool(x, (2, 2), (2, 2))
        x = nn.Conv(16, (3, 3), name="conv2")(x)
        self.sow("intermediates", "conv2_relu", nn.relu(x))
        x = nn.relu(x).mean(axis=(1, 2))
        return nn.Dense(4, name="head")(x)


@pytest.fixture(scope="module")
def gray_model():
    module = GrayCNN()
    params = module.init(jax.random.key(0), jnp.zeros((1, 32, 32, 1)))["params"]
    spec = lm.InputSpec(side=32, channels=1, normalization="none")
    model = lm.wrap(module, params, input_spec=spec, name="gray", logits_layer="head")
    return module, params, model


def test_wrap_flax_module_with_one_input_channel(gray_model):
    module, params, model = gray_model
    assert model.layer_names == ("conv1", "conv2", "conv2_relu", "head", "output")
    assert model.input_spec.channels == 1
    x = jax.random.uniform(jax.random.key(1), (3, 32, 32, 1))
    acts = model.apply(model.params, x, layers=("conv2_relu", "head", "conv1"))
    assert list(acts) == ["conv2_relu", "head", "conv1"]  # the order asked for
    assert acts["conv1"].shape == (3, 32, 32, 8)
    assert acts["conv2_relu"].shape == (3, 16, 16, 16)
    np.testing.assert_allclose(acts["head"], module.apply({"params": params}, x), rtol=1e-5)
    assert float(acts["conv2_relu"].min()) >= 0.0
    assert model.channels("conv2") == 16
    assert model.layers["head"].kind == "dense"
    assert model.layer_shape("conv2", side=32) == (16, 16, 16)


def test_wrapped_model_is_jittable_and_differentiable(gray_model):
    _, _, model = gray_model
    x = jax.random.uniform(jax.random.key(2), (2, 32, 32, 1))

    def score(img):
        return model.apply(model.params, img, layers=("conv2",))["conv2"][..., 3].mean()

    g = jax.jit(jax.grad(score))(x)
    assert g.shape == x.shape and float(jnp.abs(g).sum()) > 0


def test_wrap_pure_function_multispectral():
    def apply_fn(params, images, layers):
        a = images @ params["w"]  # [N,H,W,5] -> [N,H,W,2]
        out = {"mix": a, "pooled": a.mean(axis=(1, 2))}
        return {k: out[k] for k in layers}

    params = {"w": jnp.ones((5, 2))}
    spec = lm.InputSpec(side=8, channels=5)
    model = lm.wrap(apply_fn, params, input_spec=spec, layer_names=["mix", "pooled"])
    acts = model.apply(params, jnp.ones((1, 8, 8, 5)), layers="pooled")
    np.testing.assert_allclose(acts["pooled"], [[5.0, 5.0]])
    with pytest.raises(ValueError, match="layer_names"):
        lm.wrap(apply_fn, params, input_spec=spec)


@pytest.mark.parametrize(
    "bad, pattern",
    [
        ("conv3", r"Unknown layer 'conv3'.*Did you mean 'conv2', 'conv1'"),
        ("head2", r"Did you mean 'head'"),
    ],
)
def test_unknown_layer_lists_valid_names(gray_model, bad, pattern):
    _, _, model = gray_model
    with pytest.raises(lm.UnknownLayerError, match=pattern) as info:
        model.apply(model.params, jnp.zeros((1, 32, 32, 1)), layers=(bad,))
    assert "Valid layers: conv1, conv2, conv2_relu, head, output" in str(info.value)


@pytest.mark.parametrize(
    "images, error, pattern",
    [
        (np.zeros((32, 32, 1), np.float32), ValueError, "batch"),
        (np.zeros((1, 32, 32, 3), np.float32), ValueError, "1 input channel"),
        (np.zeros((1, 32, 32, 1), np.uint8), TypeError, "floating point"),
    ],
)
def test_bad_images_are_explained(gray_model, images, error, pattern):
    _, _, model = gray_model
    with pytest.raises(error, match=pattern):
        model.apply(model.params, images, layers=("conv1",))


def test_unknown_model_suggests_close_match():
    with pytest.raises(lm.UnknownModelError, match="Unknown model 'inceptionv2'"):
        lm.load("inceptionv2")


def test_normalize_layers_forms():
    valid = ["a", "b", "c"]
    assert normalize_layers(None, valid) == ("a", "b", "c")
    assert normalize_layers("all", valid) == ("a", "b", "c")
    assert normalize_layers("c, a", valid) == ("c", "a")
    assert normalize_layers(["b", "b"], valid) == ("b",)
    with pytest.raises(ValueError, match="No layers"):
        normalize_layers([], valid)


def test_flatten_roundtrip():
    tree = {"a": {"kernel": np.ones((2, 2)), "bias": np.zeros(2)}, "b": {"c": {"d": np.eye(3)}}}
    flat = flatten_params(tree)
    assert set(flat) == {"a/kernel", "a/bias", "b/c/d"}
    back = unflatten_params(flat)
    np.testing.assert_array_equal(back["b"]["c"]["d"], np.eye(3))
