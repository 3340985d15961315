"""Linear probes on synthetic features: planted signal, chance, CV, sklearn agreement, errors.

Shapes are shared on purpose (n=400, d<=16, 4 classes) so the compiled solver is reused.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lucidax.probes import (
    ProbeConvergenceWarning,
    fit_logistic,
    fit_probe,
    fit_ridge,
    stratified_folds,
    stratified_split,
    wilson_interval,
)


def planted(n=400, d=16, k=4, *, noise=0.5, informative=16, seed=0):
    """Class means in the first ``informative`` dims + Gaussian noise, with arbitrary feature
    scales and offsets (so standardization and the original-space weights matter)."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % k)
    means = np.zeros((k, d))
    means[:, :informative] = rng.normal(size=(k, informative))
    x = means[y] + noise * rng.normal(size=(n, d))
    scale = np.exp(rng.normal(size=d))
    return (x * scale + 10.0 * rng.normal(size=d)).astype(np.float32), y


@pytest.fixture(scope="module")
def clean_result():
    x, y = planted()
    return x, y, fit_probe(x, y)


def test_planted_signal_is_recovered(clean_result):
    x, y, res = clean_result
    assert res.accuracy > 0.95
    assert res.ci_low < res.accuracy <= res.ci_high <= 1.0
    assert res.converged and res.grad_norm <= 1e-4
    assert res.n_train + res.n_test == len(y) and res.n_test == 100
    assert res.n_classes == 4 and res.n_features == 16
    assert res.chance == pytest.approx(0.25)
    assert len(res.cv_scores) == len(res.lambdas) == 7 and res.lambda_ in res.lambdas
    # weights live in the original feature space: raw features -> logits
    assert res.weights.shape == (16, 4) and res.bias.shape == (4,)
    assert np.mean(res.predict(x) == y) > 0.95
    json.dumps(res.to_dict())  # JSON-ready


def test_shuffled_labels_give_chance(clean_result):
    x, y, _ = clean_result
    y_shuffled = np.random.default_rng(1).permutation(y)
    res = fit_probe(x, y_shuffled)
    assert res.ci_low <= res.chance <= res.ci_high
    assert res.accuracy < 0.45


def test_cv_picks_larger_lambda_for_noisier_features(clean_result):
    _, _, clean = clean_result
    x_mid, y_mid = planted(noise=3.0, seed=2)
    x_noisy, y_noisy = planted(noise=6.0, informative=2, seed=3)
    mid = fit_probe(x_mid, y_mid)
    noisy = fit_probe(x_noisy, y_noisy)
    assert clean.lambda_ < mid.lambda_ < noisy.lambda_
    assert clean.accuracy > mid.accuracy > noisy.accuracy


def test_accuracy_scoring_and_determinism(clean_result):
    x, y, res = clean_result
    again = fit_probe(x, y)
    assert again.accuracy == res.accuracy and np.allclose(again.weights, res.weights)
    acc = fit_probe(x, y, scoring="accuracy")
    assert acc.scoring == "accuracy"
    best = max(acc.cv_scores)
    # ties go to the larger lambda
    assert acc.lambda_ == max(lam for lam, s in zip(acc.lambdas, acc.cv_scores, strict=True)
                              if s == best)


def test_solver_matches_sklearn():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x, y = planted(n=300, d=10, k=3, noise=2.0, informative=10, seed=4)
    lam = 1e-2
    ours = fit_logistic(x, y, lam, tol=1e-5, max_iter=1000)
    assert ours.converged
    sc = StandardScaler().fit(x.astype(np.float64))
    # objective mean CE + lam/2 |W|^2  <=>  sklearn's C = 1 / (lam * n)
    sk = LogisticRegression(C=1.0 / (lam * len(y)), tol=1e-10, max_iter=10000)
    sk.fit(sc.transform(x), y)
    p_sk = sk.predict_proba(sc.transform(x))
    p_ours = ours.predict_proba(x)
    assert np.abs(p_ours - p_sk).max() < 2e-3
    w_sk = sk.coef_.T / sc.scale_[:, None]  # back to the original feature space
    w_ours = ours.weights
    # multinomial logits are defined up to a per-row constant: compare centered weights
    center = lambda w: w - w.mean(axis=1, keepdims=True)  # noqa: E731
    assert np.allclose(center(w_ours), center(w_sk), atol=2e-3 * np.abs(w_sk).max())


