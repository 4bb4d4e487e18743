"""Tests of the built-in Adult dataset as the demo plan loads it: official split sizes, labels,
missing values, sensitive features, dropped columns and the encoding."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from govssl.data import MISSING, load
from govssl.data._builtin import ADULT, load_builtin
from govssl.plan import load_plan

REPO = Path(__file__).resolve().parents[2]
DEMO_PLAN = REPO / "audits" / "adult-income.yaml"

# UCI Adult, adult.names: 32,561 training and 16,281 test instances; 24.08% of train is >50K
N_TRAIN, N_TEST, N_POSITIVE_TRAIN = 32_561, 16_281, 7_841


@pytest.fixture(scope="module")
def adult():
    return load(load_plan(DEMO_PLAN))


@pytest.fixture(scope="module")
def adult_with_fnlwgt():
    plan = load_plan(DEMO_PLAN)
    dataset = plan.dataset.model_copy(update={"drop": []})
    return load(plan.model_copy(update={"dataset": dataset}))


def test_load_builtin__official_split_sizes(adult):
    assert len(adult.train) == N_TRAIN
    assert len(adult.test) == N_TEST
    assert adult.X_train.shape[0] == len(adult.y_train) == N_TRAIN
    assert adult.X_test.shape[0] == len(adult.y_test) == N_TEST


def test_load_builtin__positive_rate_of_train(adult):
    assert int(adult.y_train.sum()) == N_POSITIVE_TRAIN
    assert adult.summary().positive_rate_train == N_POSITIVE_TRAIN / N_TRAIN
    assert adult.positive_label == ">50K"


def test_load_builtin__test_labels_lose_their_trailing_dot(adult):
    # the raw test file writes ">50K." and "<=50K."; the labels must match the training file's
    raw = gzip.decompress((REPO / "govssl" / "datasets" / "adult" / "adult.test.gz").read_bytes())
    assert b">50K." in raw

    assert set(adult.test["income"]) == {"<=50K", ">50K"}
    assert set(adult.train["income"]) == {"<=50K", ">50K"}
    assert adult.y_test.sum() == (adult.test["income"] == ">50K").sum()


def test_load_builtin__question_mark_is_missing(adult):
    assert int(adult.train["workclass"].isna().sum()) == 1_836
    assert int(adult.train["occupation"].isna().sum()) == 1_843
    assert int(adult.train["native-country"].isna().sum()) == 583
    for column in ADULT.categorical:
        assert "?" not in set(adult.train[column].dropna())
        assert "?" not in set(adult.test[column].dropna())


def test_load_builtin__missing_level_encodes_the_missing_rows(adult):
    column = adult.encoder.feature_names.index(f"workclass={MISSING}")

    assert adult.X_train[:, column].sum() == 1_836
    assert np.array_equal(adult.X_train[:, column] == 1, adult.train["workclass"].isna().to_numpy())


def test_load_builtin__sensitive_sex_and_race(adult):
    assert adult.sensitive == ("sex", "race")
    frame = adult.sensitive_frame("test")

    assert list(frame.columns) == ["sex", "race"]
    assert len(frame) == N_TEST
    assert set(frame["sex"]) == {"Female", "Male"}
    assert set(frame["race"]) == {"White", "Black", "Asian-Pac-Islander", "Amer-Indian-Eskimo", "Other"}
    assert (frame["sex"] == "Female").sum() == 5_421
    assert len(adult.sensitive_frame("train")) == N_TRAIN


def test_load_builtin__fnlwgt_dropped_when_the_plan_says_so(adult, adult_with_fnlwgt):
    assert "fnlwgt" not in adult.numeric
    assert "fnlwgt" not in adult.encoder.feature_names
    assert "fnlwgt" in adult_with_fnlwgt.numeric
    assert "fnlwgt" in adult_with_fnlwgt.encoder.feature_names
    assert adult_with_fnlwgt.X_train.shape[1] == adult.X_train.shape[1] + 1


def test_load_builtin__feature_typing(adult):
    assert adult.numeric == ("age", "education-num", "capital-gain", "capital-loss", "hours-per-week")
    assert adult.categorical == ADULT.categorical
    assert "income" not in adult.encoder.feature_names


def test_load_builtin__encoded_matrices_are_finite_and_aligned(adult):
    assert adult.X_train.dtype == np.float32
    assert not np.isnan(adult.X_train).any() and not np.isnan(adult.X_test).any()
    assert adult.X_train.shape[1] == adult.X_test.shape[1] == adult.encoder.n_features
    # every row has exactly one level per categorical column (Adult's test file has no new levels)
    for name, block in adult.encoder.groups:
        if name in adult.categorical:
            assert np.all(adult.X_test[:, block].sum(axis=1) == 1.0), name
            assert np.all(adult.X_train[:, block].sum(axis=1) == 1.0), name


def test_load_builtin__encoder_is_fitted_on_train_only(adult):
    age = next(c for c in adult.encoder.numeric if c.name == "age")
    gain = next(c for c in adult.encoder.numeric if c.name == "capital-gain")

    assert age.log is False
    assert age.mean == pytest.approx(adult.train["age"].mean(), abs=1e-12)
    assert age.std == pytest.approx(adult.train["age"].std(ddof=0), abs=1e-12)
    assert age.mean != pytest.approx(adult.test["age"].mean(), abs=1e-6)
    assert gain.log is True
    assert gain.mean == pytest.approx(np.log1p(adult.train["capital-gain"]).mean(), abs=1e-12)
    assert adult.X_train[:, 0].mean() == pytest.approx(0.0, abs=1e-5)
    # the levels are the values adult.names documents (a public file), none read from the rows:
    # Holand-Netherlands has one training row, yet is a level, as the description lists it
    from govssl.data._builtin import ADULT, documented_levels

    documented = documented_levels(ADULT)
    assert (adult.train["native-country"] == "Holand-Netherlands").sum() == 1
    assert "native-country=Holand-Netherlands" in adult.encoder.feature_names
    for spec in adult.encoder.categorical:
        assert set(spec.levels) == set(documented[spec.name]) | {"(missing)", "(other)"}
    record = adult.encoder.levels_record(dp=True)
    assert record["private"] is True and set(record["columns"].values()) == {"declared"}


def test_documented_levels__cover_every_value_of_adult(adult):
    from govssl.data._builtin import ADULT, documented_levels

    documented = documented_levels(ADULT)
    assert sorted(documented) == sorted(ADULT.categorical)
    assert len(documented["native-country"]) == 41 and documented["sex"] == ["Female", "Male"]
    for column in ADULT.categorical:
        seen = set(adult.train[column].dropna()) | set(adult.test[column].dropna())
        assert seen <= set(documented[column]), column


def test_load_builtin__files_record_their_hashes(adult):
    names = [Path(f["path"]).name for f in adult.files]

    assert names == ["adult.data.gz", "adult.test.gz"]
    assert [f["sha256_uncompressed"] for f in adult.files] == [sha for _, sha in ADULT.files]


def test_load_builtin__unknown_name_raises():
    with pytest.raises(KeyError):
        load_builtin("german")
