"""Tests of the vectorised bootstrap: draw counts, weighted sums, percentile and debiased percentile intervals."""

from __future__ import annotations

import numpy as np
import pytest

from govssl.checks._bootstrap import (
    bootstrap_sums, cell_sums, debiased_percentile_interval, percentile_interval, resample_counts,
)


def test_resample_counts__chunks_and_totals():
    chunks = list(resample_counts(n=37, n_boot=250, seed=0, chunk=100))

    assert [c.shape for c in chunks] == [(100, 37), (100, 37), (50, 37)]
    for counts in chunks:
        assert counts.dtype == np.float32
        assert np.all(counts >= 0)
        assert np.all(counts.sum(axis=1) == 37)  # each resample draws n rows


def test_resample_counts__reproducible_for_a_seed():
    first = np.concatenate(list(resample_counts(50, 120, seed=4)))
    again = np.concatenate(list(resample_counts(50, 120, seed=4)))
    other = np.concatenate(list(resample_counts(50, 120, seed=5)))

    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_resample_counts__draws_are_uniform_with_replacement():
    # each row is drawn Binomial(n, 1/n) times: mean 1, variance (1 - 1/n)
    counts = np.concatenate(list(resample_counts(20, 4000, seed=1)))

    assert counts.mean() == pytest.approx(1.0, abs=1e-12)
    assert counts.var() == pytest.approx(1 - 1 / 20, rel=0.05)
    assert counts.mean(axis=0) == pytest.approx(np.ones(20), abs=0.06)
    assert (counts == 0).mean() == pytest.approx((1 - 1 / 20) ** 20, abs=0.01)


def test_resample_counts__the_draws_of_a_plain_rng_loop():
    # the counts are exactly the bincounts of rng.integers(0, n, size=(chunk, n))
    rng = np.random.default_rng(9)
    draws = rng.integers(0, 30, size=(70, 30))

    counts = next(resample_counts(30, 70, seed=9))

    assert np.array_equal(counts, np.stack([np.bincount(d, minlength=30) for d in draws]))


def test_bootstrap_sums__equal_sums_over_resampled_rows():
    rng = np.random.default_rng(2)
    indicators = (rng.random((40, 3)) < 0.4).astype(np.float64)

    sums = bootstrap_sums(indicators, n_boot=130, seed=6)

    expected = []
    for counts in np.concatenate(list(resample_counts(40, 130, seed=6))):
        rows = np.repeat(np.arange(40), counts.astype(int))
        expected.append(indicators[rows].sum(axis=0))
    assert sums.dtype == np.float64
    assert np.array_equal(sums, np.array(expected))


def test_bootstrap_sums__no_resamples():
    assert bootstrap_sums(np.ones((5, 2)), n_boot=0, seed=0).shape == (0, 2)


def test_percentile_interval__equals_numpy_quantiles_ignoring_nan():
    rng = np.random.default_rng(0)
    samples = rng.normal(size=(200, 2))
    samples[::7, 1] = np.nan

    low, high = percentile_interval(samples, 0.9)

    assert low[0] == pytest.approx(np.quantile(samples[:, 0], 0.05), abs=1e-12)
    assert high[0] == pytest.approx(np.quantile(samples[:, 0], 0.95), abs=1e-12)
    defined = samples[~np.isnan(samples[:, 1]), 1]
    assert low[1] == pytest.approx(np.quantile(defined, 0.05), abs=1e-12)
    assert high[1] == pytest.approx(np.quantile(defined, 0.95), abs=1e-12)


def test_percentile_interval__all_nan_column_is_nan():
    samples = np.column_stack([np.arange(10.0), np.full(10, np.nan)])

    low, high = percentile_interval(samples, 0.95)

    assert np.isnan(low[1]) and np.isnan(high[1])
    assert (low[0], high[0]) == pytest.approx((0.225, 8.775))


