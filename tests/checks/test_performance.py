"""Tests of the performance check against scikit-learn and hand computations, and of its
bootstrap intervals against a plain loop over the same resamples."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from govssl.checks._bootstrap import resample_counts
from govssl.checks.performance import PerformanceCheck, _weighted_auc, expected_calibration_error

from ._fakes import make_context, proba_from_scores, resamples

METRICS = ("accuracy", "balanced_accuracy", "f1", "roc_auc", "expected_calibration_error")


def _prediction_set(n: int = 400, seed: int = 42):
    """Labels and scores of a decent classifier; scores rounded to 2 decimals, so with many ties."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.int64)
    score = np.clip(0.3 + 0.35 * y + rng.normal(0, 0.2, n), 0.0, 1.0).round(2)
    return y, proba_from_scores(score)


def _ece_by_hand(y, proba, n_bins):
    """Guo et al. 2017: sum over equal-width confidence bins of (bin share) * |accuracy - confidence|."""
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y
    total = 0.0
    for b in range(n_bins):
        low, high = b / n_bins, (b + 1) / n_bins
        in_bin = (confidence >= low) & ((confidence < high) if b < n_bins - 1 else (confidence <= high))
        if in_bin.any():
            total += in_bin.sum() / len(y) * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return total


def _by_metric(result):
    return {m.metric: m for m in result.measurements}


def test_performance__point_estimates_equal_sklearn():
    y, proba = _prediction_set()
    pred, score = proba.argmax(axis=1), proba[:, 1]

    result = PerformanceCheck(n_boot=50).run(make_context(y, proba))

    assert result.status == "measured" and result.check == "performance"
    got = _by_metric(result)
    assert tuple(got) == METRICS
    assert got["accuracy"].value == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
    assert got["balanced_accuracy"].value == pytest.approx(skm.balanced_accuracy_score(y, pred), abs=1e-12)
    assert got["f1"].value == pytest.approx(skm.f1_score(y, pred), abs=1e-12)
    assert got["roc_auc"].value == pytest.approx(skm.roc_auc_score(y, score), abs=1e-12)
    assert got["expected_calibration_error"].value == pytest.approx(_ece_by_hand(y, proba, 15), abs=1e-12)
    correct = int((pred == y).sum())
    for m in got.values():
        assert (m.subject, m.n) == ("", len(y))
        assert m.ci_low <= m.ci_high
    assert got["accuracy"].details == {"interval": "clopper-pearson", "successes": correct, "trials": len(y),
                                       "confidence": 0.95}
    assert got["expected_calibration_error"].details == {"interval": "debiased percentile", "n_boot": 50,
                                                         "bootstrap": "row resamples", "confidence": 0.95}
    for name in ("balanced_accuracy", "f1", "roc_auc"):
        assert got[name].details == {"interval": "percentile", "n_boot": 50, "bootstrap": "row resamples",
                                     "confidence": 0.95}


def test_performance__accuracy_interval_is_clopper_pearson_by_hand():
    # 10 rows, all predicted right: ci_low solves P(X = 10 | p) = p**10 = 0.025, ci_high is 1;
    # 9 of 10: ci_high solves P(X <= 9 | p) = 1 - p**10 = 0.025, i.e. p = 0.975 ** (1 / 10)
    y = np.array([1, 0] * 5)
    right = proba_from_scores(np.where(y == 1, 0.9, 0.1))
    one_wrong = right.copy()
    one_wrong[0] = one_wrong[0, ::-1]

    every = _by_metric(PerformanceCheck(n_boot=20).run(make_context(y, right)))["accuracy"]
    nine = _by_metric(PerformanceCheck(n_boot=20).run(make_context(y, one_wrong)))["accuracy"]

    assert (every.value, every.ci_low, every.ci_high) == pytest.approx((1.0, 0.025 ** (1 / 10), 1.0), abs=1e-12)
    assert nine.value == pytest.approx(0.9, abs=1e-12)
    assert nine.ci_high == pytest.approx(0.975 ** (1 / 10), abs=1e-12)
    assert (nine.details["successes"], nine.details["trials"]) == (9, 10)


