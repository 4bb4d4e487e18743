"""Model-wide performance on the held-out test rows, with confidence intervals.

Expected calibration error follows Guo et al. 2017, "On Calibration of Modern Neural Networks"
(equal-width confidence bins, weighted mean |accuracy - confidence|). With more than two classes,
f1 is the macro average over classes and roc_auc the macro average of one-vs-rest AUCs (Provost &
Domingos 2000; scikit-learn's ``multi_class="ovr"``); balanced accuracy is the mean recall.

Intervals (``details["interval"]`` names the method). Accuracy is a binomial rate, correct
predictions out of the test rows, and gets the exact Clopper-Pearson interval of those counts:
on simulated test splits (``benchmarks/bench_rate_intervals.py``, last table; 2,000 splits) the
bootstrap percentile interval it had covered the true accuracy in 93.4-95.5% of splits, its
``ci_low`` above the truth in up to 5.6% on 450 rows at accuracy 0.97-0.99; Clopper-Pearson covers
94.5-97.2% with at most 2.9% on either side. The expected calibration error gets the debiased
percentile interval (``debiased_percentile_interval``, bounds [0, 1]): the plug-in ECE is biased
upward, more so with fewer rows per bin, and the percentile interval repeats the bias, so on a
calibrated model its ``ci_low`` is above the true 0 in every split. On simulated binary
classifiers with an exact true ECE (``benchmarks/bench_calibration_intervals.py``; 450 to 16,281
rows, 2,000 splits) the debiased interval covers a calibrated model's 0 in 55-57% of splits
(percentile: never) and an overconfident one's 0.015 or 0.052 in 81-94% (percentile: 0-95%),
letting the truth above ``ci_high`` in at most 3.5% (percentile: 0.5%). Balanced accuracy, F1
and ROC AUC keep the bootstrap percentile interval.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn import metrics as skm

from govssl.checks._binomial import clopper_pearson_interval
from govssl.checks._bootstrap import (
    ROW_RESAMPLES, counts_drawn, debiased_percentile_interval, percentile_interval, resample_counts,
)
from govssl.checks.base import Check, CheckContext, CheckParams, Confidence, Measurement, PositiveInt, register_check

#: the bootstrap on an out-of-core table or a test split past ROW_RESAMPLE_LIMIT rows
POISSON = "Poisson bootstrap (each row weighted by a Poisson(1) count per resample), streamed in blocks"

__all__ = ["PerformanceCheck", "expected_calibration_error", "calibration_bins", "calibration_interval"]


def calibration_bins(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-width bin of each confidence in [0, 1]: bin b holds [b / n_bins, (b + 1) / n_bins), the last one 1 too."""
    return np.minimum((np.asarray(confidence) * n_bins).astype(int), n_bins - 1)


