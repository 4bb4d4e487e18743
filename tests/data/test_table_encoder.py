"""Tests of TableEncoder: fitted on the training rows only, hand-computed encodings."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from govssl.data import MISSING, TableEncoder
from govssl.data._table import MAX_LEVELS, MIN_LEVEL_ROWS, OTHER, as_category_strings


@pytest.fixture
def fitted() -> TableEncoder:
    train = pd.DataFrame({"num": [1.0, 2.0, 3.0, 4.0], "color": ["red", "blue", None, "red"]})
    return TableEncoder(["num"], ["color"], min_rows=1).fit(train)  # four rows: every value a level


def test_table_encoder__levels_include_missing_and_are_sorted(fitted):
    assert fitted.categorical[0].levels == (MISSING, "blue", "red")
    assert fitted.feature_names == ["num", "color=(missing)", "color=blue", "color=red"]
    assert fitted.groups == [("num", slice(0, 1)), ("color", slice(1, 4))]
    assert fitted.n_features == 4


def test_table_encoder__standardises_with_training_statistics(fitted):
    test = pd.DataFrame({"num": [5.0, 2.5], "color": ["blue", "red"]})

    out = fitted.transform(test)

    std = math.sqrt(1.25)  # population std of 1, 2, 3, 4
    assert out.dtype == np.float32
    assert out[:, 0] == pytest.approx([(5.0 - 2.5) / std, 0.0], abs=1e-6)
    assert out[:, 1:].tolist() == [[0, 1, 0], [0, 0, 1]]


def test_table_encoder__test_only_category_maps_to_all_zeros(fitted):
    test = pd.DataFrame({"num": [1.0], "color": ["green"]})

    assert fitted.transform(test)[0, 1:].tolist() == [0, 0, 0]


@pytest.mark.parametrize("missing", [None, np.nan, "", "  "])
def test_table_encoder__missing_values_map_to_the_missing_level(fitted, missing):
    test = pd.DataFrame({"num": [1.0], "color": pd.Series([missing], dtype=object)})

    assert fitted.transform(test)[0, 1:].tolist() == [1, 0, 0]


def test_table_encoder__strips_spaces_of_categories(fitted):
    test = pd.DataFrame({"num": [1.0], "color": [" red "]})

    assert fitted.transform(test)[0, 1:].tolist() == [0, 0, 1]


def test_table_encoder__refit_forgets_the_previous_fit(fitted):
    fitted.fit(pd.DataFrame({"num": [0.0, 10.0], "color": ["a", "b"]}))

    assert fitted.feature_names == ["num", "color=a", "color=b"]
    assert fitted.numeric[0].mean == 5.0


def test_table_encoder__rare_levels_fold_into_other():
    # level i appears i + 1 times: the 50 most frequent are levels 10..59
    values = [f"v{i:02d}" for i in range(60) for _ in range(i + 1)]
    encoder = TableEncoder([], ["c"]).fit(pd.DataFrame({"c": values}))

    levels = encoder.categorical[0].levels
    assert len(levels) == MAX_LEVELS + 1
    assert OTHER in levels and "v10" in levels and "v09" not in levels
    out = encoder.transform(pd.DataFrame({"c": ["v03", "never-seen", "v59"]}))
    other = levels.index(OTHER)
    assert out[0].argmax() == other and out[1].argmax() == other
    assert out[2].argmax() == levels.index("v59")
    assert out.sum(axis=1).tolist() == [1, 1, 1]


def test_table_encoder__heavy_tailed_column_is_log_scaled():
    x = np.array([0.0] * 95 + [1000.0] * 5)
    encoder = TableEncoder(["gain"], []).fit(pd.DataFrame({"gain": x}))

    column = encoder.numeric[0]
    z = np.log1p(x)
    assert column.log is True
    assert column.mean == pytest.approx(z.mean(), abs=1e-12)
    assert column.std == pytest.approx(z.std(), abs=1e-12)
    out = encoder.transform(pd.DataFrame({"gain": [1000.0, -5.0]}))
    # negative values are clipped to 0 before log1p
    assert out[:, 0] == pytest.approx([(z.max() - z.mean()) / z.std(), -z.mean() / z.std()], abs=1e-6)
    assert encoder.numeric_ranges()["gain"] == pytest.approx(((0 - z.mean()) / z.std(), (z.max() - z.mean()) / z.std()))


def test_table_encoder__constant_column_does_not_divide_by_zero():
    encoder = TableEncoder(["k"], []).fit(pd.DataFrame({"k": [3.0, 3.0, 3.0]}))

    assert encoder.numeric[0].std == 1.0
    assert encoder.transform(pd.DataFrame({"k": [3.0, 4.0]}))[:, 0].tolist() == [0.0, 1.0]


def test_as_category_strings__numbers_and_missing():
    out = as_category_strings(pd.Series([1, None, 3], dtype="Int64"))

    assert out.tolist() == ["1", MISSING, "3"]


def test_as_category_strings__a_categorical_column_gives_the_same_strings_as_its_values():
    values = np.array(["  x", "y", "", None, "z ", "y", np.nan, "x"] * 50, dtype=object)
    column = pd.Series(pd.Categorical(values), name="c", index=np.arange(len(values)) + 7)

    out = as_category_strings(column)

    assert out.equals(as_category_strings(column.astype(object)))  # the per-row path it replaces
    assert out.dtype == object and out.name == "c" and out.index.equals(column.index)
    assert len({id(v) for v in out}) == 4  # x, y, z, MISSING: one string object per value, not per row


def test_table_encoder__values_of_fewer_than_k_rows_are_not_levels():
    values = ["common"] * MIN_LEVEL_ROWS + ["rare"] * (MIN_LEVEL_ROWS - 1) + ["Jane Doe"] + [None]
    encoder = TableEncoder([], ["c"]).fit(pd.DataFrame({"c": values}))

    assert encoder.categorical[0].levels == (MISSING, OTHER, "common")
    assert not any("rare" in f or "Jane" in f for f in encoder.feature_names)
    assert encoder.transform(pd.DataFrame({"c": ["rare"]}))[0].tolist() == [0, 1, 0]
    assert encoder.level_sources == {"c": "training rows"}


def test_table_encoder__declared_levels_are_used_as_given():
    train = pd.DataFrame({"c": ["x"] * 30 + ["y"] * 30 + ["z"] * 2})
    encoder = TableEncoder([], ["c"], levels={"c": ["y", "w"]}).fit(train)

    # declared levels do not depend on the rows: "w" (never seen) is a level, "x" (30 rows) is not
    assert encoder.categorical[0].levels == (MISSING, OTHER, "w", "y")
    assert encoder.transform(pd.DataFrame({"c": ["x", "y"]})).tolist() == [[0, 1, 0, 0], [0, 0, 0, 1]]
    assert encoder.level_sources == {"c": "declared"}
