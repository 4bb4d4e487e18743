"""Tests of the privacy check: the epsilon bound by hand, and membership inference in both
directions (DP at a small epsilon stays below its claim; an overfit model without DP leaks)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml
from scipy.stats import beta
from sklearn.metrics import roc_auc_score

from govssl.checks.privacy import PrivacyCheck, auc_interval, epsilon_lower_bound

from ._trained import cached_context


def test_epsilon_lower_bound__equals_hand_computation():
    tp, n1, fp, n0, delta, conf = 90, 100, 5, 100, 1e-5, 0.95
    tpr_low = beta.ppf(0.025, tp, n1 - tp + 1)
    fpr_high = beta.ppf(0.975, fp + 1, n0 - fp)
    expected = max(math.log((tpr_low - delta) / fpr_high), math.log((1 - fpr_high - delta) / (1 - tpr_low)))
    value, low, high = epsilon_lower_bound(tp, n1, fp, n0, delta, conf)
    assert value == pytest.approx(expected, rel=1e-9)
    assert (low, high) == pytest.approx((tpr_low, fpr_high))


def test_epsilon_lower_bound__no_signal_gives_zero():
    assert epsilon_lower_bound(5, 100, 5, 100, 0.0, 0.95)[0] == 0.0
    assert epsilon_lower_bound(0, 100, 0, 100, 0.0, 0.95)[0] == 0.0


def test_auc_interval__covers_a_known_auc():
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(500), np.zeros(500)]
    s = np.r_[rng.normal(1, 1, 500), rng.normal(0, 1, 500)]
    auc = roc_auc_score(y, s)
    low, high = auc_interval(auc, 500, 500, 0.95)
    assert low < auc < high and high - low < 0.08
    # Phi(1 / sqrt(2)) is the true AUC of two unit normals one apart
    from scipy.stats import norm

    assert low < norm.cdf(1 / math.sqrt(2)) < high


def _context(adult_csvs, tmp_path_factory, key, training):
    from tests.conftest import fast_plan_data

    folder = tmp_path_factory.mktemp(key)
    data = fast_plan_data(*adult_csvs, training=training)
    path = folder / "plan.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return cached_context(key, path, folder)


DP_TRAINING = {
    "encoder": {"hidden_dims": [64, 64]},
    "pretrain": {"method": "none", "epochs": 0},
    "finetune": {"mode": "fine_tune", "label_fraction": 0.5, "epochs": 5, "batch_size": 128},
    "dp": {"enabled": True, "target_epsilon": 1.0, "delta": 1e-5},
}
OVERFIT_TRAINING = {
    "encoder": {"hidden_dims": [256, 256]},
    "pretrain": {"method": "none", "epochs": 0},
    "finetune": {"mode": "fine_tune", "label_fraction": 0.25, "epochs": 300, "batch_size": 64, "lr": 0.003},
    "dp": {"enabled": False},
}


@pytest.fixture(scope="module")
def measured(adult_csvs, tmp_path_factory):
    out = {}
    for key, training in (("dp", DP_TRAINING), ("overfit", OVERFIT_TRAINING)):
        ctx = _context(adult_csvs, tmp_path_factory, f"privacy-{key}", training)
        result = PrivacyCheck().run(ctx)
        assert result.status == "measured", result.reason
        out[key] = {(m.metric, m.subject): m for m in result.measurements}
    return out


@pytest.mark.slow
def test_privacy__dp_at_small_epsilon_stays_below_the_claim(measured):
    dp = measured["dp"]
    for attack in ("black_box", "rule_based"):
        bound = dp[("empirical_epsilon_lower_bound", attack)]
        claimed = bound.details["claimed_epsilon"]
        assert claimed == pytest.approx(1.0, abs=0.05)
        assert bound.value < claimed
        assert dp[("empirical_epsilon_excess", attack)].value < 0
        assert dp[("membership_auc", attack)].ci_low < 0.56


@pytest.mark.slow
def test_privacy__overfit_model_without_dp_leaks_clearly_more(measured):
    dp, overfit = measured["dp"], measured["overfit"]
    for attack in ("black_box", "rule_based"):
        assert overfit[("membership_advantage", attack)].value > dp[("membership_advantage", attack)].value + 0.1
        assert overfit[("membership_auc", attack)].ci_low > 0.55
    assert ("empirical_epsilon_excess", "black_box") not in overfit, "no claim to compare without DP"
    assert overfit[("empirical_epsilon_lower_bound", "black_box")].value > dp[("empirical_epsilon_lower_bound", "black_box")].value
