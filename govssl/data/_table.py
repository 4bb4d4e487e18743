"""Feature typing and the numeric encoding of a table for the model.

Numeric columns are standardised (heavy-tailed non-negative ones through log1p first) without
overflowing: the mean and standard deviation are computed on the column scaled by a power of two
(exact, so ordinary columns give the same bits as the direct formula), and a column of values
near the float64 limit (say +-1e308) standardises to finite numbers. A value far enough outside
the training rows' range can still leave float32 after standardisation; :meth:`TableEncoder.nonfinite`
finds such columns so that the loader can name them.
categorical columns are one-hot encoded with a "missing" level. Each original column keeps its
block of encoded columns (``groups``), which SCARF needs to corrupt a whole feature at once.

The level names travel with the model (``feature_names`` in its safetensors metadata), so a level
is a value written into a released file. Only values held by at least ``MIN_LEVEL_ROWS`` training
rows become levels; rarer ones share the OTHER level, so a name, a date of birth or a case number
of one person never reaches the model file. Under differential privacy that threshold is not
private (whether a value reaches ten rows depends on each of those rows), so under DP a column's
levels are either declared (``dataset.levels``, or a built-in dataset's documented values) or
chosen by a private selection (``selection``: Gaussian noise on every count, then a threshold;
see :func:`govssl.train._dp.level_selection`), whose cost the trainer composes into epsilon.
``level_sources`` says which columns' levels were declared and which were read from the rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["TableEncoder", "MISSING", "OTHER", "MAX_LEVELS", "MIN_LEVEL_ROWS"]

MISSING = "(missing)"
OTHER = "(other)"
MAX_LEVELS = 50  # rarer levels of a categorical column fold into OTHER
# A value held by fewer training rows is not a level (it folds into OTHER). Ten rows: a value
# shared by ten people no longer points at one of them, the same order as the smallest cell sizes
# statistical offices publish (commonly 5 to 10), and a level seen in fewer rows teaches the model
# little anyway. It is k-anonymity for the level list alone, not a privacy guarantee for the model.
MIN_LEVEL_ROWS = 10


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
    """Categorical values as strings, missing values as MISSING (groups and levels alike).

    For a pandas categorical ``series`` the strings are computed once per category and every row
    refers to its category's string: no string object per row (the heap keeps much of the
    memory of millions of small strings after they are freed)."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        codes, names = _category_codes(series)
        return pd.Series(np.array(names, dtype=object)[codes], index=series.index, name=series.name, dtype=object)
    out = series.astype("string").str.strip().fillna(MISSING)
    return out.replace("", MISSING).astype(object)


def _category_codes(series: pd.Series) -> tuple[np.ndarray, list[str]]:
    """For a pandas categorical ``series``: each row's index into ``names``, the distinct values of
    :func:`as_category_strings` (computed once per category, not once per row)."""
    categories = pd.Series(series.cat.categories)
    mapped = as_category_strings(categories).tolist() + [MISSING]  # the last: a missing value (code -1)
    names = list(dict.fromkeys(mapped))
    position = {name: i for i, name in enumerate(names)}
    lookup = np.array([position[m] for m in mapped], dtype=np.int64)
    return lookup[series.cat.codes.to_numpy()], names  # code -1 picks the last entry