def test_not_converged_is_reported():
    x, y = planted(noise=0.5)
    with pytest.warns(ProbeConvergenceWarning, match="did not reach tol"):
        res = fit_probe(x, y, max_iter=2)
    assert not res.converged and res.n_iter <= 2 and res.grad_norm > 1e-4


def test_ridge_recovers_linear_target_and_matches_sklearn():
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(5)
    x = rng.normal(size=(300, 12)) * np.exp(rng.normal(size=12)) + 3.0
    w = rng.normal(size=12)
    t = x @ w + 0.1 * rng.normal(size=300)
    res = fit_ridge(x, t)
    assert res.r2 > 0.95 and res.lambda_ in res.lambdas
    shuffled = fit_ridge(x, rng.permutation(t))
    assert shuffled.r2 < 0.1 and shuffled.lambda_ > res.lambda_
    # closed form == sklearn Ridge(alpha = lam * n) on the same train split
    one = fit_ridge(x, t, lambdas=[0.5])
    test_mask = np.ones(300, bool)
    test_mask[np.random.default_rng(0).permutation(300)[: one.n_test]] = False
    xt, tt = x[test_mask], t[test_mask]
    sc = StandardScaler().fit(xt)
    sk = Ridge(alpha=0.5 * len(tt)).fit(sc.transform(xt), tt)
    assert np.allclose(one.weights, sk.coef_ / sc.scale_, rtol=1e-6, atol=1e-9)
    # multi-target
    multi = fit_ridge(x, np.stack([t, -t], axis=1))
    assert multi.n_targets == 2 and multi.predict(x).shape == (300, 2)


@pytest.mark.parametrize(
    ("features", "labels", "kwargs", "match"),
    [
        (np.zeros((20, 3)), np.zeros(20), {}, "at least 2 classes"),
        (np.random.default_rng(0).normal(size=(40, 3)), np.r_[np.zeros(36), np.ones(4)], {},
         "at least folds=5 training samples"),
        (np.full((40, 3), np.nan), np.arange(40) % 2, {}, "NaN or infinite"),
        (np.zeros((40, 3)), np.arange(39) % 2, {}, "different lengths"),
        (np.zeros((40, 3, 3)), np.arange(40) % 2, {}, "2-D array"),
        (np.zeros((40, 3)), np.arange(40) % 2, {"folds": 1}, "folds must be"),
        (np.zeros((40, 3)), np.arange(40) % 2, {"lambdas": [0.1, -1]}, "positive finite"),
        (np.zeros((40, 3)), np.arange(40) % 2, {"test_size": 1.5}, "test_size"),
        (np.zeros((40, 3)), np.arange(40) % 2, {"scoring": "f1"}, "Valid scorings"),
        (np.zeros((40, 3)), np.arange(40) % 2, {"max_iter": 0}, "max_iter"),
    ],
)
def test_bad_inputs_raise_clear_errors(features, labels, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit_probe(features, labels, **kwargs)


def test_ridge_bad_inputs():
    with pytest.raises(ValueError, match="NaN"):
        fit_ridge(np.zeros((50, 2)), np.full(50, np.nan))
    with pytest.raises(ValueError, match="different lengths"):
        fit_ridge(np.zeros((50, 2)), np.zeros(49))


def test_wilson_interval_known_values():
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.27753), abs=1e-4)
    assert wilson_interval(5, 10) == pytest.approx((0.23659, 0.76341), abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 500), st.data())
