"""FGSM / PGD: exact on a linear model, and PGD finds adversarial examples on the starter
model within a small budget."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import lucidax.models as lm
from lucidax.attribute import eps_needed, fgsm, pgd
from lucidax.models._base import InputSpec


@pytest.fixture(scope="module")
def starter():
    from lucidax.models import starter as st_

    model = lm.load("starter")
    data = st_.dataset(4, split="test", seed=0)
    return model, data.images, data.labels["digit"]


@pytest.fixture(scope="module")
def linear():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(8, 8, 3, 2)).astype(np.float32)

    def fn(p, x, layers):
        return {"logits": jnp.einsum("nhwc,hwck->nk", x, p["w"])}

    model = lm.wrap(fn, {"w": w}, input_spec=InputSpec(side=8, channels=3),
                    layer_names=["logits"], logits_layer="logits")
    x = np.full((2, 8, 8, 3), 0.5, np.float32)
    return model, w, x


def test_fgsm_on_linear_model_moves_the_margin_by_eps_times_l1(linear):
    model, w, x = linear
    eps = 0.01
    cls = int(np.einsum("hwc,hwck->k", x[0], w).argmax())  # the clean prediction
    r = fgsm(model, model.params, x, "predicted", eps=eps)
    assert not r.already.any() and (r.pred_before == cls).all()
    dw = w[..., cls] - w[..., 1 - cls]
    np.testing.assert_allclose(r.adversarial - x, -eps * np.sign(dw)[None].repeat(2, 0),
                               atol=1e-6)
    margin = lambda im: np.einsum("nhwc,hwc->n", im, dw)  # noqa: E731
    np.testing.assert_allclose(margin(r.adversarial) - margin(x), -eps * np.abs(dw).sum(),
                               rtol=1e-4)
    np.testing.assert_allclose(r.linf, eps, rtol=1e-5)


def test_pgd_linf_finds_adversarial_examples_on_starter(starter):
    model, x, y = starter
    eps = 8 / 255
    r = pgd(model, model.params, x, y, eps=eps, steps=6)
    assert r.success_rate >= 0.5, r.summary()
    ok = r.success & ~r.already
    assert (r.pred_after[ok] != y[ok]).all()
    assert (r.linf <= eps + 1e-6).all()
    assert r.adversarial.min() >= 0.0 and r.adversarial.max() <= 1.0
    assert (r.steps_to_success[ok] >= 0).all() and (r.steps_to_success[~r.success] == -1).all()
    s = r.summary()
    assert s["n"] == 4 and s["median_linf"] <= eps + 1e-6


def test_pgd_l2_on_starter(starter):
    model, x, y = starter
    r = pgd(model, model.params, x, y, eps=1.0, norm="l2", steps=6)
    assert r.success_rate >= 0.5, r.summary()
    assert (r.l2 <= 1.0 + 1e-4).all()
    ok = r.success & ~r.already
    assert (r.pred_after[ok] != y[ok]).all()


def test_targeted_pgd_reaches_the_class(linear):
    model, w, x = linear
    cls = int(np.einsum("hwc,hwck->k", x[0], w).argmin())  # the class not predicted
    t = pgd(model, model.params, x, cls, eps=0.2, steps=5, targeted=True)
    assert not t.already.any() and t.success.all() and (t.pred_after == cls).all()
    assert (t.steps_to_success >= 1).all() and (t.linf <= 0.2 + 1e-6).all()


def test_eps_needed_is_the_smallest_grid_eps_that_works(starter):
    model, x, y = starter
    grid = (2 / 255, 8 / 255, 32 / 255)
    need = eps_needed(model, model.params, x, y, eps_grid=grid, steps=6)  # same program
    assert need.shape == (4,)
    assert all(v == 0 or v in grid or np.isinf(v) for v in need)
    assert np.isfinite(need).sum() >= 3


def test_unit_target_can_be_silenced(starter):
    from lucidax.visualize.objectives import channel

    model, x, _ = starter
    acts = np.asarray(model.apply(model.params, x, ("conv2",))["conv2"]).mean((1, 2))
    unit = int(acts.mean(0).argmax())
    r = pgd(model, model.params, x, channel("conv2", unit), eps=16 / 255, steps=6,
            change=0.3)
    assert r.pred_before is None
    assert (r.score_after < r.score_before).all()
    assert r.success.mean() >= 0.5


def test_bad_settings_are_user_errors(linear):
    model, _, x = linear
    with pytest.raises(ValueError, match="linf"):
        pgd(model, model.params, x, 0, eps=0.1, norm="l1")
    with pytest.raises(ValueError, match="eps"):
        pgd(model, model.params, x, 0, eps=0.0)
    with pytest.raises(ValueError, match="out of range"):
        fgsm(model, model.params, x, 5, eps=0.1)
