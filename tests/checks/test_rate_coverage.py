"""Coverage of the per-group rates' intervals on synthetic groups with known true rates.

The check's Clopper-Pearson interval against the bootstrap percentile interval it replaced, on
the rate scenarios of ``tests/_gap_simulation.py``; ``benchmarks/bench_rate_intervals.py``
prints the full table, with the Wilson, Agresti-Coull and Jeffreys intervals too. Every run is
seeded, so the figures quoted below are what these tests compute; coverage and misses count the
data sets where the rate is defined (a TPR needs a positive in the group).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests._gap_simulation import RATE_SCENARIOS, RATES, simulate

SCENARIO = {s.name: s for s in RATE_SCENARIOS}


def _shares(result, rate, group) -> dict[str, float]:
    r = result[rate]
    defined = r["defined"][:, group]
    return {key: float(r[key][defined, group].mean()) for key in ("covered", "above", "below")} | {
        "defined": int(defined.sum())}


def test_rate_coverage__small_group_tpr_and_fpr():
    # 500 data sets of the Adult-like six groups, 500 resamples each; the 50-row group has 5
    # positives on average (TPR 0.50) and 45 negatives (FPR 0.04). Monte Carlo standard error of
    # a coverage near 0.85: 0.016, near 0.99: 0.005.
    # Coverage, percentile -> Clopper-Pearson: TPR 0.847 -> 0.992, FPR 0.844 -> 0.990.
    # True rate above ci_high: TPR 0.072 -> 0.006, FPR 0.148 -> 0.000; below ci_low: TPR
    # 0.080 -> 0.002, FPR 0.008 -> 0.010.
    result = simulate(SCENARIO["6 groups, Adult-like rates"], [], n_rep=500, n_boot=500, seed=11,
                      rate_methods=["percentile", "clopper-pearson"])["group_rates"]
    small = RATE_SCENARIOS[0].sizes.index(50)

    for rate in ("true_positive_rate", "false_positive_rate"):
        old, new = _shares(result["percentile"], rate, small), _shares(result["clopper-pearson"], rate, small)
        assert old["defined"] >= 490 and new["defined"] == old["defined"], rate
        assert old["covered"] < 0.90, (rate, old)
        assert new["covered"] >= 0.95, (rate, new)
        assert max(new["above"], new["below"]) <= 0.025, (rate, new)
    # the percentile interval's ci_high sits below the true FPR three times as often as nominal
    # allows, so a rule `max: ... use: ci_high` on it passes groups whose true FPR exceeds it
    assert _shares(result["percentile"], "false_positive_rate", small)["above"] > 0.10


# Figures of benchmarks/bench_rate_intervals.py with its defaults (2,000 data sets, 1,000
# resamples; seeds 0-2 there, 30-32 here, so figures differ within their Monte Carlo error):
# per scenario, over its 6 groups and 4 rates, the lowest and the mean coverage, and the largest
# share of data sets with the true rate above ci_high / below ci_low.
#                          percentile                   Clopper-Pearson
#   Adult-like rates       0.840 0.932  0.150 / 0.076   0.940 0.963  0.030 / 0.033
#   rates near 0 and 1     0.056 0.813  0.628 / 0.944   0.951 0.972  0.027 / 0.026
#   few positives          0.766 0.927  0.116 / 0.118   0.948 0.964  0.027 / 0.032
# Clopper-Pearson's exact coverage is at least 0.95 in every cell (by construction, given each
# group's denominator); its 0.940 is a 2,070-negative group whose exact coverage is 0.954.
@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(RATE_SCENARIOS)), ids=[s.name for s in RATE_SCENARIOS])
def test_rate_coverage__every_scenario_group_and_rate(index):
    scenario = RATE_SCENARIOS[index]
    result = simulate(scenario, [], n_rep=2000, n_boot=1000, seed=30 + index,
                      rate_methods=["percentile", "clopper-pearson"])["group_rates"]
    se = lambda p, m: np.sqrt(p * (1 - p) / m)  # noqa: E731

    worst_old = 1.0
    for rate in RATES:
        for group in range(len(scenario.sizes)):
            new = _shares(result["clopper-pearson"], rate, group)
            m = new["defined"]
            assert m >= 1900, (rate, group, m)
            assert new["covered"] >= 0.95 - 4 * se(0.95, m), (rate, group, new)
            assert new["above"] <= 0.025 + 4 * se(0.025, m), (rate, group, new)
            assert new["below"] <= 0.025 + 4 * se(0.025, m), (rate, group, new)
            worst_old = min(worst_old, _shares(result["percentile"], rate, group)["covered"])
    # the percentile interval falls well short of 0.95 somewhere in every scenario
    assert worst_old < 0.90
