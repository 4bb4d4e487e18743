"""Label efficiency: did self-supervised pretraining help, at the plan's fraction of labels?

The trainer also trains a supervised-only model (same architecture, labelled rows, epochs and DP
target; no pretraining). Both are scored on the same test rows; the gain is the difference in
accuracy, with a paired percentile bootstrap interval (Efron & Tibshirani 1993): each resample
draws test rows once and scores both models on them, so the interval reflects the difference,
not two independent noises.
"""

from __future__ import annotations

import numpy as np

from govssl.checks._bootstrap import (
    CELL_COUNTS, ROW_RESAMPLES, cell_sums, counts_drawn, multinomial_sums, percentile_interval,
)
from govssl.checks.base import (
    Check, CheckContext, CheckParams, Confidence, Measurement, PositiveInt, SkipCheck, register_check,
)

__all__ = ["LabelEfficiencyCheck"]


@register_check("label_efficiency")
class LabelEfficiencyCheck(Check):
    metrics = ("ssl_accuracy", "supervised_accuracy", "accuracy_gain")

    class Params(CheckParams):
        n_boot: PositiveInt = 1000
        confidence: Confidence = 0.95

    def measure(self, ctx: CheckContext) -> list[Measurement]:
        baseline = getattr(ctx.train, "baseline", None)
        if baseline is None:
            raise SkipCheck("no supervised-only baseline was trained (no pretraining, or training.baseline: false)")
        from govssl.train.models import predict_proba

        y = ctx.dataset.y_test
        ssl_correct = (ctx.test_proba().argmax(axis=1) == y).astype(np.float64)
        base_correct = (predict_proba(baseline, ctx.dataset.X_test).argmax(axis=1) == y).astype(np.float64)
        n_boot, confidence = int(self.params["n_boot"]), float(self.params["confidence"])
        # each test row falls in one of four cells (SSL model right or not x baseline right or
        # not); a resample's correct counts are sums of its cell counts
        cells = ssl_correct.astype(np.int64) * 2 + base_correct.astype(np.int64)
        if counts_drawn(ctx.dataset, len(y)):
            # many rows: the cell counts of a row resample drawn directly, Multinomial(n, cell
            # shares); the same distribution, other draws
            boot = multinomial_sums(np.bincount(cells, minlength=4), n_boot, ctx.seed)
            bootstrap = CELL_COUNTS + "; cells: SSL model right x baseline right"
        else:
            boot = cell_sums(cells, 4, n_boot, ctx.seed)
            bootstrap = "paired " + ROW_RESAMPLES
        sums = np.column_stack([boot[:, 2] + boot[:, 3], boot[:, 1] + boot[:, 3]])
        rates = sums / len(y)
        samples = np.column_stack([rates[:, 0], rates[:, 1], rates[:, 0] - rates[:, 1]])
        low, high = percentile_interval(samples, confidence)
        points = (ssl_correct.mean(), base_correct.mean(), ssl_correct.mean() - base_correct.mean())
        record = ctx.train.record
        details = {
            "n_boot": n_boot, "bootstrap": bootstrap, "confidence": confidence, "pretraining": record.method,
            "finetune_mode": record.finetune_mode, "label_fraction": record.label_fraction,
            "n_labelled_rows": record.n_labelled_rows, "baseline": dict(record.baseline or {}),
        }
        return [
            Measurement(check=self.name, metric=name, value=float(points[i]), ci_low=float(low[i]),
                        ci_high=float(high[i]), n=len(y), details=details)
            for i, name in enumerate(self.metrics)
        ]
