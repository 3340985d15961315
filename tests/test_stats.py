"""lucidax.probes statistics: t-tests and p-value adjustments against scipy and their
definitions."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats as ss
from hypothesis import given, settings
from hypothesis import strategies as st

from lucidax.probes import CORRECTIONS, adjust_pvalues, ttest_ind


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 40), st.integers(2, 40), st.booleans())
def test_ttest_ind_matches_scipy(seed, na, nb, equal_var):
    rng = np.random.default_rng(seed)
    a = rng.normal(0.0, rng.uniform(0.1, 3), na)
    b = rng.normal(rng.uniform(-2, 2), rng.uniform(0.1, 3), nb)
    ours = ttest_ind(a, b, equal_var=equal_var)
    ref = ss.ttest_ind(a, b, equal_var=equal_var)
    assert ours.statistic == pytest.approx(ref.statistic, rel=1e-9)
    assert ours.pvalue == pytest.approx(ref.pvalue, rel=1e-8, abs=1e-300)
    if not equal_var:  # Welch-Satterthwaite df
        assert ours.df == pytest.approx(float(ref.df), rel=1e-9)


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")  # scipy, not ours
def test_ttest_degenerate_samples():
    # TCAV scores are often pinned at 1.0 in every run
    same = ttest_ind([1.0, 1.0, 1.0], [1.0, 1.0])
    assert same.pvalue == 1.0
    apart = ttest_ind([1.0, 1.0, 1.0], [0.0, 0.0])
    assert apart.pvalue == 0.0 and apart.statistic == np.inf
    one_const = ttest_ind([1.0] * 10, np.linspace(0, 1, 10))
    assert one_const.pvalue == pytest.approx(ss.ttest_ind([1.0] * 10, np.linspace(0, 1, 10),
                                                          equal_var=False).pvalue)
    with pytest.raises(ValueError, match="at least 2"):
        ttest_ind([1.0], [1.0, 2.0])


def _holm_reference(p):
    m = len(p)
    out = np.empty(m)
    order = np.argsort(p)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def _bh_reference(p):
    m = len(p)
    out = np.empty(m)
    for i in range(m):
        ranks = np.array([np.sum(p <= p[j]) for j in range(m)])
        out[i] = min(1.0, min(m * p[j] / ranks[j] for j in range(m) if p[j] >= p[i]))
    return out


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=12))
def test_holm_and_bh_match_their_definitions(pvals):
    p = np.asarray(pvals)
    holm = adjust_pvalues(p, "holm")
    bh = adjust_pvalues(p, "bh")
    np.testing.assert_allclose(holm, _holm_reference(p), rtol=1e-12)
    np.testing.assert_allclose(bh, _bh_reference(p), rtol=1e-12)
    # laws: adjusted >= raw, order preserved, BH <= Holm <= Bonferroni
    assert np.all(holm >= p - 1e-15) and np.all(bh >= p - 1e-15)
    assert np.all(bh <= holm + 1e-15)
    assert np.all(holm <= adjust_pvalues(p, "bonferroni") + 1e-15)
    order = np.argsort(p, kind="stable")
    assert np.all(np.diff(holm[order]) >= -1e-15) and np.all(np.diff(bh[order]) >= -1e-15)


def test_adjust_known_values_nan_and_errors():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adjust_pvalues(p, "holm"), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(adjust_pvalues(p, "bh"), [0.02, 0.04, 0.04, 0.02])
    np.testing.assert_allclose(adjust_pvalues(p, "none"), p)
    with_nan = adjust_pvalues([0.01, np.nan, 0.02], "bonferroni")
    assert np.isnan(with_nan[1])
    np.testing.assert_allclose(with_nan[[0, 2]], [0.02, 0.04])  # m counts finite p-values
    assert set(CORRECTIONS) == {"holm", "bh", "bonferroni", "none"}
    with pytest.raises(ValueError, match="holm"):
        adjust_pvalues(p, "hom")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        adjust_pvalues([1.5])