def calibration_interval(samples: np.ndarray, estimate, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Interval of the expected calibration error from its bootstrap resamples.

    The plug-in ECE is biased upward (each bin's |accuracy - confidence| picks up its sampling
    noise, so it exceeds the true gap on average, and is above 0 even for a calibrated model) and
    the resamples add that bias again, so the percentile interval sits above the truth: the
    debiased percentile interval moves it back by twice the bootstrap's estimate of the bias.
    """
    return debiased_percentile_interval(samples, estimate, confidence, bounds=(0.0, 1.0))


def expected_calibration_error(y_true: np.ndarray, proba: np.ndarray, n_bins: int = 15) -> float:
    confidence = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y_true).astype(float)
    bins = calibration_bins(confidence, n_bins)
    total = 0.0
    for b in range(n_bins):
        in_bin = bins == b
        if in_bin.any():
            total += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(total)


def _auc_groups(y: np.ndarray, score: np.ndarray):
    """(positives, negatives): sparse (rows x tie groups) indicator matrices, the groups being the
    distinct scores in increasing order, for :func:`_weighted_auc`. Built once per score vector."""
    from scipy import sparse

    score = np.asarray(score)
    n = len(score)
    order = np.argsort(score, kind="stable")
    s = score[order]
    in_sorted = np.cumsum(np.r_[True, s[1:] != s[:-1]]) - 1 if n else np.zeros(0, np.int64)
    n_groups = int(in_sorted[-1]) + 1 if n else 0
    group = np.empty(n, np.int64)
    group[order] = in_sorted
    y = np.asarray(y)
    out = []
    for label in (1, 0):
        rows = np.flatnonzero(y == label)
        out.append(sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, group[rows])), shape=(n, n_groups)))
    return tuple(out)


def _weighted_auc(counts: np.ndarray, y: np.ndarray, score: np.ndarray, groups=None,
                  whole_counts: bool = False) -> np.ndarray:
    """ROC AUC (Mann-Whitney, ties count half) for each row of draw counts. ``groups``: the
    :func:`_auc_groups` of ``y`` and ``score``, when several chunks of counts share them.

    Each resample's weight of positives and of negatives per distinct score is one sparse product
    with the counts, in float64; with ``whole_counts`` (the caller's counts are whole numbers, as
    :func:`resample_counts` draws them) and every resample's total below 2**24, in float32, where
    such sums are exact too. The Mann-Whitney sum then runs over the distinct scores in float64,
    where the products of those sums pass 2**24."""
    positives, negatives = groups if groups is not None else _auc_groups(y, score)
    counts = np.asarray(counts)
    exact32 = whole_counts and len(counts) and float(counts.sum(axis=1, dtype=np.float64).max()) < 2**24
    weights = counts.astype(np.float32 if exact32 else np.float64, copy=False)
    pos = np.asarray((positives.T @ weights.T).T, dtype=np.float64)
    neg = np.asarray((negatives.T @ weights.T).T, dtype=np.float64)
    neg_below = np.cumsum(neg, axis=1) - neg
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pos * (neg_below + 0.5 * neg)).sum(axis=1) / (pos.sum(axis=1) * neg.sum(axis=1))


@register_check("performance")
class PerformanceCheck(Check):
    metrics = ("accuracy", "balanced_accuracy", "f1", "roc_auc", "expected_calibration_error")

    class Params(CheckParams):
        n_boot: PositiveInt = 1000  # bootstrap resamples
        confidence: Confidence = 0.95
        calibration_bins: PositiveInt = 15  # equal-width bins of the calibration error

    def measure(self, ctx: CheckContext) -> list[Measurement]:
        y = ctx.dataset.y_test
        proba = ctx.test_proba()
        pred = proba.argmax(axis=1)
        n_bins = int(self.params["calibration_bins"])
        multiclass = proba.shape[1] > 2
        points = {
            "accuracy": skm.accuracy_score(y, pred),
            "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
            "f1": skm.f1_score(y, pred, average="macro", labels=np.arange(proba.shape[1])) if multiclass else skm.f1_score(y, pred),
            "roc_auc": _ovr_auc(y, proba) if multiclass else skm.roc_auc_score(y, proba[:, 1]),
            "expected_calibration_error": expected_calibration_error(y, proba, n_bins),
        }
        counted = counts_drawn(ctx.dataset, len(y)) and not multiclass
        if counted:  # the same figures from the confusion counts (no per-row metric functions)
            points.update(confusion_points(*confusion_counts(y, pred)))
            samples = self._bootstrap_streamed(y, proba, ctx.seed)
        elif multiclass:
            samples = self._bootstrap_multiclass(y, pred, proba, ctx.seed)
        else:
            samples = self._bootstrap(y, pred, proba, ctx.seed)
        level = float(self.params["confidence"])
        low, high = percentile_interval(samples, level)
        method = {"bootstrap": POISSON if counted else ROW_RESAMPLES}
        intervals = {name: (low[i], high[i], {"interval": "percentile", "n_boot": int(self.params["n_boot"]), **method})
                     for i, name in enumerate(self.metrics)}
        correct = int((pred == y).sum())
        intervals["accuracy"] = (*clopper_pearson_interval(correct, len(y), level),
                                 {"interval": "clopper-pearson", "successes": correct, "trials": len(y)})
        ece = self.metrics.index("expected_calibration_error")
        intervals["expected_calibration_error"] = (
            *calibration_interval(samples[:, ece], points["expected_calibration_error"], level),
            {"interval": "debiased percentile", "n_boot": int(self.params["n_boot"]), **method})
        return [
            Measurement(
                check=self.name, metric=name, value=float(points[name]), subject="",
                ci_low=_finite(intervals[name][0]), ci_high=_finite(intervals[name][1]), n=len(y),
                details={**intervals[name][2], "confidence": level},
            )
            for name in self.metrics
        ]

    def _bootstrap(self, y, pred, proba, seed) -> np.ndarray:
        n_bins = int(self.params["calibration_bins"])
        confidence = proba.max(axis=1)
        correct = (pred == y).astype(np.float64)
        bins = calibration_bins(confidence, n_bins)
        bin_onehot = np.eye(n_bins)[bins]
        tp, fp = (pred == 1) & (y == 1), (pred == 1) & (y == 0)
        fn, tn = (pred == 0) & (y == 1), (pred == 0) & (y == 0)
        cells = np.column_stack([tp, fp, fn, tn]).astype(np.float64)
        ingredients = np.hstack([cells, bin_onehot * correct[:, None], bin_onehot * confidence[:, None]])
        out = []
        groups = _auc_groups(y, proba[:, 1])
        for counts in resample_counts(len(y), int(self.params["n_boot"]), seed):
            sums = counts.astype(np.float64) @ ingredients
            TP, FP, FN, TN = sums[:, 0], sums[:, 1], sums[:, 2], sums[:, 3]
            n = TP + FP + FN + TN
            k = n_bins
            corr, conf = sums[:, 4 : 4 + k], sums[:, 4 + k :]
            with np.errstate(invalid="ignore", divide="ignore"):
                accuracy = (TP + TN) / n
                balanced = 0.5 * (TP / (TP + FN) + TN / (TN + FP))
                f1 = 2 * TP / (2 * TP + FP + FN)
                ece = np.abs(corr - conf).sum(axis=1) / n
            auc = _weighted_auc(counts, y, proba[:, 1], groups, whole_counts=True)
            out.append(np.column_stack([accuracy, balanced, f1, auc, ece]))
        return np.concatenate(out)

    def _bootstrap_streamed(self, y, proba, seed, chunk: int = 4096) -> np.ndarray:
        """The binary bootstrap of :meth:`_bootstrap` for a test split too large for a (resamples x
        rows) matrix: the Poisson bootstrap (Hanley & MacGibbon 2006; Chamandy et al. 2012), each
        row weighted by an independent Poisson(1) count per resample, streamed in blocks.

        Rows with the same probabilities and label are interchangeable, so they are taken as one
        cell of m rows whose summed weight is one Poisson(m) draw (exact: a sum of independent
        Poisson counts). The cells are visited in order of score, so that the ROC AUC's
        Mann-Whitney sum needs only each resample's running weight of negatives below (ties
        count half). Memory is (resamples x block); time grows with the cells, at most the rows.
        """
        n_bins, n_boot = int(self.params["calibration_bins"]), int(self.params["n_boot"])
        p1, p0, y = proba[:, 1], proba[:, 0], np.asarray(y)
        order = np.lexsort((y, p0, p1))
        p1, p0, y = p1[order], p0[order], y[order]
        new_cell = np.r_[True, (p1[1:] != p1[:-1]) | (p0[1:] != p0[:-1]) | (y[1:] != y[:-1])]
        starts = np.flatnonzero(new_cell)
        m = np.diff(np.r_[starts, len(y)]).astype(np.float64)
        p1, p0, y = p1[starts], p0[starts], y[starts]
        pred = (p1 > p0).astype(np.int64)  # argmax: a tie goes to class 0
        correct = pred == y
        confidence = np.maximum(p0, p1).astype(np.float64)
        bins = calibration_bins(confidence, n_bins)
        new_score = np.r_[True, p1[1:] != p1[:-1]]
        cell_kind = np.select([(pred == 1) & (y == 1), (pred == 1) & (y == 0), (pred == 0) & (y == 1)], [0, 1, 2], 3)
        # blocks of ``chunk`` scores: a block boundary never splits a tie group
        edges = [int(e) for e in np.r_[np.flatnonzero(new_score)[::chunk], len(m)]]
        rng = np.random.default_rng(seed)
        cells = np.zeros((n_boot, 4))
        corr, conf = np.zeros((n_boot, n_bins)), np.zeros((n_boot, n_bins))
        neg_below, auc_sum = np.zeros(n_boot), np.zeros(n_boot)
        for a, b in zip(edges[:-1], edges[1:]):
            w = rng.poisson(m[a:b], size=(n_boot, b - a)).astype(np.float64)
            kinds = np.eye(4)[cell_kind[a:b]]
            cells += w @ kinds
            onehot = np.eye(n_bins)[bins[a:b]]
            corr += w @ (onehot * correct[a:b, None])
            conf += w @ (onehot * confidence[a:b, None])
            groups = np.flatnonzero(new_score[a:b])
            pos = np.add.reduceat(w * (y[a:b] == 1), groups, axis=1)
            neg = np.add.reduceat(w * (y[a:b] == 0), groups, axis=1)
            below = neg_below[:, None] + np.cumsum(neg, axis=1) - neg
            auc_sum += (pos * (below + 0.5 * neg)).sum(axis=1)
            neg_below += neg.sum(axis=1)
        TP, FP, FN, TN = cells.T
        n = cells.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            accuracy = (TP + TN) / n
            balanced = 0.5 * (TP / (TP + FN) + TN / (TN + FP))
            f1 = 2 * TP / (2 * TP + FP + FN)
            auc = auc_sum / ((TP + FN) * (FP + TN))
            ece = np.abs(corr - conf).sum(axis=1) / n
        return np.column_stack([accuracy, balanced, f1, auc, ece])

    def _bootstrap_multiclass(self, y, pred, proba, seed) -> np.ndarray:
        """Per-class confusion counts as weighted sums: macro F1 and mean recall per resample; AUC one
        class against the rest at a time; classes absent from a resample are left out of its means."""
        n_classes, n_bins = proba.shape[1], int(self.params["calibration_bins"])
        confidence = proba.max(axis=1)
        correct = (pred == y).astype(np.float64)
        bins = calibration_bins(confidence, n_bins)
        bin_onehot = np.eye(n_bins)[bins]
        true_onehot, pred_onehot = np.eye(n_classes)[y], np.eye(n_classes)[pred]
        ingredients = np.hstack([true_onehot * pred_onehot, true_onehot, pred_onehot, correct[:, None],
                                 bin_onehot * correct[:, None], bin_onehot * confidence[:, None]])
        k = n_classes
        out = []
        groups = [_auc_groups((y == c).astype(np.int64), proba[:, c]) for c in range(k)]
        for counts in resample_counts(len(y), int(self.params["n_boot"]), seed):
            sums = counts.astype(np.float64) @ ingredients
            tp, support, predicted = sums[:, :k], sums[:, k : 2 * k], sums[:, 2 * k : 3 * k]
            n = support.sum(axis=1)
            corr, conf = sums[:, 3 * k + 1 : 3 * k + 1 + n_bins], sums[:, 3 * k + 1 + n_bins :]
            with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a resample without some class: NaN there
                accuracy = sums[:, 3 * k] / n
                present = support > 0
                recall = np.where(present, tp / support, np.nan)
                balanced = np.nanmean(recall, axis=1)
                # sklearn's macro F1 counts every label given to it; a class neither present nor predicted scores 0
                f1 = np.where(support + predicted > 0, 2 * tp / (support + predicted), 0.0).mean(axis=1)
                ece = np.abs(corr - conf).sum(axis=1) / n
                aucs = np.column_stack([_weighted_auc(counts, None, None, groups[c], whole_counts=True)
                                        for c in range(k)])
                auc = np.nanmean(aucs, axis=1)
            out.append(np.column_stack([accuracy, balanced, f1, auc, ece]))
        return np.concatenate(out)


def confusion_counts(y: np.ndarray, pred: np.ndarray) -> tuple[int, int, int, int]:
    """TP, FP, FN, TN of binary predictions."""
    cells = np.bincount(np.asarray(y, dtype=np.int64) * 2 + np.asarray(pred, dtype=np.int64), minlength=4)
    return int(cells[3]), int(cells[1]), int(cells[2]), int(cells[0])


def confusion_points(TP: int, FP: int, FN: int, TN: int) -> dict[str, float]:
    """Accuracy, balanced accuracy and F1 (of the positive class) from the confusion counts, as
    scikit-learn defines them (0 where F1's denominator is empty)."""
    n = TP + FP + FN + TN
    recalls = [TP / (TP + FN) if TP + FN else 0.0, TN / (TN + FP) if TN + FP else 0.0]
    present = [TP + FN > 0, TN + FP > 0]
    return {
        "accuracy": (TP + TN) / n,
        "balanced_accuracy": float(np.mean([r for r, p in zip(recalls, present) if p])),
        "f1": 2 * TP / (2 * TP + FP + FN) if 2 * TP + FP + FN else 0.0,
    }


def _ovr_auc(y: np.ndarray, proba: np.ndarray) -> float:
    """Macro one-vs-rest ROC AUC over the classes present in ``y`` (sklearn needs all of them)."""
    present = [k for k in range(proba.shape[1]) if (y == k).any() and (y != k).any()]
    return float(np.mean([skm.roc_auc_score(y == k, proba[:, k]) for k in present]))


def _finite(x) -> float | None:
    return float(x) if np.isfinite(x) else None
