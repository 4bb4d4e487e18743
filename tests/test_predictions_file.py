"""predictions.csv, written in blocks by pandas: byte for byte what the csv module wrote row by row."""

from __future__ import annotations

import csv
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from govssl.audit import _write_predictions


def _row_by_row(path, data, proba) -> None:
    """The writer predictions.csv had before: one csv.writer row per test row."""
    sensitive = data.sensitive_frame("test")
    multiclass = proba.shape[1] > 2
    classes = [f"p_{c}" for c in data.classes] if multiclass else []
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["row", "y_true", "y_pred", "score", *classes, *data.sensitive])
        for i in range(len(data.y_test)):
            pred = int(proba[i].argmax())
            score = proba[i, pred] if multiclass else proba[i, 1]
            writer.writerow([i, int(data.y_test[i]), pred, repr(float(score)),
                             *(repr(float(p)) for p in (proba[i] if multiclass else ())),
                             *(sensitive[c].iat[i] for c in data.sensitive)])


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("n", [0, 1, 2_501])
def test_predictions_file__same_bytes_as_the_csv_module(tmp_path, n_classes, n):
    rng = np.random.default_rng(n + n_classes)
    proba = rng.random((n, n_classes)).astype(np.float32)
    proba /= np.maximum(proba.sum(axis=1, keepdims=True), 1e-9)
    sensitive = pd.DataFrame({
        "sex": pd.Categorical(rng.choice(["Male", "Female", 'a "quoted", value'], n)),  # quoting
        "age": rng.integers(17, 90, n),
        "race": pd.Series(rng.choice(np.array(["White", "Black", None], dtype=object), n), dtype=object),  # None
        "score_group": pd.Categorical(rng.choice([1.5, np.nan], n)),  # a missing level
    })
    data = SimpleNamespace(y_test=rng.integers(0, n_classes, n), classes=[f"c{i}" for i in range(n_classes)],
                           sensitive=list(sensitive.columns), sensitive_frame=lambda split: sensitive)
    _row_by_row(tmp_path / "expected.csv", data, proba)
    _write_predictions(tmp_path / "written.csv", data, proba, block=1_000)  # three blocks for 2,501 rows
    assert (tmp_path / "written.csv").read_bytes() == (tmp_path / "expected.csv").read_bytes()
