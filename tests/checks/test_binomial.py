"""Tests of the vectorised Clopper-Pearson interval: hand-computed bounds, its defining binomial tails, undefined rates."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from govssl.checks._binomial import clopper_pearson, clopper_pearson_interval


def test_clopper_pearson_interval__hand_computation():
    # No successes in n trials: ci_low 0, and ci_high solves P(X = 0) = (1 - p)^n = 0.025, so
    # 1 - 0.025^(1/n); all n successes mirror it. One success in two trials: ci_low solves
    # P(X >= 1) = 1 - (1 - p)^2 = 0.025, so 1 - sqrt(0.975); ci_high solves P(X <= 1) = 1 - p^2 =
    # 0.025, so sqrt(0.975).
    successes = np.array([0.0, 1.0, 0.0, 4.0, 1.0])
    trials = np.array([1.0, 1.0, 4.0, 4.0, 2.0])

    low, high = clopper_pearson_interval(successes, trials, 0.95)

    assert low == pytest.approx([0.0, 0.025, 0.0, 0.025**0.25, 1 - np.sqrt(0.975)], abs=1e-12)
    assert high == pytest.approx([0.975, 1.0, 1 - 0.025**0.25, 1.0, np.sqrt(0.975)], abs=1e-12)
    assert (float(low[3]), float(high[2])) == pytest.approx((0.397635, 0.602365), abs=1e-6)


def test_clopper_pearson_interval__confidence_sets_the_tails():
    # 0 of 10 at 90%: 1 - 0.05^(1/10); 10 of 10: 0.05^(1/10)
    low, high = clopper_pearson_interval(np.array([0.0, 10.0]), np.array([10.0, 10.0]), 0.90)

    assert low == pytest.approx([0.0, 0.05**0.1], abs=1e-12)
    assert high == pytest.approx([1 - 0.05**0.1, 1.0], abs=1e-12)


def test_clopper_pearson_interval__bounds_leave_half_the_level_in_each_binomial_tail():
    k = np.array([1.0, 3.0, 7.0, 49.0, 120.0])
    n = np.array([5.0, 45.0, 75.0, 50.0, 3000.0])

    low, high = clopper_pearson_interval(k, n, 0.95)

    # at p = ci_low, k or more successes have probability 0.025; at p = ci_high, k or fewer
    assert binom.sf(k - 1, n, low) == pytest.approx(np.full(5, 0.025), abs=1e-9)
    assert binom.cdf(k, n, high) == pytest.approx(np.full(5, 0.025), abs=1e-9)
    assert np.all(low < k / n) and np.all(k / n < high)


def test_clopper_pearson_interval__equals_scipy_beta_quantiles_and_the_scalar_form():
    from scipy.stats import beta

    k, n = np.meshgrid(np.arange(0.0, 31.0), np.arange(1.0, 31.0))
    k, n = k[k <= n], n[k <= n]

    low, high = clopper_pearson_interval(k, n, 0.95)

    expected_low = np.where(k == 0, 0.0, beta.ppf(0.025, k, n - k + 1))
    expected_high = np.where(k == n, 1.0, beta.ppf(0.975, k + 1, n - k))
    assert low == pytest.approx(expected_low, abs=1e-12)
    assert high == pytest.approx(expected_high, abs=1e-12)
    scalar = np.array([clopper_pearson(int(a), int(b), 0.95) for a, b in zip(k, n)])
    assert np.array_equal(scalar, np.stack([low, high], axis=1))


def test_clopper_pearson_interval__no_trials_is_undefined_and_shapes_are_kept():
    successes = np.array([[0.0, 2.0], [0.0, 0.0]])
    trials = np.array([[0.0, 4.0], [3.0, 0.0]])

    low, high = clopper_pearson_interval(successes, trials, 0.95)

    assert low.shape == high.shape == (2, 2)
    assert np.isnan(low[0, 0]) and np.isnan(high[0, 0]) and np.isnan(low[1, 1]) and np.isnan(high[1, 1])
    assert (low[1, 0], high[1, 0]) == pytest.approx((0.0, 1 - 0.025 ** (1 / 3)), abs=1e-12)
    assert 0.0 < low[0, 1] < 0.5 < high[0, 1] < 1.0
