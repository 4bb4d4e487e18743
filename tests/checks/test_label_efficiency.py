"""The label_efficiency check: both accuracies and the paired bootstrap interval of the gain."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from govssl.checks.base import CheckContext
from govssl.checks.label_efficiency import LabelEfficiencyCheck

from ._fakes import FakeDataset, resamples


@dataclass
class _Record:
    method: str = "simclr"
    finetune_mode: str = "linear_probe"
    label_fraction: float = 0.1
    n_labelled_rows: int = 10
    baseline: dict | None = None


class _Trained:
    def __init__(self, proba, baseline):
        self.proba, self.baseline, self.record = proba, baseline, _Record(baseline={"epochs": 1})

    def predict_proba(self, X):
        return self.proba


def _fixed_model(logits: np.ndarray) -> nn.Sequential:
    """A real Sequential whose output is a fixed table of logits, looked up by the row index in X."""
    table = nn.Embedding.from_pretrained(torch.as_tensor(logits, dtype=torch.float32))
    return nn.Sequential(nn.Flatten(0), _AsIndex(), table)


class _AsIndex(nn.Module):
    def forward(self, x):
        return x.long()


def test_label_efficiency__scores_both_models_and_pairs_the_bootstrap():
    rng = np.random.default_rng(0)
    n = 300
    y = rng.integers(0, 3, n)
    ssl_pred = np.where(rng.random(n) < 0.8, y, (y + 1) % 3)
    base_pred = np.where(rng.random(n) < 0.7, y, (y + 2) % 3)
    proba = np.eye(3)[ssl_pred]
    ctx = CheckContext(
        dataset=FakeDataset(y_test=y, X_test=np.arange(n, dtype=np.float32)[:, None]),
        train=_Trained(proba, _fixed_model(np.eye(3)[base_pred] * 5)), seed=3, out_dir=None,
    )
    result = LabelEfficiencyCheck(n_boot=200).run(ctx)
    assert result.status == "measured", result.reason
    got = {m.metric: m for m in result.measurements}
    ssl_acc, base_acc = (ssl_pred == y).mean(), (base_pred == y).mean()
    assert got["ssl_accuracy"].value == pytest.approx(ssl_acc)
    assert got["supervised_accuracy"].value == pytest.approx(base_acc)
    assert got["accuracy_gain"].value == pytest.approx(ssl_acc - base_acc)
    # the same resamples, by a plain loop: both models scored on the same drawn rows
    gains = [(ssl_pred[r] == y[r]).mean() - (base_pred[r] == y[r]).mean() for r in resamples(n, 200, 3)]
    low, high = np.quantile(gains, [0.025, 0.975])
    assert got["accuracy_gain"].ci_low == pytest.approx(low, abs=1e-9)
    assert got["accuracy_gain"].ci_high == pytest.approx(high, abs=1e-9)


def test_label_efficiency__skips_without_a_baseline():
    ctx = CheckContext(dataset=FakeDataset(y_test=np.zeros(3, dtype=int), X_test=np.zeros((3, 1))),
                       train=_Trained(np.eye(2)[[0, 0, 0]], None), seed=0, out_dir=None)
    result = LabelEfficiencyCheck().run(ctx)
    assert result.status == "skipped" and "baseline" in result.reason


def test_label_efficiency__out_of_core_draws_the_cell_counts_with_the_row_bootstrap_distribution():
    """A table too large for a (resamples x rows) matrix: the four cells' counts are drawn from
    their multinomial; the estimates are the same and the interval agrees with the row bootstrap's
    within Monte Carlo error."""
    import dataclasses

    rng = np.random.default_rng(1)
    n = 3000
    y = rng.integers(0, 2, n)
    ssl_pred = np.where(rng.random(n) < 0.85, y, 1 - y)
    base_pred = np.where(rng.random(n) < 0.8, y, 1 - y)
    trained = _Trained(np.eye(2)[ssl_pred], _fixed_model(np.eye(2)[base_pred] * 5))
    data = FakeDataset(y_test=y, X_test=np.arange(n, dtype=np.float32)[:, None])

    @dataclasses.dataclass
    class OutOfCore(FakeDataset):
        out_of_core: bool = True

    rows = LabelEfficiencyCheck(n_boot=4000).run(CheckContext(dataset=data, train=trained, seed=5, out_dir=None))
    cells = LabelEfficiencyCheck(n_boot=4000).run(CheckContext(
        dataset=OutOfCore(y_test=y, X_test=data.X_test), train=trained, seed=5, out_dir=None))
    by_rows = {m.metric: m for m in rows.measurements}
    by_cells = {m.metric: m for m in cells.measurements}
    for metric in LabelEfficiencyCheck.metrics:
        assert by_cells[metric].value == by_rows[metric].value
        width = by_rows[metric].ci_high - by_rows[metric].ci_low
        assert abs(by_cells[metric].ci_low - by_rows[metric].ci_low) < 0.1 * width
        assert abs(by_cells[metric].ci_high - by_rows[metric].ci_high) < 0.1 * width
    assert "multinomial" in by_cells["accuracy_gain"].details["bootstrap"]
    assert by_cells["accuracy_gain"].ci_low != by_rows["accuracy_gain"].ci_low  # other draws
