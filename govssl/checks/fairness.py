"""Group fairness on the held-out test rows: per-group rates and the gaps between groups.

Per group (each sensitive feature, and their intersection): selection rate, true and false
positive rates, accuracy and size, with fairlearn's definitions (Bird et al. 2020, "Fairlearn: A
toolkit for assessing and improving fairness in AI"): demographic parity difference and ratio
(max - min and min / max selection rate) and equalized odds difference (the larger of the TPR
and FPR gaps; Hardt et al. 2016). Every figure is a function of each group's confusion counts,
so the point estimates and all bootstrap resamples come from counts of (group x cell); the tests
check the point estimates against fairlearn's MetricFrame and metric functions. fairlearn's own
bootstrap re-runs the metric functions per resample: on the Adult test split, with sex, race and
their intersection and n_boot=100, `python benchmarks/bench_fairness.py` measures it hundreds of
times slower than this check.

Intervals (``details["interval"]`` names the method): each per-group rate is a binomial
proportion (selections or correct predictions out of the group's rows, true positives out of its
positives, false positives out of its negatives; ``details`` holds ``successes`` and ``trials``)
and gets the exact Clopper-Pearson interval of those counts. The bootstrap percentile interval it
replaced fails small counts: no false positive among 45 negatives resamples to [0, 0]. In the
simulation of ``benchmarks/bench_rate_intervals.py`` (six groups of 50 to 3,000 rows with
Adult-like rates, rates near 0 and 1, and few positives; 2,000 data sets each), the percentile
interval covers the TPR of a 50-row group with 5 positives in 85% of data sets and its FPR of
0.04 in 84%, with the true FPR above ``ci_high`` in 15%; near 0 and 1 it covers as little as 6%
(TPR 0.99 from 5 positives: every resample gives [1, 1]). The Clopper-Pearson interval covers
94-100% of every group's rates (0.95 within Monte Carlo error) and leaves at most 3.3% of data
sets on either side (2.5% by construction); the Wilson and Jeffreys intervals fall to 90-91% near
0 and 1, with up to 9% on one side, and Agresti-Coull's one-sided misses reach 4%. Its price is
width where trials are few: 0.76 for 5 positives at TPR 0.50, against Wilson's 0.63 and the
percentile's 0.74. ``tests/checks/test_rate_coverage.py`` holds it to that.

The aggregates get the debiased percentile interval: the percentile interval moved down by twice
the bootstrap's estimate of bias (up, for the ratio), widened to contain the estimate and
clipped to [0, 1]. The largest of several noisy rates overshoots the largest true rate, so a
gap's estimate is biased upward and its resamples overshoot the estimate again: the plain
percentile interval sits too high, often wholly above a true gap near zero, and a rule on
``ci_high`` blocks more models than its level says. In the simulation of
``benchmarks/bench_gap_intervals.py`` (4 and 6 groups of 50 to 3,000 rows; zero, small and large
true gaps; 2,000 data sets each), the percentile interval covers a small true gap in 0-33% of
data sets (6 groups) and the debiased one in 84-93%; at a zero gap 0% against 58-77%; neither
ever lets the true gap exceed ``ci_high`` (or fall below the ratio's ``ci_low``) in more than
2.5% of data sets. ``tests/checks/test_gap_coverage.py`` holds it to that.

Groups smaller than ``min_group_size`` test rows are reported as insufficient data and left out
of the aggregates: a gap measured on a handful of people says nothing, and the policy can see it.
A rate with an empty denominator (TPR of a group with no positives) is undefined (NaN); fairlearn
reports 0.0 there.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import Field

from govssl.checks._binomial import clopper_pearson_interval
from govssl.checks._bootstrap import (
    CELL_COUNTS, ROW_RESAMPLES, cell_sums, counts_drawn, debiased_percentile_interval, multinomial_sums,
)
from govssl.checks.base import Check, CheckContext, CheckParams, Confidence, Measurement, PositiveInt, register_check

__all__ = ["FairnessCheck", "group_labels", "aggregate_intervals", "GROUP_METRICS", "AGGREGATE_METRICS"]

GROUP_METRICS = ("selection_rate", "true_positive_rate", "false_positive_rate", "accuracy", "count")
AGGREGATE_METRICS = ("demographic_parity_difference", "demographic_parity_ratio", "equalized_odds_difference")


def group_labels(sensitive: pd.DataFrame, columns: list[str]) -> tuple[str, np.ndarray]:
    """Subject name and one label per row, e.g. ("sex*race", ["sex=Female*race=White", ...]).

    Each distinct label is built once, from the columns' factorised codes, and the rows refer to
    it: a test split of millions of rows holds no string object per row."""
    names: list[str] = []
    codes = np.zeros(len(sensitive), dtype=np.int64)
    missing = np.zeros(len(sensitive), dtype=bool)  # a null value (never in sensitive_frame's) labels NaN
    for i, col in enumerate(columns):
        col_codes, uniques = pd.factorize(sensitive[col].to_numpy(dtype=object))  # a null: code -1
        missing |= col_codes < 0
        col_codes = np.maximum(col_codes, 0).astype(np.int64)
        col_names = [f"{col}={value}" for value in map(str, uniques)] or [""]
        if i == 0:
            names, codes = col_names, col_codes
            continue
        pairs, codes = np.unique(codes * len(col_names) + col_codes, return_inverse=True)
        names = [names[k // len(col_names)] + "*" + col_names[k % len(col_names)] for k in pairs.tolist()]
    labels = np.array(names, dtype=object)[codes.reshape(-1)]
    if missing.any():
        labels[missing] = np.nan
    return "*".join(columns), labels


def _rate_counts(cells: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each per-group rate as (successes, trials) from (..., groups, 4) cells ordered TP, FP, FN, TN."""
    TP, FP, FN, TN = (cells[..., i] for i in range(4))
    n = TP + FP + FN + TN
    return {
        "selection_rate": (TP + FP, n),
        "true_positive_rate": (TP, TP + FN),
        "false_positive_rate": (FP, FP + TN),
        "accuracy": (TP + TN, n),
    }