def test_wilson_interval_contains_estimate(n, data):
    k = data.draw(st.integers(0, n))
    lo, hi = wilson_interval(k, n)
    assert 0.0 <= lo <= k / n <= hi <= 1.0


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.integers(0, 3), min_size=12, max_size=200),
    st.integers(0, 2**16),
    st.sampled_from([0.2, 0.25, 0.5]),
)
def test_stratified_split_and_folds_are_deterministic_partitions(labels, seed, test_size):
    y = np.asarray(labels)
    tr, te = stratified_split(y, test_size, seed=seed)
    tr2, te2 = stratified_split(y, test_size, seed=seed)
    assert np.array_equal(tr, tr2) and np.array_equal(te, te2)
    assert np.array_equal(np.sort(np.concatenate([tr, te])), np.arange(len(y)))
    for c in np.unique(y):
        n_c = int(np.sum(y == c))
        expected = max(1, round(test_size * n_c)) if n_c > 1 else 0
        assert int(np.sum(y[te] == c)) == expected
    folds = stratified_folds(y, 3, seed=seed)
    assert np.array_equal(folds, stratified_folds(y, 3, seed=seed))
    for c in np.unique(y):
        counts = np.bincount(folds[y == c], minlength=3)
        assert counts.max() - counts.min() <= 1  # each class spread evenly over folds


def test_probe_result_prediction_shape_check(clean_result):
    _, _, res = clean_result
    with pytest.raises(ValueError, match="features must be"):
        res.predict(np.zeros((3, 5)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert res.predict(np.zeros((3, 16))).shape == (3,)


def test_hand_written_gradient_matches_autodiff():
    import jax
    import jax.numpy as jnp

    from lucidax.probes._solver import _group_value_grad, _objective

    rng = np.random.default_rng(6)
    n, d, k, p = 50, 6, 3, 4
    x = jnp.asarray(rng.normal(size=(n, d)), jnp.float32)
    y = jnp.asarray(np.eye(k)[rng.integers(0, k, n)], jnp.float32)
    w = jnp.asarray(rng.random((p, n)) / n, jnp.float32)
    lam = jnp.asarray([1e-3, 1e-2, 0.1, 1.0], jnp.float32)
    mu = jnp.asarray(rng.normal(size=(p, d)) * 0.1, jnp.float32)
    sd = jnp.asarray(np.exp(rng.normal(size=(p, d)) * 0.1), jnp.float32)
    params = (jnp.asarray(rng.normal(size=(p, d, k)), jnp.float32),
              jnp.asarray(rng.normal(size=(p, k)), jnp.float32))
    auto = jax.jit(jax.vmap(jax.value_and_grad(_objective), in_axes=(0, None, None, 0, 0, 0, 0)))
    f1, (gw1, gb1) = auto(params, x, y, w, lam, mu, sd)
    f2, (gw2, gb2) = jax.jit(_group_value_grad)(params, x, y, w, lam, mu, sd)
    assert np.allclose(f1, f2, rtol=1e-5)
    assert np.allclose(gw1, gw2, atol=1e-5) and np.allclose(gb1, gb2, atol=1e-5)

    # the bf16x3 product path (CPUs with AMX) agrees with float32 to ~1e-5
    from lucidax.probes._solver import _split_bf16

    xs = (x, *_split_bf16(x))
    f3, (gw3, gb3) = jax.jit(_group_value_grad)(params, xs, y, w, lam, mu, sd)
    assert np.allclose(f3, f2, rtol=1e-4) and np.allclose(gw3, gw2, atol=1e-4)


@pytest.mark.parametrize("bf16x3", [False, True])
def test_probe_is_the_same_with_either_product_precision(clean_result, monkeypatch, bf16x3):
    """fit_probe picks bf16x3 products on AMX CPUs and float32 elsewhere: same answer."""
    import lucidax.probes._linear as linear

    x, y, ref = clean_result
    monkeypatch.setattr(linear, "_bf16x3_default", lambda: bf16x3)
    res = fit_probe(x, y)
    assert res.lambda_ == ref.lambda_ and abs(res.accuracy - ref.accuracy) <= 1 / res.n_test
    assert res.converged
    np.testing.assert_allclose(res.weights, ref.weights, rtol=0.05, atol=0.02 * np.abs(
        ref.weights).max())
