"""Exact binomial intervals for rates that count rows: successes out of trials.

The Clopper-Pearson interval (Clopper & Pearson 1934, Biometrika 26(4)) inverts two one-sided
binomial tests: whatever the number of trials and the true rate, the rate lies below ``ci_low``
with probability at most (1 - confidence) / 2, and above ``ci_high`` with at most as much. A
policy rule on either bound is never laxer than its level, where the bootstrap percentile
interval of a rate from a handful of trials is (see ``govssl/checks/fairness.py``). The price is
width where trials are few: the coverage of both bounds together lies above the confidence
level, most with fewer than about ten trials.
"""

from __future__ import annotations

import numpy as np
from scipy.special import betaincinv

__all__ = ["clopper_pearson_interval", "clopper_pearson"]


def clopper_pearson_interval(successes, trials, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact two-sided interval, element by element; NaN bounds where there are no trials.

    ``ci_low`` is the (1 - confidence) / 2 quantile of Beta(k, n - k + 1), 0 at k = 0; ``ci_high``
    the 1 - (1 - confidence) / 2 quantile of Beta(k + 1, n - k), 1 at k = n.
    """
    k, n = np.asarray(successes, dtype=np.float64), np.asarray(trials, dtype=np.float64)
    alpha = 1 - confidence
    with np.errstate(invalid="ignore", divide="ignore"):
        low = np.where(k > 0, betaincinv(k, n - k + 1, alpha / 2), 0.0)
        high = np.where(k < n, betaincinv(k + 1, n - k, 1 - alpha / 2), 1.0)
    defined = n > 0
    return np.where(defined, low, np.nan), np.where(defined, high, np.nan)


def clopper_pearson(k: int, n: int, confidence: float) -> tuple[float, float]:
    """:func:`clopper_pearson_interval` of one count, as floats."""
    low, high = clopper_pearson_interval(k, n, confidence)
    return float(low), float(high)
