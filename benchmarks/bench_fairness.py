"""Fairness with bootstrap intervals: govssl's vectorised check against fairlearn's MetricFrame.

Same data (the official Adult test split), same predictions, same subjects (sex, race, sex*race),
same metrics (selection rate, TPR, FPR, accuracy), same number of resamples. Prints both
timings, their ratio, the largest point-estimate difference and how far the per-group intervals
differ (govssl's are exact Clopper-Pearson intervals, fairlearn's bootstrap percentiles), in
standard errors of the statistic.

    python benchmarks/bench_fairness.py [--n-boot 100] [--govssl-only]

fairlearn takes minutes at n_boot=100; ``--govssl-only`` times govssl's check alone (median of
five runs), e.g. at the check's default n_boot=1000.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np


def predictions():
    """A fixed, reproducible classifier on the raw columns (no training needed to time metrics)."""
    from govssl.data._builtin import load_builtin

    _, _, test, _ = load_builtin("adult")
    y = (test["income"] == ">50K").to_numpy(dtype=int)
    score = (test["education-num"] - 9) * 0.4 + (test["hours-per-week"] - 40) * 0.05 + (test["capital-gain"] > 5000) * 3
    score += (test["marital-status"] == "Married-civ-spouse") * 1.5
    pred = (score > 1.2).to_numpy(dtype=int)
    return test, y, pred


def run_govssl(test, y, pred, n_boot):
    from govssl.checks.fairness import FairnessCheck, group_labels

    check = FairnessCheck(n_boot=n_boot, min_group_size=0)
    sensitive = test[["sex", "race"]].astype(str)
    out = {}
    for i, columns in enumerate((["sex"], ["race"], ["sex", "race"])):
        subject, labels = group_labels(sensitive, columns)
        values = {label: dict(zip(columns, row)) for label, row in zip(labels, sensitive[columns].itertuples(index=False, name=None))}
        for m in check._subject(subject, labels, values, y, pred, seed=i):
            out[(m.subject, m.metric)] = m
    return out


def run_fairlearn(test, y, pred, n_boot):
    from fairlearn.metrics import MetricFrame, false_positive_rate, selection_rate, true_positive_rate
    from sklearn.metrics import accuracy_score

    sensitive = test[["sex", "race"]].astype(str)
    metrics = {"selection_rate": selection_rate, "true_positive_rate": true_positive_rate,
               "false_positive_rate": false_positive_rate, "accuracy": accuracy_score}
    frames = {}
    for columns in (["sex"], ["race"], ["sex", "race"]):
        frames["*".join(columns)] = MetricFrame(
            metrics=metrics, y_true=y, y_pred=pred, sensitive_features=sensitive[columns],
            n_boot=n_boot, ci_quantiles=[0.025, 0.975], random_state=0,
        )
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-boot", type=int, default=100)
    parser.add_argument("--govssl-only", action="store_true", help="time govssl's check alone")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    test, y, pred = predictions()
    if args.govssl_only:
        run_govssl(test, y, pred, 10)  # imports and first-call costs
        seconds = []
        for _ in range(5):
            started = time.perf_counter()
            run_govssl(test, y, pred, args.n_boot)
            seconds.append(time.perf_counter() - started)
        print(f"rows {len(y)}, subjects sex, race, sex*race, 4 metrics per group, n_boot {args.n_boot}")
        print(f"govssl FairnessCheck (vectorised): median {np.median(seconds):.3f} s, "
              f"fastest {min(seconds):.3f} s of {len(seconds)} runs")
        return

    started = time.perf_counter()
    ours = run_govssl(test, y, pred, args.n_boot)
    ours_s = time.perf_counter() - started
    started = time.perf_counter()
    frames = run_fairlearn(test, y, pred, args.n_boot)
    theirs_s = time.perf_counter() - started

    point_diff, ci_gap_in_se = 0.0, []
    for subject, frame in frames.items():
        columns = subject.split("*")
        low, high = frame.by_group_ci
        for key, row in frame.by_group.iterrows():
            key = key if isinstance(key, tuple) else (key,)
            label = "*".join(f"{c}={v}" for c, v in zip(columns, key))
            for metric, value in row.items():
                m = ours[(label, metric)]
                point_diff = max(point_diff, abs(m.value - value))
                se = (m.ci_high - m.ci_low) / (2 * 1.96) if m.ci_high is not None else 0.0
                if se > 0:
                    ci_gap_in_se.append(max(abs(m.ci_low - low.loc[key if len(key) > 1 else key[0], metric]),
                                            abs(m.ci_high - high.loc[key if len(key) > 1 else key[0], metric])) / se)
    print(f"rows {len(y)}, subjects sex, race, sex*race, 4 metrics per group, n_boot {args.n_boot}")
    print(f"govssl FairnessCheck (vectorised): {ours_s:8.3f} s")
    print(f"fairlearn MetricFrame (bootstrap): {theirs_s:8.3f} s")
    print(f"speed-up: {theirs_s / ours_s:.1f}x")
    print(f"largest point-estimate difference: {point_diff:.2e}")
    gaps = np.array(ci_gap_in_se)
    # govssl's per-group bounds are exact (Clopper-Pearson) intervals of the counts, fairlearn's
    # bootstrap percentiles: they differ by method where counts are small, and by the bootstrap's
    # Monte Carlo error elsewhere (benchmarks/bench_rate_intervals.py compares their coverage)
    print(f"per-group bounds, govssl Clopper-Pearson against fairlearn's bootstrap percentile: they differ "
          f"by a median {np.median(gaps):.2f} and at most {gaps.max():.2f} standard errors of the statistic")


if __name__ == "__main__":
    main()
