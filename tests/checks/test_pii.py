"""The personal-data scan: headers and value patterns, including the ones a criminal-justice
table has (first / last, id, case numbers), and no flag on ordinary categories."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from govssl.checks._pii import header_kinds, is_case_number, scan_pii


def test_header_kinds__first_last_id_and_case_numbers():
    assert header_kinds("first") == ["name"] and header_kinds("Last") == ["name"]
    assert header_kinds("id") == ["record_id"]
    for header in ("c_case_number", "case no", "PatientID", "person_id", "booking_number"):
        assert header_kinds(header) == ["record_id"], header
    for header in ("paid", "valid", "decile_score", "is_recid", "sex", "age"):
        assert header_kinds(header) == [], header


def test_is_case_number__codes_with_letters_and_four_digits():
    assert is_case_number("13011352CF10A") and is_case_number("2013-CF-004512")
    assert not is_case_number("Private") and not is_case_number("2013-01-01") and not is_case_number("AB12")


def test_scan_pii__values_find_case_numbers_and_lowercase_full_names():
    rng = np.random.default_rng(0)
    n = 500
    syllables = ["mi", "ro", "ka", "ton", "lee", "sa", "ber", "dan", "vi", "no"]
    first = [a + b for a in syllables for b in syllables[:5]]  # 50 first names
    last = [a + b + "son" for a in syllables for b in syllables]  # 100 last names
    frame = pd.DataFrame({
        "ref": [f"{13000000 + 7 * i}CF10A" for i in range(n)],
        "who": [f"{a} {b}" for a, b in zip(rng.choice(first, n), rng.choice(last, n))],
        "charge": rng.choice(["Battery", "Grand Theft", "Possession"], n),
        "code": rng.choice(["F3", "M1", "F2"], n),
    })

    found = scan_pii(frame)

    assert found["ref"] == [{"kind": "record_id", "by": "values"}]
    assert {"kind": "name", "by": "values"} in found["who"]
    assert "charge" not in found and "code" not in found


@pytest.mark.parametrize("kind", ["object", "category", "int"])
def test_non_blank_sample__same_rows_and_strings_as_stripping_every_value(kind):
    import numpy as np
    import pandas as pd

    from govssl.checks._pii import _non_blank_sample

    rng = np.random.default_rng(1)
    n = 7_000
    if kind == "int":
        series = pd.Series(rng.integers(0, 10**6, n))
    else:
        values = np.array([f"name{i}" for i in range(50)] + ["", "  ", None, " pad "], dtype=object)
        series = pd.Series(rng.choice(values, n), dtype=object)
        if kind == "category":
            series = series.astype("category")
    stripped = series.dropna().astype(str).str.strip()  # what scan_pii did: every value as text first
    expected = stripped[stripped != ""].sample(2000, random_state=5)
    got = _non_blank_sample(series, 2000, 5)
    assert got.index.tolist() == expected.index.tolist()
    assert got.tolist() == expected.tolist()
