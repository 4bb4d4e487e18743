"""Tests of loading the user's own CSV / Parquet data: what loads, and for each bad input a
DataError that names the file and the column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from govssl.data import MAX_SENSITIVE_GROUPS, load, read_table
from govssl.data._builtin import load_builtin
from govssl.errors import DataError
from govssl.plan import load_plan

N_TRAIN_ROWS, N_TEST_ROWS = 300, 120


@pytest.fixture(scope="module")
def rows() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The first rows of Adult's official train and test files, as a user would bring them."""
    _, train, test, _ = load_builtin("adult")
    return train.iloc[:N_TRAIN_ROWS].reset_index(drop=True), test.iloc[:N_TEST_ROWS].reset_index(drop=True)


@pytest.fixture
def train_rows(rows) -> pd.DataFrame:
    return rows[0].copy()


@pytest.fixture
def test_rows(rows) -> pd.DataFrame:
    return rows[1].copy()


def _csv(tmp_path, frame: pd.DataFrame, name: str = "train.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path.resolve()


def _load(tmp_path, seed: int = 0, **dataset):
    plan_path = tmp_path / "plan.yaml"
    plan_path.write_text(yaml.safe_dump({"name": "t", "seed": seed, "dataset": dataset}), encoding="utf-8")
    return load(load_plan(plan_path))


def _data_error(tmp_path, **dataset) -> DataError:
    with pytest.raises(DataError) as info:
        _load(tmp_path, **dataset)
    return info.value


ADULT_SPEC = {"target": "income", "positive_label": ">50K"}


def test_load__csv_with_target_and_sensitive(tmp_path, train_rows):
    path = _csv(tmp_path, train_rows)

    data = _load(tmp_path, path="train.csv", sensitive=["sex", "race"], **ADULT_SPEC)

    assert data.name == "train"
    assert data.target == "income" and data.positive_label == ">50K"
    assert data.sensitive == ("sex", "race")
    assert len(data.train) + len(data.test) == N_TRAIN_ROWS
    assert int(data.y_train.sum() + data.y_test.sum()) == int((train_rows["income"] == ">50K").sum())
    assert "income" not in data.numeric + data.categorical
    assert data.numeric == ("age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week")
    assert not np.isnan(data.X_train).any() and data.X_train.shape[1] == data.X_test.shape[1]
    assert data.files[0]["path"] == str(path)
    assert list(data.sensitive_frame().columns) == ["sex", "race"]


def test_load__separate_test_file_is_the_test_split(tmp_path, train_rows, test_rows):
    _csv(tmp_path, train_rows)
    _csv(tmp_path, test_rows[list(reversed(train_rows.columns))], "test.csv")  # column order may differ

    data = _load(tmp_path, path="train.csv", test_path="test.csv", **ADULT_SPEC)

    assert len(data.train) == N_TRAIN_ROWS and len(data.test) == N_TEST_ROWS
    assert data.test["age"].tolist() == test_rows["age"].tolist()
    assert list(data.test.columns) == list(train_rows.columns)
    assert len(data.files) == 2


def test_load__positive_label_inferred_for_0_and_1(tmp_path, train_rows):
    train_rows["income"] = (train_rows["income"] == ">50K").astype(int)
    _csv(tmp_path, train_rows)

    data = _load(tmp_path, path="train.csv", target="income")

    assert data.positive_label == "1"
    assert int(data.y_train.sum() + data.y_test.sum()) == int(train_rows["income"].sum())


def test_load__parquet_loads_like_csv(tmp_path, train_rows):
    _csv(tmp_path, train_rows)
    train_rows.to_parquet(tmp_path / "train.parquet", index=False)

    from_csv = _load(tmp_path, path="train.csv", sensitive=["sex"], **ADULT_SPEC)
    from_parquet = _load(tmp_path, path="train.parquet", sensitive=["sex"], **ADULT_SPEC)

    assert from_parquet.numeric == from_csv.numeric
    assert from_parquet.categorical == from_csv.categorical
    assert from_parquet.encoder.feature_names == from_csv.encoder.feature_names
    assert np.array_equal(from_parquet.X_train, from_csv.X_train)
    assert np.array_equal(from_parquet.X_test, from_csv.X_test)
    assert np.array_equal(from_parquet.y_test, from_csv.y_test)


def test_load__parquet_problems_are_named_like_csv(tmp_path, train_rows):
    train_rows.to_parquet(tmp_path / "train.parquet", index=False)
    where = (tmp_path / "train.parquet").resolve()

    err = _data_error(tmp_path, path="train.parquet", target="income", sensitive=["gender"])

    assert err.problems == [f"{where}: sensitive column 'gender' (dataset.sensitive[0]) not found"]


def test_load__missing_target_column(tmp_path, train_rows):
    where = _csv(tmp_path, train_rows)

    err = _data_error(tmp_path, path="train.csv", target="salary")

    assert str(err).splitlines()[0] == f"{where}: 1 problem(s) with the data"
    assert err.problems == [
        f"{where}: target column 'salary' (dataset.target) not found; columns: {', '.join(train_rows.columns)}"
    ]
    assert err.exit_code == 2


def test_load__missing_sensitive_column(tmp_path, train_rows):
    where = _csv(tmp_path, train_rows)

    err = _data_error(tmp_path, path="train.csv", sensitive=["sex", "gender"], **ADULT_SPEC)

    assert err.problems == [f"{where}: sensitive column 'gender' (dataset.sensitive[1]) not found"]


def test_load__missing_drop_and_categorical_columns(tmp_path, train_rows):
    where = _csv(tmp_path, train_rows)

    err = _data_error(tmp_path, path="train.csv", drop=["fnlwgt", "weight"], categorical=["zip"], **ADULT_SPEC)

    assert err.problems == [
        f"{where}: column 'weight' (dataset.drop[1]) not found",
        f"{where}: column 'zip' (dataset.categorical[0]) not found",
    ]


def test_load__every_column_problem_at_once(tmp_path, train_rows):
    where = _csv(tmp_path, train_rows)

    err = _data_error(tmp_path, path="train.csv", target="salary", sensitive=["gender"], drop=["weight"])

    assert len(err.problems) == 3
    assert str(err).splitlines()[0] == f"{where}: 3 problem(s) with the data"


def test_load__nan_in_numeric_feature_names_column_and_row(tmp_path, train_rows):
    train_rows["age"] = train_rows["age"].astype(float)
    train_rows.loc[[5, 9], "age"] = np.nan
    where = _csv(tmp_path, train_rows)

    err = _data_error(tmp_path, path="train.csv", **ADULT_SPEC)

    assert err.problems == [
        f"{where}: numeric column 'age' has 2 NaN or infinite value(s) (first in data row 6); "
        "fill them, drop the rows, or list the column under dataset.drop"
    ]


def test_load__nan_in_the_test_file_names_the_test_file_and_its_row(tmp_path, train_rows, test_rows):
    where = _csv(tmp_path, train_rows)
    test_rows["hours-per-week"] = test_rows["hours-per-week"].astype(float)
    test_rows.loc[2, "hours-per-week"] = np.inf
    test_where = _csv(tmp_path, test_rows, "test.csv")

    err = _data_error(tmp_path, path="train.csv", test_path="test.csv", **ADULT_SPEC)

    assert str(err).splitlines()[0] == f"{where}: 1 problem(s) with the data"
    assert err.problems == [
        f"{test_where}: numeric column 'hours-per-week' has 1 NaN or infinite value(s) (first in data row 3); "
        "fill them, drop the rows, or list the column under dataset.drop"
    ]


def test_load__nan_in_a_dropped_column_is_fine(tmp_path, train_rows):
    train_rows["fnlwgt"] = train_rows["fnlwgt"].astype(float)
    train_rows.loc[0, "fnlwgt"] = np.nan
    _csv(tmp_path, train_rows)

    data = _load(tmp_path, path="train.csv", drop=["fnlwgt"], **ADULT_SPEC)

    assert "fnlwgt" not in data.numeric


def test_load__missing_target_value_names_the_row(tmp_path, train_rows):
    train_rows.loc[3, "income"] = None
    where = _csv(tmp_path, train_rows)

    err = _data_error(tmp_path, path="train.csv", **ADULT_SPEC)

    assert err.problems == [f"{where}: target column 'income' has 1 missing value(s) (first in data row 4)"]


def test_load__empty_file(tmp_path):
    (tmp_path / "train.csv").write_bytes(b"")
    where = (tmp_path / "train.csv").resolve()

    err = _data_error(tmp_path, path="train.csv", target="income")

    assert str(err) == f"{where}: the file is empty (no header, no rows)"
    assert err.exit_code == 2


def test_load__header_only_file(tmp_path, train_rows):
    where = _csv(tmp_path, train_rows.iloc[:0])

    err = _data_error(tmp_path, path="train.csv", target="income")

    assert str(err) == f"{where}: the file has a header but no data rows"


def test_load__target_with_three_classes(tmp_path, train_rows):
    train_rows.loc[:10, "income"] = "unknown"
    where = _csv(tmp_path, train_rows)

    err = _data_error(tmp_path, path="train.csv", target="income")

    assert str(err) == (
        f"{where}: column 'income' (the target) must have exactly 2 classes; found 3: '<=50K', '>50K', 'unknown'"
    )


def test_load__positive_label_not_a_value(tmp_path, train_rows):
    where = _csv(tmp_path, train_rows)

    err = _data_error(tmp_path, path="train.csv", target="income", positive_label=">50k")

    assert str(err) == f"{where}: positive_label '>50k' is not a value of 'income' ('<=50K', '>50K')"


def test_load__positive_label_needed_when_it_cannot_be_guessed(tmp_path, train_rows):
    where = _csv(tmp_path, train_rows)

    err = _data_error(tmp_path, path="train.csv", target="income")

    assert str(err) == (
        f"{where}: say which value of 'income' is the positive class with dataset.positive_label "
        "(one of '<=50K', '>50K')"
    )


def test_load__too_many_sensitive_groups(tmp_path, train_rows):
    where = _csv(tmp_path, train_rows)
    n_ages = train_rows["age"].nunique()
    assert n_ages > MAX_SENSITIVE_GROUPS

    err = _data_error(tmp_path, path="train.csv", sensitive=["age"], **ADULT_SPEC)

    assert err.problems == [
        f"{where}: sensitive column 'age' has {n_ages} distinct values; group it into at most "
        f"{MAX_SENSITIVE_GROUPS} bands first (e.g. age bands)"
    ]


def test_load__test_file_with_different_columns(tmp_path, train_rows, test_rows):
    where = _csv(tmp_path, train_rows)
    test_where = _csv(tmp_path, test_rows.drop(columns=["fnlwgt"]).assign(extra=1), "test.csv")

    err = _data_error(tmp_path, path="train.csv", test_path="test.csv", **ADULT_SPEC)

    assert str(err) == f"{test_where}: columns differ from {where}: extra, fnlwgt"


def test_load__training_rows_with_one_class(tmp_path, train_rows, test_rows):
    where = _csv(tmp_path, train_rows[train_rows["income"] == "<=50K"])
    _csv(tmp_path, test_rows, "test.csv")

    err = _data_error(tmp_path, path="train.csv", test_path="test.csv", **ADULT_SPEC)

    assert str(err) == f"{where}: the training rows hold only one class of 'income'"


def test_load__stratified_split_is_reproducible_for_a_seed(tmp_path, train_rows):
    train_rows["row_id"] = np.arange(len(train_rows))
    _csv(tmp_path, train_rows)
    spec = dict(path="train.csv", test_fraction=0.3, drop=["row_id"], **ADULT_SPEC)

    first = _load(tmp_path, seed=7, **spec)
    again = _load(tmp_path, seed=7, **spec)
    other = _load(tmp_path, seed=8, **spec)

    test_ids, train_ids = set(first.test["row_id"]), set(first.train["row_id"])
    assert test_ids == set(again.test["row_id"])
    assert np.array_equal(first.X_test, again.X_test)
    assert test_ids != set(other.test["row_id"])
    assert test_ids.isdisjoint(train_ids) and test_ids | train_ids == set(range(N_TRAIN_ROWS))
    # stratified: each class keeps round(fraction * its size) rows in the test split
    positives = int((train_rows["income"] == ">50K").sum())
    assert int(first.y_test.sum()) == round(0.3 * positives)
    assert len(first.test) - int(first.y_test.sum()) == round(0.3 * (N_TRAIN_ROWS - positives))
    assert "row_id" not in first.encoder.feature_names


def test_read_table__unreadable_csv(tmp_path):
    path = tmp_path / "data.csv"
    path.write_bytes(b"\xff\xfe\x00\x01binary\x00junk\n\xc3\x28")

    with pytest.raises(DataError) as info:
        read_table(path)

    assert str(info.value).startswith(f"{path}: cannot read as CSV: ")


def test_read_table__duplicate_column_names_after_stripping(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a ,a,b\n1,2,3\n")

    with pytest.raises(DataError) as info:
        read_table(path)

    assert str(info.value) == (f"{path}: duplicate header(s) in the header row: 'a' (columns 1, 2); every column "
                               f"needs its own name (rename or remove the copies)")


def test_read_table__strips_spaces_of_headers_and_values(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text(" a, b\n1, x\n")

    frame = read_table(path)

    assert list(frame.columns) == ["a", "b"]
    assert frame["b"].tolist() == ["x"]


def test_read_table__file_not_found(tmp_path):
    with pytest.raises(DataError) as info:
        read_table(tmp_path / "none.csv")

    assert str(info.value) == f"{tmp_path / 'none.csv'}: data file not found"