def _rates(cells: np.ndarray) -> dict[str, np.ndarray]:
    """Per-group rates from (..., groups, 4) cells ordered TP, FP, FN, TN; NaN where undefined."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return {rate: successes / trials for rate, (successes, trials) in _rate_counts(cells).items()}


def _aggregates(rates: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """fairlearn's between-groups aggregates over the last axis, ignoring undefined rates."""
    import warnings

    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        sel = rates["selection_rate"]
        tpr, fpr = rates["true_positive_rate"], rates["false_positive_rate"]
        spread = lambda r: np.nanmax(r, axis=-1) - np.nanmin(r, axis=-1)  # noqa: E731
        return {
            "demographic_parity_difference": spread(sel),
            "demographic_parity_ratio": np.nanmin(sel, axis=-1) / np.nanmax(sel, axis=-1),
            "equalized_odds_difference": np.fmax(spread(tpr), spread(fpr)),
        }


GROUP_INTERVAL, AGGREGATE_INTERVAL = "clopper-pearson", "debiased percentile"


def aggregate_intervals(cells: np.ndarray, boot_cells: np.ndarray, confidence: float) -> dict[str, tuple]:
    """Estimate and debiased percentile interval of each aggregate over the trailing two axes.

    ``cells`` (..., groups, 4) holds the groups' confusion counts, ``boot_cells`` (n_boot, ...,
    groups, 4) their resamples. A gap (max - min) is biased upward, the ratio (min / max)
    downward, and their resamples repeat the bias, so the plain percentile interval would sit on
    the wrong side of the estimate. Every aggregate lies in [0, 1].
    """
    points = _aggregates(_rates(cells))
    boots = _aggregates(_rates(boot_cells))
    out = {}
    for metric in AGGREGATE_METRICS:
        low, high = debiased_percentile_interval(boots[metric], points[metric], confidence, bounds=(0.0, 1.0))
        out[metric] = (points[metric], low, high)
    return out


