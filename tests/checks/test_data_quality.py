"""The data_quality check and its PII scan, against hand counts and pandas."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from govssl.checks._pii import scan_pii
from govssl.checks.base import CheckContext
from govssl.checks.data_quality import DataQualityCheck

FIRST = ["Alice", "Bob", "Carmen", "Dmitri", "Emeka", "Fatima", "Grace", "Hiroshi", "Ines", "Jamal"]
LAST = ["Smith", "Okafor", "Garcia", "Ivanova", "Nguyen", "Schmidt", "Rossi", "Tanaka", "Haddad", "Kowalski"]


def people(n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    names = [f"{FIRST[i % 10]} {LAST[(i * 7 + i // 10) % 10]}" for i in range(n)]
    return pd.DataFrame({
        "col_a": names,
        "col_b": [f"{n.split()[0].lower()}.{n.split()[1].lower()}{i}@example.org" for i, n in enumerate(names)],
        "score": rng.normal(size=n).round(3),
        "plan": rng.choice(["basic", "premium"], size=n),
    })


@dataclass
class FakeDataset:
    train: pd.DataFrame
    test: pd.DataFrame
    target: str = "y"
    positive_label: str = "1"
    sensitive: tuple[str, ...] = ()

    @property
    def y_train(self):
        return (self.train[self.target].astype(str) == "1").to_numpy(dtype=np.int64)

    @property
    def y_test(self):
        return (self.test[self.target].astype(str) == "1").to_numpy(dtype=np.int64)


def measure(train, test, sensitive=(), personal_data=()):
    plan = SimpleNamespace(dataset=SimpleNamespace(personal_data=list(personal_data)))
    ctx = CheckContext(dataset=FakeDataset(train, test, sensitive=tuple(sensitive)), train=None, seed=0,
                       out_dir=None, plan=plan)
    result = DataQualityCheck().run(ctx)
    assert result.status == "measured", result.reason
    return result.measurements


def test_scan_pii__flags_names_and_emails_by_their_values():
    found = scan_pii(people())
    assert {h["kind"] for h in found["col_a"]} == {"name"}
    assert {h["kind"] for h in found["col_b"]} == {"email"}
    assert set(found) == {"col_a", "col_b"}


def test_scan_pii__stays_quiet_on_adult(adult_frames):
    train, test = adult_frames
    assert scan_pii(pd.concat([train, test], ignore_index=True)) == {}


@pytest.mark.parametrize("column, values, kind", [
    ("Phone Number", ["+44 20 7946 0958", "+1 (555) 010-9999"], "phone"),
    ("x1", ["+44 20 7946 0958", "+1 (555) 010-9999"], "phone"),
    ("DOB", ["n/a", "n/a"], "date_of_birth"),
    ("x2", ["1984-03-02", "12/11/1961"], "date_of_birth"),
    ("x3", ["078-05-1120", "219-09-9999"], "national_id"),
    ("x4", ["QQ123456C", "AB 12 34 56 D"], "national_id"),
    ("E-mail", ["n/a", "n/a"], "email"),
    ("surname", ["n/a", "n/a"], "name"),
])
def test_scan_pii__each_kind_by_header_or_value(column, values, kind):
    found = scan_pii(pd.DataFrame({column: values * 10}))
    assert kind in {h["kind"] for h in found.get(column, [])}


def test_scan_pii__categories_dates_of_events_and_plain_numbers_are_not_identifiers():
    frame = pd.DataFrame({
        "country": ["United States", "New Zealand", "United Kingdom"] * 20,  # capitalised, but few distinct
        "visit": ["2024-05-01"] * 60,  # a recent date is not a birth date
        "amount": np.arange(60) * 1000,
        "weight": np.linspace(0.1, 9.9, 60),
    })
    assert scan_pii(frame) == {}


def _by(measurements, metric):
    return {m.subject: m for m in measurements if m.metric == metric}


def test_data_quality__duplicates_leakage_balance_missing_and_constants_by_hand():
    train = pd.DataFrame({"a": [1, 1, 2, 3], "b": ["x", "x", "y", None], "c": ["k"] * 4, "y": [1, 1, 0, 0]})
    test = pd.DataFrame({"a": [1, 5], "b": ["x", "z"], "c": ["k", "k"], "y": [1, 1]})
    ms = measure(train, test)
    dup = _by(ms, "duplicate_row_fraction")[""]
    assert dup.details["duplicate_rows"] == 2 and dup.value == pytest.approx(2 / 6)  # rows 2 and 5 repeat row 1
    leak = _by(ms, "train_test_overlap_fraction")[""]
    assert leak.details["test_rows_in_train"] == 1 and leak.value == pytest.approx(0.5)
    balance = _by(ms, "minority_class_fraction")
    assert balance["train"].value == pytest.approx(0.5) and balance["test"].value == pytest.approx(0.0)
    assert {s: m.value for s, m in _by(ms, "missing_fraction").items()} == {"b": pytest.approx(1 / 6)}
    constant = _by(ms, "constant_columns")[""]
    assert constant.value == 1 and constant.details["columns"] == ["c"]


def test_data_quality__group_sizes_equal_pandas_crosstab(adult_frames):
    train, test = (f.head(3000).copy() for f in adult_frames)
    train["y"], test["y"] = (train["income"] == ">50K").astype(int), (test["income"] == ">50K").astype(int)
    ms = _by(measure(train, test, sensitive=("sex", "race")), "min_group_size")
    assert set(ms) == {"sex", "race", "sex*race"}
    assert ms["sex"].value == test["sex"].value_counts().min()
    assert ms["race"].value == test["race"].value_counts().min()
    crosstab = pd.crosstab(test["sex"], test["race"])
    assert ms["sex*race"].value == crosstab.to_numpy()[crosstab.to_numpy() > 0].min()
    assert sum(ms["sex*race"].details["test"].values()) == len(test)


def test_data_quality__declared_personal_columns_are_not_counted():
    frame = people()
    frame["y"] = [1, 0] * 30
    train, test = frame.iloc[:40], frame.iloc[40:]
    assert _by(measure(train, test), "undeclared_pii_columns")[""].value == 2
    declared = _by(measure(train, test, personal_data=["col_a", "col_b"]), "undeclared_pii_columns")[""]
    assert declared.value == 0 and set(declared.details["found"]) == {"col_a", "col_b"}


@pytest.mark.parametrize("kind", ["int", "float", "object", "category", "bool", "Int64"])
def test_value_hashes__the_hash_of_every_row_as_text(kind):
    import numpy as np
    import pandas as pd

    from govssl.checks.data_quality import _value_hashes

    rng = np.random.default_rng(2)
    n = 3_000
    text = pd.Series(rng.choice(np.array(["a", "b", None, " c", "1", ""], dtype=object), n), dtype=object)
    series = {
        "int": pd.Series(rng.integers(17, 90, n)),
        "float": pd.Series(np.where(rng.random(n) < 0.1, np.nan, np.round(rng.random(n) * 100, 2))),
        "object": text, "category": text.astype("category"), "bool": pd.Series(rng.random(n) < 0.5),
        "Int64": pd.Series(rng.integers(0, 5, n)).astype("Int64").mask(rng.random(n) < 0.1),
    }[kind]
    per_row = pd.util.hash_pandas_object(series.astype("string").fillna("\x00"), index=False).to_numpy()
    np.testing.assert_array_equal(_value_hashes(series), per_row)


@pytest.mark.parametrize("categorical", [False, True])
def test_group_counts__the_counts_of_per_row_labels(categorical):
    from govssl.checks.data_quality import _group_counts
    from govssl.data import as_category_strings

    rng = np.random.default_rng(3)
    n = 4_000
    frame = pd.DataFrame({
        "sex": rng.choice(np.array(["Male", "Female", " Male", None], dtype=object), n),
        "race": rng.choice(np.array(["White", "Black", "", "Other"], dtype=object), n),
        "age": rng.integers(17, 20, n),
    })
    if categorical:
        frame[["sex", "race"]] = frame[["sex", "race"]].astype("category")
    for columns in (["sex"], ["race"], ["sex", "race"], ["sex", "race", "age"]):
        labels = f"{columns[0]}=" + as_category_strings(frame[columns[0]])  # the per-row labels it replaced
        for col in columns[1:]:
            labels = labels + "*" + col + "=" + as_category_strings(frame[col])
        expected = {str(k): int(v) for k, v in labels.value_counts().sort_index().items()}
        got = _group_counts(frame, columns)
        assert got == expected and list(got) == list(expected)
