"""Feature typing and the numeric encoding of a table for the model.

Numeric columns are standardised (heavy-tailed non-negative ones through log1p first);
categorical columns are one-hot encoded with a "missing" level. Each original column keeps its
block of encoded columns (``groups``), which SCARF needs to corrupt a whole feature at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["TableEncoder", "MISSING", "OTHER", "MAX_LEVELS"]

MISSING = "(missing)"
OTHER = "(other)"
MAX_LEVELS = 50  # rarer levels of a categorical column fold into OTHER


@dataclass(frozen=True)
class NumericColumn:
    name: str
    log: bool
    mean: float
    std: float
    low: float  # range seen in training, in the encoded space
    high: float


@dataclass(frozen=True)
class CategoricalColumn:
    name: str
    levels: tuple[str, ...]


def as_category_strings(series: pd.Series) -> pd.Series:
    """Categorical values as strings, missing values as MISSING (groups and levels alike)."""
    out = series.astype("string").str.strip().fillna(MISSING)
    return out.replace("", MISSING).astype(object)


class TableEncoder:
    """Fitted on the training rows only; applied unchanged to the test rows."""

    def __init__(self, numeric: list[str], categorical: list[str]):
        self.numeric_names = list(numeric)
        self.categorical_names = list(categorical)
        self.numeric: list[NumericColumn] = []
        self.categorical: list[CategoricalColumn] = []
        self.groups: list[tuple[str, slice]] = []
        self.feature_names: list[str] = []

    def fit(self, frame: pd.DataFrame) -> "TableEncoder":
        self.numeric, self.categorical, self.groups, self.feature_names = [], [], [], []
        start = 0
        for name in self.numeric_names:
            x = frame[name].to_numpy(dtype=np.float64)
            log = bool(x.min() >= 0 and pd.Series(x).skew() > 3)
            z = np.log1p(x) if log else x
            mean, std = float(z.mean()), float(z.std()) or 1.0
            enc = (z - mean) / std
            self.numeric.append(NumericColumn(name, log, mean, std, float(enc.min()), float(enc.max())))
            self.groups.append((name, slice(start, start + 1)))
            self.feature_names.append(name)
            start += 1
        for name in self.categorical_names:
            values = as_category_strings(frame[name])
            counts = values.value_counts()
            levels = list(counts.index[:MAX_LEVELS])
            if len(counts) > MAX_LEVELS:
                levels.append(OTHER)
            levels = tuple(sorted(levels))
            self.categorical.append(CategoricalColumn(name, levels))
            self.groups.append((name, slice(start, start + len(levels))))
            self.feature_names.extend(f"{name}={level}" for level in levels)
            start += len(levels)
        return self

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        out = np.zeros((len(frame), self.n_features), dtype=np.float32)
        col = 0
        for spec in self.numeric:
            x = frame[spec.name].to_numpy(dtype=np.float64)
            z = np.log1p(np.clip(x, 0, None)) if spec.log else x
            out[:, col] = (z - spec.mean) / spec.std
            col += 1
        for spec in self.categorical:
            values = as_category_strings(frame[spec.name])
            index = {level: i for i, level in enumerate(spec.levels)}
            fallback = index.get(OTHER, -1)
            codes = values.map(lambda v: index.get(v, fallback)).to_numpy(dtype=np.int64)
            rows = np.nonzero(codes >= 0)[0]
            out[rows, col + codes[rows]] = 1.0
            col += len(spec.levels)
        return out

    def numeric_ranges(self) -> dict[str, tuple[float, float]]:
        """Per numeric feature, the encoded range seen in training (attacks clip to it)."""
        return {c.name: (c.low, c.high) for c in self.numeric}
