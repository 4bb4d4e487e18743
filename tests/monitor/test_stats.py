"""The monitor's statistics against scipy's own tests and known values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from govssl.monitor import _stats


def test_ks_weighted__equals_scipy_on_continuous_samples():
    rng = np.random.default_rng(0)
    ref, batch = rng.normal(size=3000), rng.normal(0.1, 1.0, size=800)
    values, counts = np.unique(ref, return_counts=True)
    d, p = _stats.ks_weighted(batch, values, counts)
    expected = stats.ks_2samp(batch, ref, method="asymp")
    assert d == pytest.approx(expected.statistic, abs=1e-12)
    assert p == pytest.approx(expected.pvalue, rel=1e-6)


def test_ks_weighted__ties_compare_ecdfs_at_every_value():
    values, counts = np.array([0.0, 1.0, 2.0]), np.array([50, 30, 20])
    d, _ = _stats.ks_weighted(np.array([0.0] * 10 + [2.0] * 10), values, counts)
    assert d == pytest.approx(0.3)  # F_batch(1) = 0.5, F_ref(1) = 0.8


def test_holm__matches_the_step_down_by_hand():
    assert _stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert _stats.holm([0.4, 0.3]) == pytest.approx([0.6, 0.6])  # never below a smaller p-value's
    assert _stats.holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])  # capped at 1


def test_chi2_counts__equals_scipy_and_merges_rare_levels():
    ref, batch = np.array([500.0, 300.0, 200.0]), np.array([60.0, 25.0, 15.0])
    statistic, p, dof = _stats.chi2_counts(ref, batch)
    expected = stats.chi2_contingency(np.vstack([ref, batch]), correction=False)
    assert (statistic, p, dof) == pytest.approx((expected[0], expected[1], 2))
    # a level expected 0.1 times in the batch joins the others too rare for the approximation
    _, _, dof = _stats.chi2_counts(np.array([5000.0, 4990.0, 10.0]), np.array([50.0, 49.0, 1.0]))
    assert dof == 1


def test_psi_and_js__zero_for_equal_shares_and_grow_with_the_shift():
    ref = np.array([100.0, 200.0, 700.0])
    assert _stats.psi(ref, ref / 10) == pytest.approx(0.0) and _stats.js_distance(ref, ref * 3) == pytest.approx(0.0)
    small, large = np.array([110.0, 200.0, 690.0]), np.array([400.0, 300.0, 300.0])
    assert 0 < _stats.psi(ref, small) < _stats.psi(ref, large)
    assert 0 < _stats.js_distance(ref, small) < _stats.js_distance(ref, large) <= 1


def test_mmd_permutation__counts_the_observed_statistic():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 5))
    far = rng.normal(3.0, 1.0, size=(200, 5))
    mmd2, p = _stats.mmd_permutation(x, far, _stats.median_bandwidth(x), 99, seed=0)
    assert mmd2 > 0 and p == pytest.approx(1 / 100)  # never 0: the observed statistic counts
    _, p_same = _stats.mmd_permutation(x, rng.normal(size=(200, 5)), _stats.median_bandwidth(x), 99, seed=0)
    assert p_same > 0.05


def test_mmd_permutation__keeps_its_level():
    rng = np.random.default_rng(2)
    rejections = 0
    for seed in range(100):
        x, y = rng.normal(size=(60, 3)), rng.normal(size=(60, 3))
        rejections += _stats.mmd_permutation(x, y, _stats.median_bandwidth(x), 99, seed)[1] <= 0.05
    assert rejections <= 11  # 5% of 100 plus about 2.7 standard errors
