"""The model zoo architectures (InceptionV1, ResNet-50, VGG-16) without torch.

Numerical equivalence with PyTorch references is in ``test_zoo_torch.py``; here: names,
shapes, error messages, early stopping (counted in the traced program), pre-ReLU twins,
random initialization and the lucidax weight layout.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lucidax.models as lm
from lucidax.models._base import flatten_params
from lucidax.models._layers import _adaptive_matrix, same_padding
from lucidax.models._registry import get_entry

ZOO = ("inceptionv1", "resnet50", "vgg16")
SMALL_SIDE = {"inceptionv1": 64, "resnet50": 64, "vgg16": 32}

INCEPTION_LAYERS = [
    "conv2d0_pre_relu", "conv2d0", "maxpool0", "conv2d1_pre_relu", "conv2d1",
    "conv2d2_pre_relu", "conv2d2", "maxpool1", "mixed3a_pre_relu", "mixed3a",
    "mixed3b_pre_relu", "mixed3b", "maxpool4", "mixed4a_pre_relu", "mixed4a",
    "mixed4b_pre_relu", "mixed4b", "mixed4c_pre_relu", "mixed4c", "mixed4d_pre_relu",
    "mixed4d", "mixed4e_pre_relu", "mixed4e", "maxpool10", "mixed5a_pre_relu", "mixed5a",
    "mixed5b_pre_relu", "mixed5b", "avgpool0", "softmax2_pre_activation_matmul", "softmax2",
]  # fmt: skip
RESNET_BLOCKS = {1: 3, 2: 4, 3: 6, 4: 3}


@pytest.fixture(scope="module")
def models():
    return {name: lm.load(name, seed=0) for name in ZOO}


class _SmallActs(dict):
    """Every layer of a model for a fixed batch of 2 small images, computed (one compile per
    model) on first access: under pytest-xdist a worker compiles only the models its tests
    read (a full InceptionV1 compile is seconds)."""

    def __init__(self, models):
        super().__init__()
        self.models = models

    def __missing__(self, name):
        model, side = self.models[name], SMALL_SIDE[name]
        x = jax.random.uniform(jax.random.key(1), (2, side, side, 3))
        self[name] = jax.jit(lambda p, im: model.apply(p, im))(model.params, x)
        return self[name]


@pytest.fixture(scope="module")
def small_acts(models):
    return _SmallActs(models)


def _count(jaxpr, primitive: str) -> int:
    """Occurrences of ``primitive`` in a jaxpr, sub-jaxprs (pjit, custom_jvp, ...) included."""
    n = 0
    for eqn in jaxpr.eqns:
        n += eqn.primitive.name == primitive
        for value in eqn.params.values():
            for sub in value if isinstance(value, tuple | list) else (value,):
                if isinstance(sub, jax.extend.core.ClosedJaxpr):
                    n += _count(sub.jaxpr, primitive)
                elif isinstance(sub, jax.extend.core.Jaxpr):
                    n += _count(sub, primitive)
    return n


def _ops(model, layers, primitive="conv_general_dilated", side=64):
    x = jnp.zeros((1, side, side, 3))
    jaxpr = jax.make_jaxpr(lambda p, im: model.apply(p, im, layers))(model.params, x)
    return _count(jaxpr.jaxpr, primitive)


# -- registry and names --------------------------------------------------------------------------


def test_zoo_is_registered(models):
    assert set(ZOO) <= set(lm.list_models())
    for name, model in models.items():
        assert model.name == name
        assert model.input_spec.side == 224 and model.input_spec.value_range == (0.0, 1.0)
        assert model.logits_layer in model.layer_names
        assert model.weights_source == "random(seed=0)"
        assert get_entry(name).description


def test_layer_names_and_order(models):
    assert list(models["inceptionv1"].layer_names) == INCEPTION_LAYERS

    resnet = list(models["resnet50"].layer_names)
    blocks = [f"layer{s}.{b}" for s, n in RESNET_BLOCKS.items() for b in range(n)]
    expected = ["conv1", "bn1", "relu", "maxpool"]
    expected += [n for block in blocks for n in (f"{block}_pre_relu", block)]
    assert resnet == expected + ["avgpool", "fc"]

    vgg = list(models["vgg16"].layer_names)
    assert vgg == [f"features.{i}" for i in range(31)] + [
        "avgpool", "classifier.0", "classifier.1", "classifier.3", "classifier.4", "classifier.6"
    ]  # fmt: skip


def test_layer_infos_match_shapes(models):
    """kind, channels for every layer agree with the traced shapes; key shapes at 224 px."""
    for model in models.values():
        x = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
        shapes = jax.eval_shape(lambda p, im, m=model: m.apply(p, im), model.params, x)
        for name, info in model.layers.items():
            shape = shapes[name].shape
            assert info.kind == ("conv" if len(shape) == 4 else "dense"), name
            assert info.channels == shape[-1], name
            assert info.pre_relu == (
                name.endswith("_pre_relu") or name in _NEXT_IS_RELU.get(model.name, ())
            ), name
    expected = {
        "inceptionv1": {
            "conv2d0": (112, 112, 64), "maxpool0": (56, 56, 64), "conv2d2": (56, 56, 192),
            "maxpool1": (28, 28, 192), "mixed3b": (28, 28, 480), "mixed4a": (14, 14, 508),
            "mixed4e": (14, 14, 832), "maxpool10": (7, 7, 832), "mixed5b": (7, 7, 1024),
            "avgpool0": (1024,), "softmax2": (1008,),
        },
        "resnet50": {
            "conv1": (112, 112, 64), "maxpool": (56, 56, 64), "layer1.2": (56, 56, 256),
            "layer2.0": (28, 28, 512), "layer3.5": (14, 14, 1024),
            "layer3.5_pre_relu": (14, 14, 1024), "layer4.2": (7, 7, 2048),
            "avgpool": (2048,), "fc": (1000,),
        },
        "vgg16": {
            "features.0": (224, 224, 64), "features.4": (112, 112, 64),
            "features.29": (14, 14, 512), "features.30": (7, 7, 512), "avgpool": (7, 7, 512),
            "classifier.0": (4096,), "classifier.6": (1000,),
        },
    }  # fmt: skip
    for name, layers in expected.items():
        for layer, shape in layers.items():
            assert models[name].layer_shape(layer, 224) == shape, (name, layer)


_NEXT_IS_RELU = {  # pre-activation layers whose ReLU is the next layer (no "_pre_relu" suffix)
    "resnet50": ("bn1",),
    "vgg16": tuple(f"features.{i}" for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28))
    + ("classifier.0", "classifier.3"),
}


def test_odd_and_small_sides(models):
    """TF "SAME" padding: InceptionV1 takes any side (ceil divisions); VGG needs 32 px."""
    inc = models["inceptionv1"]
    assert inc.layer_shape("conv2d0", 65) == (33, 33, 64)
    assert inc.layer_shape("maxpool0", 65) == (17, 17, 64)
    assert inc.layer_shape("mixed5b", 65) == (3, 3, 1024)
    assert inc.layer_shape("softmax2", 1) == (1008,)
    assert models["resnet50"].layer_shape("layer4.2", 100) == (4, 4, 2048)
    vgg = models["vgg16"]
    assert vgg.input_spec.min_side == 32
    assert vgg.layer_shape("features.30", 32) == (1, 1, 512)
    assert vgg.layer_shape("avgpool", 32) == (7, 7, 512)
    with pytest.raises(ValueError, match="at least 32px"):
        vgg.apply(vgg.params, jnp.zeros((1, 31, 31, 3)), ("features.0",))


# -- errors --------------------------------------------------------------------------------------


def test_unknown_model_lists_and_suggests():
    with pytest.raises(lm.UnknownModelError) as info:
        lm.load("inceptionv2")
    msg = str(info.value)
    assert "Did you mean 'inceptionv1'" in msg
    for name in ZOO:
        assert name in msg
    with pytest.raises(lm.UnknownModelError, match="Did you mean 'resnet50'"):
        lm.load("resnet-50")


@pytest.mark.parametrize(
    "name, typo, match",
    [
        ("inceptionv1", "mixd4e", "mixed4e"),
        ("inceptionv1", "mixed4e_prerelu", "mixed4e_pre_relu"),
        ("resnet50", "layer3.6", "layer3.5"),
        ("vgg16", "classifier.5", "classifier.6"),
    ],
)
def test_unknown_layer_lists_and_suggests(models, name, typo, match):
    model = models[name]
    with pytest.raises(lm.UnknownLayerError) as info:
        model.apply(model.params, jnp.zeros((1, 32, 32, 3)), (typo,))
    msg = str(info.value)
    assert repr(typo) in msg
    assert f"Did you mean {match!r}" in msg or f", {match!r}" in msg
    assert model.layer_names[0] in msg and model.logits_layer in msg  # lists valid names


# -- early stopping ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, layers, convs",
    [
        ("inceptionv1", ("conv2d0_pre_relu",), 1),
        ("inceptionv1", ("maxpool1",), 3),
        ("inceptionv1", ("mixed3a",), 9),
        ("inceptionv1", ("mixed3b",), 15),
        ("inceptionv1", ("conv2d1", "mixed3b"), 15),  # the deepest decides
        ("inceptionv1", ("maxpool4",), 15),
        ("inceptionv1", ("mixed4a_pre_relu",), 21),
        ("inceptionv1", ("mixed5b",), 57),
        ("inceptionv1", ("softmax2",), 57),
        ("resnet50", ("relu",), 1),
        ("resnet50", ("layer1.0",), 5),  # 3 convs + downsample
        ("resnet50", ("layer1.2_pre_relu",), 11),
        ("resnet50", ("layer3.5",), 43),
        ("resnet50", ("fc",), 53),
        ("vgg16", ("features.1",), 1),
        ("vgg16", ("features.5",), 3),
        ("vgg16", ("features.30",), 13),
        ("vgg16", ("classifier.6",), 13),
    ],
)
def test_early_stop_counts_convolutions(models, name, layers, convs):
    assert _ops(models[name], layers) == convs


def test_early_stop_skips_dense_layers(models):
    assert _ops(models["inceptionv1"], ("mixed5b",), "dot_general") == 0
    assert _ops(models["inceptionv1"], ("softmax2",), "dot_general") == 1
    assert _ops(models["resnet50"], ("avgpool",), "dot_general") == 0
    assert _ops(models["resnet50"], ("fc",), "dot_general") == 1
    vgg = models["vgg16"]
    pooled = _ops(vgg, ("avgpool",), "dot_general", side=32)  # adaptive pool 1x1 -> 7x7
    assert _ops(vgg, ("classifier.1",), "dot_general", side=32) == pooled + 1
    assert _ops(vgg, ("classifier.6",), "dot_general", side=32) == pooled + 3


# -- values ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ZOO)
def test_pre_relu_twins(models, small_acts, name):
    """relu(pre) == post for every pre-activation layer; everything finite, NHWC at small side."""
    model, acts = models[name], small_acts[name]
    names = model.layer_names
    checked = 0
    for i, layer in enumerate(names):
        a = np.asarray(acts[layer])
        assert np.all(np.isfinite(a)), layer
        assert a.ndim == (4 if model.layers[layer].kind == "conv" else 2), layer
        assert a.shape[0] == 2 and a.shape[-1] == model.layers[layer].channels, layer
        if model.layers[layer].pre_relu:
            post = layer.removesuffix("_pre_relu") if layer.endswith("_pre_relu") else names[i + 1]
            np.testing.assert_array_equal(np.maximum(a, 0), np.asarray(acts[post]))
            assert a.min() < 0 < a.max(), layer  # a real pre-activation, not a copy
            checked += 1
    assert checked == sum(info.pre_relu for info in model.layers.values()) > 0


def test_softmax_and_logits(models, small_acts):
    acts = small_acts["inceptionv1"]
    probs = np.asarray(acts["softmax2"])
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    logits = np.asarray(acts["softmax2_pre_activation_matmul"])
    np.testing.assert_allclose(probs, jax.nn.softmax(logits), rtol=1e-5, atol=1e-7)
    # the mixed block is the ReLU of the concatenated branches
    assert acts["mixed4a"].shape[-1] == 192 + 204 + 48 + 64
    # ResNet's block output feeds the next block: pooled features are the spatial mean
    r = small_acts["resnet50"]
    np.testing.assert_allclose(r["avgpool"], np.mean(r["layer4.2"], axis=(1, 2)), rtol=1e-5)


def test_early_stop_gives_the_same_values(models, small_acts):
    model = models["inceptionv1"]
    x = jax.random.uniform(jax.random.key(1), (2, 64, 64, 3))
    early = jax.jit(lambda p, im: model.apply(p, im, ("mixed3b", "conv2d0")))(model.params, x)
    for layer in ("mixed3b", "conv2d0"):
        np.testing.assert_allclose(early[layer], small_acts["inceptionv1"][layer], rtol=1e-6)


def test_input_gradient_is_finite_and_nonzero(models):
    """Feature visualization needs d(activation)/d(image) through -inf padded pools and LRN."""
    model = models["inceptionv1"]

    def objective(x):
        return model.apply(model.params, x, ("mixed3a_pre_relu",))["mixed3a_pre_relu"].mean()

    x = jax.random.uniform(jax.random.key(2), (1, 32, 32, 3))
    g = np.asarray(jax.jit(jax.grad(objective))(x))
    assert np.all(np.isfinite(g)) and np.abs(g).max() > 0


# -- parameters ------------------------------------------------------------------------------------


def test_random_init_is_seeded_and_scaled(models):
    a = models["inceptionv1"].params
    b = lm.load("inceptionv1", seed=0).params
    c = lm.load("inceptionv1", seed=1).params
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.allclose(a["conv2d0"]["kernel"], c["conv2d0"]["kernel"])
    k = np.asarray(a["mixed4a"]["3x3"]["kernel"])  # He scaling (fan-in 3*3*96)
    assert abs(k.std() / np.sqrt(2 / (9 * 96)) - 1) < 0.05 and abs(k.mean()) < 1e-3
    bn = models["resnet50"].params["layer2.0"]["downsample.1"]
    np.testing.assert_array_equal(bn["mean"], 0.0)
    np.testing.assert_array_equal(bn["var"], 1.0)
    assert set(bn) == {"scale", "bias", "mean", "var"}  # BatchNorm stats live in params


def test_key_maps_use_torch_names(models):
    expected_keys = {
        "inceptionv1": (116, ["conv2d0_pre_relu_conv.weight", "mixed3a_1x1_pre_relu_conv.bias",
                              "mixed5b_5x5_bottleneck_pre_relu_conv.weight",
                              "softmax2_pre_activation_matmul.weight"]),
        "resnet50": (267, ["conv1.weight", "bn1.running_mean", "layer1.0.downsample.0.weight",
                           "layer1.0.downsample.1.running_var", "layer4.2.bn3.weight",
                           "fc.bias"]),
        "vgg16": (32, ["features.0.weight", "features.28.bias", "classifier.0.weight",
                       "classifier.6.weight"]),
    }  # fmt: skip
    for name, (count, keys) in expected_keys.items():
        params = models[name].params
        key_map = get_entry(name).key_map(params)
        assert set(key_map) == set(flatten_params(params))
        foreign = {key: kind for key, kind in key_map.values()}
        assert len(foreign) == count
        for key in keys:
            assert key in foreign, (name, key)
        for key, kind in foreign.items():
            if key.endswith(".weight") and kind == "plain":
                assert "bn" in key or "downsample.1" in key, key
    foreign = dict(get_entry("vgg16").key_map(models["vgg16"].params).values())
    assert foreign["classifier.0.weight"] == "linear" and foreign["features.0.weight"] == "conv"


def test_lucidax_layout_roundtrip(models, tmp_path):
    from lucidax.models.io import save_params

    model = models["inceptionv1"]
    # NumPy: a jnp add per leaf dispatches (and compiles) 116 tiny programs, seconds
    params = jax.tree.map(lambda v: np.asarray(v) + np.float32(1.0), model.params)
    save_params(params, tmp_path / "inc.npz")
    loaded = lm.load("inceptionv1", weights=tmp_path / "inc.npz")
    for x, y in zip(jax.tree.leaves(params), jax.tree.leaves(loaded.params), strict=True):
        np.testing.assert_array_equal(x, y)
    assert loaded.weights_source.startswith("inc.npz sha256:")


# -- padding / pooling laws ------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(size=st.integers(1, 300), kernel=st.integers(1, 7), stride=st.integers(1, 3))
def test_same_padding_law(size, kernel, stride):
    """TF "SAME": output ceil(size / stride); the odd padding pixel goes after."""
    lo, hi = same_padding(size, kernel, stride)
    assert 0 <= lo <= hi <= lo + 1
    assert (size + lo + hi - kernel) // stride + 1 == -(-size // stride)


@settings(max_examples=40, deadline=None)
@given(size=st.integers(1, 40), out=st.integers(1, 12))
def test_adaptive_bins_cover_the_input(size, out):
    m = _adaptive_matrix(size, out)
    np.testing.assert_allclose(m.sum(1), 1.0, rtol=1e-6)  # each output is an average
    assert np.all((m > 0).sum(0) >= 1)  # every input pixel is used
    starts = (m > 0).argmax(1)
    assert np.all(np.diff(starts) >= 0) and starts[0] == 0  # bins move left to right