def test_expected_calibration_error__hand_computed_example():
    # confidences 0.85 and 0.95 fall in bin 4 of 5, 0.65 and 0.75 in bin 3, 0.55 in bin 2
    proba = np.array([[0.15, 0.85], [0.95, 0.05], [0.35, 0.65], [0.25, 0.75], [0.45, 0.55]])
    y = np.array([1, 1, 1, 0, 0])  # correct, wrong, correct, wrong, wrong
    # bin 4: accuracy 0.5, confidence 0.90; bin 3: 0.5, 0.70; bin 2: 0.0, 0.55
    expected = 2 / 5 * 0.40 + 2 / 5 * 0.20 + 1 / 5 * 0.55

    assert expected_calibration_error(y, proba, n_bins=5) == pytest.approx(0.35, abs=1e-12)
    result = PerformanceCheck(n_boot=20, calibration_bins=5).run(make_context(y, proba))
    assert _by_metric(result)["expected_calibration_error"].value == pytest.approx(expected, abs=1e-12)


def test_expected_calibration_error__perfectly_calibrated_is_zero():
    proba = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])

    assert expected_calibration_error(np.array([1, 0, 1]), proba) == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weighted_auc__equals_sklearn_with_counts_as_weights(seed):
    rng = np.random.default_rng(seed)
    n = 300
    y = (rng.random(n) < 0.4).astype(np.int64)
    score = rng.integers(0, 12, n) / 11  # few distinct scores: many ties
    counts = rng.integers(0, 4, size=(25, n)).astype(np.float32)

    got = _weighted_auc(counts, y, score)

    expected = [skm.roc_auc_score(y, score, sample_weight=c) for c in counts]
    assert got == pytest.approx(expected, abs=1e-12)


def test_weighted_auc__large_resamples_keep_double_precision():
    # sums of pos * neg_below pass 2**24 here; float32 arithmetic would be off by ~1e-7
    rng = np.random.default_rng(3)
    n = 16_000
    y = (rng.random(n) < 0.25).astype(np.int64)
    score = (rng.random(n) * 0.5 + 0.3 * y).round(3)
    counts = next(resample_counts(n, 3, seed=0))

    got = _weighted_auc(counts, y, score)

    expected = [skm.roc_auc_score(y, score, sample_weight=c) for c in counts]
    assert got == pytest.approx(expected, abs=1e-12)


def test_weighted_auc__one_class_is_undefined():
    counts = np.ones((1, 4), dtype=np.float32)

    assert np.isnan(_weighted_auc(counts, np.zeros(4, dtype=np.int64), np.array([0.1, 0.2, 0.3, 0.4])))[0]


@pytest.mark.parametrize("confidence", [0.95, 0.8])
def test_performance__bootstrap_intervals_equal_a_plain_loop(confidence):
    y, proba = _prediction_set(n=300, seed=5)
    n_boot, seed = 120, 11  # 120: two chunks of resamples, the second one partial

    got = _by_metric(PerformanceCheck(n_boot=n_boot, confidence=confidence, calibration_bins=10)
                     .run(make_context(y, proba, seed=seed)))

    per_resample = {name: [] for name in METRICS}
    for idx in resamples(len(y), n_boot, seed):
        y_r, proba_r = y[idx], proba[idx]
        pred_r = proba_r.argmax(axis=1)
        per_resample["accuracy"].append(skm.accuracy_score(y_r, pred_r))
        per_resample["balanced_accuracy"].append(skm.balanced_accuracy_score(y_r, pred_r))
        per_resample["f1"].append(skm.f1_score(y_r, pred_r))
        per_resample["roc_auc"].append(skm.roc_auc_score(y_r, proba_r[:, 1]))
        per_resample["expected_calibration_error"].append(_ece_by_hand(y_r, proba_r, 10))
    alpha = (1 - confidence) / 2
    for name in ("balanced_accuracy", "f1", "roc_auc"):
        low, high = np.quantile(per_resample[name], [alpha, 1 - alpha])
        assert got[name].ci_low == pytest.approx(low, abs=1e-9), name
        assert got[name].ci_high == pytest.approx(high, abs=1e-9), name
    # ECE: the percentile interval moved down by twice the resamples' mean excess over the
    # estimate, widened to contain the estimate, within [0, 1]
    ece = per_resample["expected_calibration_error"]
    estimate = _ece_by_hand(y, proba, 10)
    shift = 2 * (np.mean(ece) - estimate)
    low, high = np.quantile(ece, [alpha, 1 - alpha])
    assert got["expected_calibration_error"].ci_low == pytest.approx(max(min(low - shift, estimate), 0.0), abs=1e-9)
    assert got["expected_calibration_error"].ci_high == pytest.approx(max(high - shift, estimate), abs=1e-9)
    # accuracy: Clopper-Pearson of the correct predictions, the beta quantiles
    k, n = int((proba.argmax(axis=1) == y).sum()), len(y)
    assert got["accuracy"].ci_low == pytest.approx(stats.beta.ppf(alpha, k, n - k + 1), abs=1e-9)
    assert got["accuracy"].ci_high == pytest.approx(stats.beta.ppf(1 - alpha, k + 1, n - k), abs=1e-9)