def category_counts(series: pd.Series) -> pd.Series:
    """``as_category_strings(series).value_counts()``, from the category codes of a categorical
    series (for any other series, that expression itself)."""
    if not isinstance(series.dtype, pd.CategoricalDtype):
        return as_category_strings(series).value_counts()
    codes, names = _category_codes(series)
    counts = np.bincount(codes, minlength=len(names))
    out = pd.Series(counts, index=pd.Index(names, dtype=object), name="count")
    return out[out > 0].sort_values(ascending=False, kind="stable")


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

    def __init__(self, numeric: list[str], categorical: list[str], *, levels: dict[str, list[str]] | None = None,
                 min_rows: int = MIN_LEVEL_ROWS, selection: dict | None = None):
        """``levels``: declared level lists by column (used as given, never read from the rows);
        other categorical columns keep their values held by at least ``min_rows`` training rows.

        ``selection`` (under DP): {"sigma", "threshold", "seed", ...}; the other columns keep the
        values whose count plus Gaussian noise of standard deviation ``sigma`` reaches both
        ``threshold`` and ``min_rows`` (at most MAX_LEVELS of them, the largest noisy counts).
        MISSING and OTHER are levels of every such column whatever the rows hold, so that their
        presence tells nothing."""
        self.numeric_names = list(numeric)
        self.categorical_names = list(categorical)
        self.declared_levels = {str(k): [str(v) for v in vs] for k, vs in (levels or {}).items()}
        self.min_rows = int(min_rows)
        self.selection = dict(selection) if selection else None
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
        rng = np.random.default_rng(self.selection["seed"]) if self.selection else None
        for name in self.categorical_names:
            if name in self.declared_levels:
                levels = list(dict.fromkeys(self.declared_levels[name])) + [MISSING, OTHER]
                levels = tuple(sorted(set(levels)))
            elif rng is not None:
                counts = category_counts(frame[name])
                counts = counts[counts.index != MISSING].sort_index()  # a fixed order for the noise draws
                noisy = counts.to_numpy(dtype=np.float64) + rng.normal(0.0, self.selection["sigma"], len(counts))
                keep = noisy >= max(float(self.selection["threshold"]), float(self.min_rows))
                order = np.argsort(-noisy[keep], kind="stable")[:MAX_LEVELS]
                levels = tuple(sorted({*counts.index[keep][order], MISSING, OTHER}))
            else:
                counts = category_counts(frame[name])
                common = counts[(counts >= self.min_rows) | (counts.index == MISSING)]  # MISSING names no one
                levels = list(common.index[:MAX_LEVELS])
                if len(levels) < len(counts):
                    levels.append(OTHER)
                levels = tuple(sorted(levels))
            self.categorical.append(CategoricalColumn(name, levels))
            self.groups.append((name, slice(start, start + len(levels))))
            self.feature_names.extend(f"{name}={level}" for level in levels)
            start += len(levels)
        return self

    @property
    def level_sources(self) -> dict[str, str]:
        """Categorical column -> "declared" (the plan's list) or "training rows" (values held by at
        least ``min_rows`` rows)."""
        read = "training rows, private selection" if self.selection else "training rows"
        return {name: "declared" if name in self.declared_levels else read for name in self.categorical_names}

    def levels_record(self, dp: bool) -> dict:
        """For the training record: where each column's levels came from and whether that is private."""
        sources = self.level_sources
        read = sorted(c for c, how in sources.items() if how != "declared")
        if not sources:
            note = "no categorical features"
        elif not read:
            note = ("every category level was declared (dataset.levels, or the built-in dataset's documented "
                    "values); none was read from the rows")
        elif self.selection:
            sel = self.selection
            note = (f"the levels of {', '.join(read)} were chosen by a private selection: each value's count plus "
                    f"Gaussian noise (standard deviation {sel['sigma']:.4g}) had to reach {sel['threshold']:.4g} "
                    f"rows; its cost (noise multiplier {sel['noise_multiplier']:.4g}, and {sel['delta']:.3g} of "
                    "delta for a value held by one row crossing the threshold) is composed into the epsilon "
                    "of the training")
            return {"columns": sources, "min_rows": self.min_rows, "private": True, "selection": dict(sel),
                    "note": note}
        else:
            note = (f"the levels of {', '.join(read)} are the values held by at least {self.min_rows} training rows "
                    "(k-threshold rule); "
                    + ("under differential privacy this choice is not private: it depends on the rows and is "
                       "outside the (epsilon, delta) guarantee; declare the levels under dataset.levels to make it so"
                       if dp else "the model is not trained under differential privacy"))
        return {"columns": sources, "min_rows": self.min_rows, "private": bool(dp and not read), "note": note}

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
            index = {level: i for i, level in enumerate(spec.levels)}
            fallback = index.get(OTHER, -1)
            if isinstance(frame[spec.name].dtype, pd.CategoricalDtype):  # a streamed table's text column
                names_of, names = _category_codes(frame[spec.name])
                codes = np.array([index.get(v, fallback) for v in names], dtype=np.int64)[names_of]
            else:
                values = as_category_strings(frame[spec.name])
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
