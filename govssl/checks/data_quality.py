"""The ``data_quality`` check: missing values, duplicates, train/test leakage, label balance, the
size of every sensitive group and intersection, constant columns, and personal identifiers.

Small groups make group fairness figures meaningless (their intervals span everything), so the
smallest n behind each sensitive attribute is reported. Evidence for NIST AI RMF MAP 2.3 and
MEASURE 2.1 (data suitability documented) and MEASURE 2.10 (privacy: identifiers in training data).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from govssl.checks._pii import scan_pii
from govssl.checks.base import Check, CheckContext, CheckParams, Measurement, PositiveInt, register_check

__all__ = ["DataQualityCheck"]


def _group_counts(frame: pd.DataFrame, columns: list[str]) -> dict[str, int]:
    """Rows per group ("sex=Female*race=White": count), sorted by label: counted over the
    columns' codes (one per distinct value), not over a label string per row (2.4 GB for the
    7.5 million training rows of a 10-million-row table)."""
    from govssl.data import as_category_strings
    from govssl.data._table import _category_codes

    combined = np.zeros(len(frame), dtype=np.int64)
    names = []
    for col in columns:
        series = frame[col]
        if isinstance(series.dtype, pd.CategoricalDtype):
            codes, levels = _category_codes(series)
        else:
            codes, uniques = pd.factorize(as_category_strings(series))
            levels = [str(u) for u in uniques]
        combined = combined * len(levels) + codes
        names.append((col, levels))
    out: dict[str, int] = {}
    for key, count in zip(*np.unique(combined, return_counts=True)):
        parts, rest = [], int(key)
        for col, levels in reversed(names):
            rest, code = divmod(rest, len(levels))
            parts.append(f"{col}={levels[code]}")
        label = "*".join(reversed(parts))
        out[label] = out.get(label, 0) + int(count)
    return dict(sorted(out.items()))


@register_check("data_quality")
class DataQualityCheck(Check):
    metrics = (
        "missing_fraction", "duplicate_row_fraction", "train_test_overlap_fraction",
        "minority_class_fraction", "min_group_size", "constant_columns", "undeclared_pii_columns",
    )

    class Params(CheckParams):
        pii_sample: PositiveInt = 2000  # values per column the identifier scan reads

    def measure(self, ctx: CheckContext) -> list[Measurement]:
        data = ctx.dataset
        train, test = data.train, data.test
        full = pd.concat([train, test], ignore_index=True)
        n = len(full)
        # Only columns with gaps get a row; a table without any gets one model-wide zero.
        out = [
            Measurement(self.name, "missing_fraction", float(full[c].isna().mean()), str(c), n=n,
                        details={"missing": int(full[c].isna().sum())})
            for c in full.columns if full[c].isna().any()
        ] or [Measurement(self.name, "missing_fraction", 0.0, n=n, details={"missing": 0})]
        hashed = getattr(data, "out_of_core", False)
        if hashed:  # a table too large for per-row tuples: one 64-bit hash per row (see _row_hashes)
            train_hash, test_hash = _row_hashes(train), _row_hashes(test)
            duplicates = int(pd.Series(np.concatenate([train_hash, test_hash])).duplicated().sum())
        else:
            duplicates = int(full.duplicated().sum())
        out.append(Measurement(self.name, "duplicate_row_fraction", duplicates / n, n=n,
                               details={"duplicate_rows": duplicates, "scope": "train and test together"}))
        # Leakage: a test row identical (every column, label included) to some training row.
        if hashed:
            in_train = np.isin(test_hash, train_hash)
        else:
            seen = pd.MultiIndex.from_frame(train.astype("string").fillna("\x00"))
            in_train = pd.MultiIndex.from_frame(test.astype("string").fillna("\x00")).isin(seen)
        out.append(Measurement(self.name, "train_test_overlap_fraction", float(in_train.mean()), n=len(test),
                               details={"test_rows_in_train": int(in_train.sum())}))
        for split, y in (("train", data.y_train), ("test", data.y_test)):
            rate = float(y.mean())
            out.append(Measurement(self.name, "minority_class_fraction", min(rate, 1 - rate), split, n=len(y),
                                   details={"positive_label": data.positive_label, "positive_fraction": rate}))
        subjects = [[c] for c in data.sensitive] + ([list(data.sensitive)] if len(data.sensitive) > 1 else [])
        for columns in subjects:
            test_counts, train_counts = _group_counts(test, columns), _group_counts(train, columns)
            smallest = min(test_counts.values())
            out.append(Measurement(self.name, "min_group_size", float(smallest), "*".join(columns), n=smallest,
                                   details={"split": "test", "test": test_counts, "train": train_counts,
                                            "smallest_group": min(test_counts, key=test_counts.get)}))
        constant = [str(c) for c in full.columns if full[c].nunique(dropna=False) <= 1]
        out.append(Measurement(self.name, "constant_columns", float(len(constant)), n=len(full.columns),
                               details={"columns": constant}))
        declared = set(ctx.plan.dataset.personal_data) if ctx.plan is not None else set()
        found = scan_pii(full, sample=int(self.params["pii_sample"]), seed=ctx.seed)
        undeclared = {c: hits for c, hits in found.items() if c not in declared}
        out.append(Measurement(self.name, "undeclared_pii_columns", float(len(undeclared)), n=len(full.columns),
                               details={"undeclared": undeclared, "declared": sorted(declared),
                                        "found": found}))
        return out


def _row_hashes(frame: pd.DataFrame) -> np.ndarray:
    """One 64-bit hash per row of every column's value as text (missing values alike), as the
    in-memory comparison reads them; two different rows share a hash with probability about
    2**-64 per pair (for 10 million rows, about 3 in a million that any pair does, which would
    count one row too many as a duplicate)."""
    out = np.zeros(len(frame), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for col in frame.columns:  # a column at a time
            out = (out ^ _value_hashes(frame[col])) * np.uint64(0x100000001B3)
    return out


def _value_hashes(series: pd.Series) -> np.ndarray:
    """pandas' hash of each value as text (missing as "\x00"), computed once per distinct value:
    the same hashes as hashing every row's text, without a string per row."""
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    text = pd.Series(np.asarray(uniques, dtype=object)).astype("string")
    hashed = pd.util.hash_pandas_object(pd.concat([text, pd.Series(["\x00"], dtype="string")], ignore_index=True),
                                        index=False).to_numpy()
    return hashed[codes]  # code -1 (missing) picks the last: the hash of "\x00"