def test_performance__same_seed_same_intervals_other_seed_other_intervals():
    y, proba = _prediction_set(n=200)
    check = PerformanceCheck(n_boot=60)

    first = _by_metric(check.run(make_context(y, proba, seed=1)))
    again = _by_metric(check.run(make_context(y, proba, seed=1)))
    other = _by_metric(check.run(make_context(y, proba, seed=2)))

    assert first == again
    assert (first["roc_auc"].ci_low, first["roc_auc"].ci_high) != (other["roc_auc"].ci_low, other["roc_auc"].ci_high)


def test_performance__unknown_parameter_names_the_allowed_ones():
    with pytest.raises(ValueError) as info:
        PerformanceCheck(n_bot=10, bins=3)

    assert str(info.value) == (
        "checks.performance.n_bot: unknown parameter; 'performance' takes n_boot, confidence, calibration_bins; "
        "checks.performance.bins: unknown parameter; 'performance' takes n_boot, confidence, calibration_bins"
    )


def _multiclass_set(n: int = 300, k: int = 4, seed: int = 5):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k)) + 1.5 * np.eye(k)[y]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, proba


def test_performance__multiclass_point_estimates_equal_sklearn():
    y, proba = _multiclass_set()
    pred = proba.argmax(axis=1)
    got = _by_metric(PerformanceCheck(n_boot=50).run(make_context(y, proba)))
    assert got["accuracy"].value == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
    assert got["balanced_accuracy"].value == pytest.approx(skm.balanced_accuracy_score(y, pred), abs=1e-12)
    assert got["f1"].value == pytest.approx(skm.f1_score(y, pred, average="macro"), abs=1e-12)
    assert got["roc_auc"].value == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr"), abs=1e-12)
    assert got["expected_calibration_error"].value == pytest.approx(_ece_by_hand(y, proba, 15), abs=1e-12)


def test_performance__multiclass_bootstrap_equals_a_loop_over_the_same_resamples():
    y, proba = _multiclass_set(n=120)
    n_boot, seed = 40, 2
    got = _by_metric(PerformanceCheck(n_boot=n_boot, confidence=0.9).run(make_context(y, proba, seed=seed)))
    rows = resamples(len(y), n_boot, seed)
    labels = np.arange(proba.shape[1])
    loops = {
        "f1": [skm.f1_score(y[r], proba[r].argmax(1), average="macro", labels=labels, zero_division=0) for r in rows],
        "roc_auc": [skm.roc_auc_score(y[r], proba[r], multi_class="ovr", labels=labels) for r in rows],
    }
    for metric, values in loops.items():
        low, high = np.quantile(values, [0.05, 0.95])
        assert got[metric].ci_low == pytest.approx(low, abs=1e-9), metric
        assert got[metric].ci_high == pytest.approx(high, abs=1e-9), metric
    k = int((proba.argmax(axis=1) == y).sum())
    assert (got["accuracy"].ci_low, got["accuracy"].ci_high) == pytest.approx(
        (stats.beta.ppf(0.05, k, len(y) - k + 1), stats.beta.ppf(0.95, k + 1, len(y) - k)), abs=1e-9)
