"""lucidax.attribute.resolve_target: class / per-image / predicted / objective targets."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lucidax.models as lm
from lucidax import visualize as viz
from lucidax.attribute import resolve_target


@pytest.fixture(scope="module")
def starter():
    return lm.load("starter")


@pytest.fixture(scope="module")
def batch(starter):
    x = jax.random.uniform(jax.random.key(0), (4, 32, 32, 3))
    return x, starter.apply(starter.params, x, ("conv3", "logits"))


@pytest.mark.parametrize("target", [3, [3, 1, 4, 1], np.array([0, 9, 2, 5])])
def test_class_targets_score_the_logit(starter, batch, target):
    x, acts = batch
    layers, fn = resolve_target(starter, target, 4)
    assert layers == ("logits",)
    cls = np.broadcast_to(np.asarray(target), (4,))
    np.testing.assert_allclose(fn(acts), np.asarray(acts["logits"])[np.arange(4), cls], rtol=1e-6)


def test_predicted_and_objective_targets(starter, batch):
    x, acts = batch
    _, fn = resolve_target(starter, "predicted", 4, params=starter.params, images=x)
    np.testing.assert_allclose(fn(acts), np.max(np.asarray(acts["logits"]), axis=1), rtol=1e-6)
    layers, fn = resolve_target(starter, viz.channel("conv3", 5), 4)
    assert layers == ("conv3",)
    np.testing.assert_allclose(fn(acts), jnp.mean(acts["conv3"][..., 5], axis=(1, 2)), rtol=1e-5)


def test_target_errors(starter):
    with pytest.raises(ValueError, match="params= and images="):
        resolve_target(starter, "predicted", 2)
    with pytest.raises(ValueError, match="2 images"):
        resolve_target(starter, [1, 2, 3], 2)
    with pytest.raises(ValueError, match="input"):
        resolve_target(starter, viz.total_variation(), 2)
    with pytest.raises(ValueError, match="out of range|0..9|10"):
        resolve_target(starter, 12, 2)


def test_target_classes_one_class_per_image(starter, batch):
    from lucidax.attribute import target_classes

    x, acts = batch
    assert target_classes(starter, 3, 4).tolist() == [3, 3, 3, 3]
    assert target_classes(starter, ["3", "1", "4", "1"], 4).tolist() == [3, 1, 4, 1]
    predicted = np.argmax(np.asarray(acts["logits"]), axis=1)
    assert (target_classes(starter, None, 4, params=starter.params, images=x) == predicted).all()
    assert target_classes(starter, viz.channel("conv3", 5), 4) is None
    with pytest.raises(ValueError, match="class label"):
        target_classes(starter, "three", 4)
    with pytest.raises(TypeError, match="class index"):
        target_classes(starter, 2.5, 4)
