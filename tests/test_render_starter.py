"""Render engine on the real, shipped starter model (not a toy)."""

import numpy as np
import pytest

import lucidax.models as lm
from lucidax import visualize as viz


@pytest.fixture(scope="module")
def starter():
    return lm.load("starter")


def test_class_logit_renders_are_classified_as_their_class(starter):
    result = viz.render(
        starter, viz.channel("logits", range(10)), param=viz.image(sd=0.5), size=64,
        steps=128, progress=False,
    )
    assert result.all_finite
    logits = np.asarray(starter.apply(starter.params, result.images, ("logits",))["logits"])
    hits = logits.argmax(-1) == np.arange(10)
    # Measured: 10/10 classes at 128 steps (as at 256), each by a margin of >= 7.7 logits over
    # the runner-up (>= 4.8 at 64 steps). The bar is >= 90% of classes.
    assert hits.mean() >= 0.9, f"renders classified as {logits.argmax(-1)}"


def test_channel_render_beats_noise_on_a_real_layer(starter):
    units = [0, 5, 17, 42]
    result = viz.render(
        starter, viz.channel("conv4", units), param=viz.image(sd=0.5), size=64, steps=128,
        progress=False,
    )
    noise = np.random.default_rng(0).uniform(size=(8, 64, 64, 3)).astype(np.float32)
    acts_noise = np.asarray(starter.apply(starter.params, noise, ("conv4",))["conv4"])
    acts_render = np.asarray(starter.apply(starter.params, result.images, ("conv4",))["conv4"])
    for i, u in enumerate(units):
        assert acts_render[i, ..., u].mean() > 3 * acts_noise[..., u].mean(axis=(1, 2)).max() + 1e-3
