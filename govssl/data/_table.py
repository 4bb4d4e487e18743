"""Feature typing and the numeric encoding of a table for the model.

Numeric columns are standardised (heavy-tailed non-negative ones through log1p first) without
overflowing: the mean and standard deviation are computed on the column scaled by a power of two
(exact, so ordinary columns give the same bits as the direct formula), and a column of values
near the float64 limit (say +-1e308) standardises to finite numbers. A value far enough outside
the training rows' range can still leave float32 after standardisation; :meth:`TableEncoder.nonfinite`
finds such columns so that the loader can name them.
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


def _power_of_two_scale(x: np.ndarray) -> float:
    """A power of two at least half the largest magnitude in ``x`` (1.0 for zeros): dividing by
    it is exact and brings every value into [-2, 2]."""
    top = float(np.max(np.abs(x))) if x.size else 0.0
    if not top or not np.isfinite(top):
        return 1.0
    return float(np.ldexp(1.0, int(np.frexp(top)[1]) - 1))


def _standardise(z: np.ndarray, mean: float, std: float) -> np.ndarray:
    """``(z - mean) / std`` with halved operands: exact for ordinary numbers, and the difference
    of two values near the float64 limit does not overflow."""
    return (0.5 * z - 0.5 * mean) / (0.5 * std)


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
            log = bool(x.min() >= 0 and pd.Series(x / _power_of_two_scale(x)).skew() > 3)
            z = np.log1p(x) if log else x
            scale = _power_of_two_scale(z)
            mean, std = float((z / scale).mean()) * scale, float((z / scale).std()) * scale or 1.0
            enc = _standardise(z, mean, std)
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
            with np.errstate(over="ignore"):  # float32 overflow is found by nonfinite()
                out[:, col] = _standardise(z, spec.mean, spec.std)
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

    def nonfinite(self, X: np.ndarray) -> list[str]:
        """The columns whose block of encoded values ``X`` (from :meth:`transform`) holds a value
        that is not finite."""
        bad = ~np.isfinite(X).all(axis=0)
        return [name for name, block in self.groups if bad[block].any()]

    def numeric_ranges(self) -> dict[str, tuple[float, float]]:
        """Per numeric feature, the encoded range seen in training (attacks clip to it)."""
        return {c.name: (c.low, c.high) for c in self.numeric}