def test_debiased_percentile_interval__hand_computation():
    # column 0: quantiles at 0.25 and 0.75 of 2..6 are 3 and 5; mean 4, estimate 3.5: bias 0.5,
    # so the interval moves down by 1 to [2, 4].
    # column 1: one undefined resample; 1, 3, 5, 11 have quantiles 2.5 and 6.5 (positions 0.75
    # and 2.25); mean 5, estimate 4: bias 1, so [0.5, 4.5].
    samples = np.array([[2.0, 1.0], [3.0, np.nan], [4.0, 3.0], [5.0, 5.0], [6.0, 11.0]])

    low, high = debiased_percentile_interval(samples, np.array([3.5, 4.0]), 0.5)

    assert low == pytest.approx([2.0, 0.5], abs=1e-12)
    assert high == pytest.approx([4.0, 4.5], abs=1e-12)


def test_debiased_percentile_interval__widened_to_contain_the_estimate():
    # quantiles 2 and 4, mean 4, estimate 3: bias 1, moved to [0, 2], which would leave the
    # estimate above ci_high; the bound is raised to the estimate
    low, high = debiased_percentile_interval(np.array([1.0, 2.0, 3.0, 4.0, 10.0]), 3.0, 0.5)

    assert (float(low), float(high)) == pytest.approx((0.0, 3.0), abs=1e-12)


def test_debiased_percentile_interval__clipped_to_the_range():
    # quantiles 0.15 and 0.25, mean 0.2, estimate 0.3: bias -0.1, moved up to [0.35, 0.45];
    # widened to 0.3 below, clipped to 0.4 above
    low, high = debiased_percentile_interval(np.array([0.1, 0.2, 0.3]), 0.3, 0.5, bounds=(0.0, 0.4))

    assert (float(low), float(high)) == pytest.approx((0.3, 0.4), abs=1e-12)


def test_debiased_percentile_interval__without_bias_is_the_percentile_interval():
    rng = np.random.default_rng(1)
    samples = rng.normal(size=(300, 3))
    estimate = samples.mean(axis=0)

    low, high = debiased_percentile_interval(samples, estimate, 0.9)

    expected_low, expected_high = percentile_interval(samples, 0.9)
    assert low == pytest.approx(expected_low, abs=1e-12)
    assert high == pytest.approx(expected_high, abs=1e-12)


def test_debiased_percentile_interval__undefined_stays_undefined():
    samples = np.column_stack([np.arange(10.0), np.full(10, np.nan), np.arange(10.0)])

    low, high = debiased_percentile_interval(samples, np.array([4.5, np.nan, np.nan]), 0.95, bounds=(0.0, 1.0))

    assert np.isnan(low[1]) and np.isnan(high[1])  # no defined resample
    assert np.isnan(low[2]) and np.isnan(high[2])  # no estimate
    assert (low[0], high[0]) == pytest.approx((0.225, 1.0))  # mean 4.5 = estimate: no shift; clipped


@pytest.mark.parametrize(("n", "n_cells", "n_boot"), [(1, 1, 3), (257, 5, 250), (4_000, 37, 101)])
def test_cell_sums__exactly_the_sums_of_one_hot_indicators(n, n_cells, n_boot):
    rng = np.random.default_rng(n)
    cells = rng.integers(0, n_cells, n)
    indicators = np.zeros((n, n_cells), dtype=np.float32)
    indicators[np.arange(n), cells] = 1.0
    got = cell_sums(cells, n_cells, n_boot, seed=9)
    assert got.shape == (n_boot, n_cells) and got.dtype == np.float64
    np.testing.assert_array_equal(got, bootstrap_sums(indicators, n_boot, seed=9))  # the same resamples
    assert (got.sum(axis=1) == n).all()
    assert not np.array_equal(got, cell_sums(cells, n_cells, n_boot, seed=10)) or n_cells == 1


def test_counts_drawn__past_the_row_limit_or_out_of_core():
    from types import SimpleNamespace

    from govssl.checks._bootstrap import ROW_RESAMPLE_LIMIT, counts_drawn

    in_memory, out_of_core = SimpleNamespace(), SimpleNamespace(out_of_core=True)
    assert not counts_drawn(in_memory, ROW_RESAMPLE_LIMIT)  # the demo's 16,281 test rows and up to here: rows
    assert counts_drawn(in_memory, ROW_RESAMPLE_LIMIT + 1)
    assert counts_drawn(out_of_core, 10)
