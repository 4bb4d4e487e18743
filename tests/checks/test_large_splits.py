"""Past ROW_RESAMPLE_LIMIT test rows the checks draw resampled counts instead of resampling rows:
the same estimates, intervals in agreement with the row bootstrap's, and the method in details."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import govssl.checks._bootstrap as bootstrap
from govssl.checks.fairness import FairnessCheck
from govssl.checks.performance import POISSON, PerformanceCheck

from ._fakes import make_context, proba_from_scores

N = 6_000


@pytest.fixture(scope="module")
def split():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, N)
    score = np.clip(np.round(0.5 * y + 0.5 * rng.random(N), 3), 0.0, 1.0)
    sensitive = pd.DataFrame({"group": rng.choice(np.array(["a", "b", "c"], dtype=object), N, p=[0.6, 0.3, 0.1])})
    return y, proba_from_scores(score), sensitive


def _measured(check, y, proba, sensitive, limit, monkeypatch):
    monkeypatch.setattr(bootstrap, "ROW_RESAMPLE_LIMIT", limit)
    result = check.run(make_context(y, proba, sensitive, seed=2))
    assert result.status == "measured", result.reason
    return {(m.metric, m.subject): m for m in result.measurements}


@pytest.mark.parametrize("check", [PerformanceCheck(n_boot=2000), FairnessCheck(n_boot=2000, min_group_size=30)],
                         ids=["performance", "fairness"])
def test_past_the_row_limit__same_estimates_and_intervals_within_monte_carlo_error(split, check, monkeypatch):
    y, proba, sensitive = split
    rows = _measured(check, y, proba, sensitive, N, monkeypatch)  # N rows: at the limit, rows resampled
    drawn = _measured(check, y, proba, sensitive, N - 1, monkeypatch)  # past it: counts drawn
    assert rows.keys() == drawn.keys()
    compared = 0
    for key, m in rows.items():
        d = drawn[key]
        assert d.value == pytest.approx(m.value, abs=1e-12), key
        method = m.details.get("bootstrap")
        if method is None:  # an exact interval of counts (Clopper-Pearson): no resamples
            assert (d.ci_low, d.ci_high) == (m.ci_low, m.ci_high)
            continue
        assert method == bootstrap.ROW_RESAMPLES
        assert d.details["bootstrap"] == (POISSON if isinstance(check, PerformanceCheck) else bootstrap.CELL_COUNTS)
        width = max(m.ci_high - m.ci_low, 1e-3)
        assert abs(d.ci_low - m.ci_low) < 0.15 * width, key
        assert abs(d.ci_high - m.ci_high) < 0.15 * width, key
        compared += 1
    assert compared >= 3