@register_check("fairness")
class FairnessCheck(Check):
    metrics = GROUP_METRICS + AGGREGATE_METRICS + ("groups_insufficient_data",)

    class Params(CheckParams):
        n_boot: PositiveInt = 1000  # bootstrap resamples of the gaps between groups
        confidence: Confidence = 0.95
        min_group_size: int = Field(30, ge=0)  # smaller groups are left out of the gaps (and counted); 0: none
        intersections: bool = True  # also audit the intersection of the sensitive features

    def measure(self, ctx: CheckContext) -> list[Measurement]:
        data = ctx.dataset
        if not data.sensitive:
            from govssl.checks.base import SkipCheck

            raise SkipCheck("the plan names no sensitive features (dataset.sensitive)")
        y = data.y_test
        pred = ctx.test_proba().argmax(axis=1)
        sensitive = data.sensitive_frame("test")
        subjects = [[c] for c in data.sensitive]
        if self.params["intersections"] and len(data.sensitive) > 1:
            subjects.append(list(data.sensitive))
        out: list[Measurement] = []
        for i, columns in enumerate(subjects):
            subject, labels = group_labels(sensitive, columns)
            first = ~pd.Series(labels).duplicated().to_numpy()  # one row per label gives its values
            values = {label: dict(zip(columns, row)) for label, row in
                      zip(labels[first], sensitive[columns][first].itertuples(index=False, name=None))}
            out += self._subject(subject, labels, values, y, pred, ctx.seed + 1000 * i, counted=counts_drawn(data, len(y)))
        return out

    def _subject(self, subject, labels, values, y, pred, seed, counted: bool = False) -> list[Measurement]:
        """``counted``: the resampled (group x cell) counts drawn from their multinomial
        (:func:`multinomial_sums`; an out-of-core table, or more test rows than
        ``ROW_RESAMPLE_LIMIT``, see :func:`counts_drawn`). Same estimates; the same bootstrap
        distribution, other draws."""
        n_boot, conf = int(self.params["n_boot"]), float(self.params["confidence"])
        min_size = int(self.params["min_group_size"])
        groups = sorted(set(labels))
        codes = pd.Index(groups).get_indexer(labels)
        cell = np.select([(pred == 1) & (y == 1), (pred == 1) & (y == 0), (pred == 0) & (y == 1)], [0, 1, 2], 3)
        if counted:
            flat = np.bincount(codes * 4 + cell, minlength=len(groups) * 4).astype(np.float64)
            cells = flat.reshape(len(groups), 4)
            boot_cells = multinomial_sums(flat, n_boot, seed).reshape(n_boot, len(groups), 4)
        else:  # row resamples, counted per (group x cell): the sums of the rows' one-hot indicators
            flat = np.bincount(codes * 4 + cell, minlength=len(groups) * 4).astype(np.float64)
            cells = flat.reshape(len(groups), 4)
            boot_cells = cell_sums(codes * 4 + cell, len(groups) * 4, n_boot, seed).reshape(n_boot, len(groups), 4)

        sizes = cells.sum(axis=1).astype(int)
        rates = _rates(cells)
        counts = _rate_counts(cells)
        bounds = {metric: clopper_pearson_interval(successes, trials, conf)
                  for metric, (successes, trials) in counts.items()}
        out = []
        for k, group in enumerate(groups):
            per_group = {"confidence": conf, "interval": GROUP_INTERVAL, "attribute": subject, "group": values[group]}
            for metric in GROUP_METRICS[:-1]:
                successes, trials = (int(c[k]) for c in counts[metric])
                low, high = (b[k] for b in bounds[metric])
                out.append(self._m(metric, group, rates[metric][k], low, high, sizes[k],
                                   {**per_group, "successes": successes, "trials": trials}))
            out.append(Measurement(self.name, "count", float(sizes[k]), group, n=int(sizes[k]),
                                   details={"attribute": subject, "group": values[group]}))

        eligible = sizes >= min_size
        small = [g for g, ok in zip(groups, eligible) if not ok]
        out.append(Measurement(
            self.name, "groups_insufficient_data", float(len(small)), subject, n=int(sizes.min()),
            details={"min_group_size": min_size, "groups": {g: int(s) for g, s in zip(groups, sizes) if s < min_size}},
        ))
        kept = [g for g, ok in zip(groups, eligible) if ok]
        details = {"n_boot": n_boot, "bootstrap": CELL_COUNTS if counted else ROW_RESAMPLES, "confidence": conf, "groups": kept, "excluded_groups": small,
                   "min_group_size": min_size}
        if len(kept) < 2:
            for metric in AGGREGATE_METRICS:
                out.append(Measurement(self.name, metric, float("nan"), subject, n=int(sizes[eligible].sum()),
                                       details={**details, "reason": f"fewer than 2 groups with at least {min_size} rows"}))
            return out
        intervals = aggregate_intervals(cells[eligible], boot_cells[:, eligible], conf)
        details["interval"] = AGGREGATE_INTERVAL
        for metric, (point, low, high) in intervals.items():
            out.append(self._m(metric, subject, point, low, high, int(sizes[eligible].min()), details))
        return out

    def _m(self, metric, subject, point, low, high, n, details) -> Measurement:
        fin = lambda x: float(x) if np.isfinite(x) else None  # noqa: E731
        return Measurement(self.name, metric, float(point), subject, fin(low), fin(high), int(n), dict(details))
