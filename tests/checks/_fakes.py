"""A small fake of what the checks read from their context: the test rows and fixed predictions."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from govssl.checks.base import CheckContext


@dataclass
class FakeDataset:
    y_test: np.ndarray
    X_test: np.ndarray
    sensitive: tuple[str, ...] = ()
    sensitive_test: pd.DataFrame = field(default_factory=pd.DataFrame)

    def sensitive_frame(self, split: str = "test") -> pd.DataFrame:
        assert split == "test", "checks audit the held-out rows"
        return self.sensitive_test


@dataclass
class FakeTrain:
    """predict_proba returns fixed class probabilities, one row per test row."""

    proba: np.ndarray

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        assert len(X) == len(self.proba), "predict_proba must be called on the test rows"
        return self.proba


def proba_from_scores(score: np.ndarray) -> np.ndarray:
    score = np.asarray(score, dtype=np.float64)
    return np.column_stack([1.0 - score, score])


def make_context(y, proba, sensitive: pd.DataFrame | None = None, seed: int = 0) -> CheckContext:
    y = np.asarray(y, dtype=np.int64)
    columns = tuple(sensitive.columns) if sensitive is not None else ()
    dataset = FakeDataset(
        y_test=y,
        X_test=np.zeros((len(y), 1), dtype=np.float32),
        sensitive=columns,
        sensitive_test=(sensitive.reset_index(drop=True) if sensitive is not None else pd.DataFrame()),
    )
    return CheckContext(dataset=dataset, train=FakeTrain(np.asarray(proba)), seed=seed, out_dir=None)


def resamples(n: int, n_boot: int, seed: int) -> list[np.ndarray]:
    """The row indices of each bootstrap resample, rebuilt from the draw counts the checks use."""
    from govssl.checks._bootstrap import resample_counts

    out = []
    for chunk in resample_counts(n, n_boot, seed):
        for counts in chunk:
            out.append(np.repeat(np.arange(n), counts.astype(np.int64)))
    return out
