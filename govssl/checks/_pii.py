"""A scan for columns that hold personal identifiers, by header and by value patterns.

Kinds: name, email, phone, date_of_birth, national_id, record_id (a person's record, case, booking
or account number). A column is flagged by its header (a known field name, or words such as
``first``/``last`` name, ``... id`` and ``case number``) or when at least ``share`` of a sample of its
values match a pattern (case-number-like values are near-unique codes mixing letters and at least
four digits, e.g. ``13011352CF10A``). The scan
finds direct identifiers only; indirect re-identification (quasi-identifiers in combination,
Sweeney 2002, "k-anonymity") is not assessed here.
"""

from __future__ import annotations

import re
from datetime import date

import numpy as np
import pandas as pd

__all__ = ["scan_pii", "PII_KINDS", "header_kinds", "header_words", "is_case_number"]

PII_KINDS = ("name", "email", "phone", "date_of_birth", "national_id", "record_id")

_HEADERS = {
    "name": {"name", "fullname", "firstname", "lastname", "surname", "givenname", "familyname", "forename",
             "middlename", "personname", "customername", "patientname", "employeename", "username",
             "first", "last", "fname", "lname", "nickname", "alias"},
    "email": {"email", "emailaddress", "mail", "emailid"},
    "phone": {"phone", "phonenumber", "telephone", "tel", "mobile", "mobilenumber", "cell", "cellphone", "fax"},
    "date_of_birth": {"dob", "dateofbirth", "birthdate", "birthday", "birthdt"},
    "national_id": {"ssn", "socialsecuritynumber", "nationalid", "nationalidnumber", "nino", "passport",
                    "passportnumber", "taxid", "tin", "nationalinsurancenumber", "idnumber", "driverslicense"},
    "record_id": {"id", "caseno", "casenumber", "casenum", "caseid", "docket", "docketnumber", "bookingnumber",
                  "recordnumber", "accountnumber", "mrn", "medicalrecordnumber", "uuid", "guid"},
}
# Header words: "person_id", "PatientID", "c_case_number", "arrest_case_no" are record ids too.
_ID_WORDS = {"id", "uuid", "guid"}
_CASE_WORDS = {"case", "docket", "booking", "arrest", "file", "record", "account", "claim", "ticket", "citation"}
_NUMBER_WORDS = {"number", "no", "num", "nr", "id"}
_EMAIL = re.compile(r"^[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")
_PHONE = re.compile(r"^\+?[\d(][\d\s().-]{5,}\d$")
_SSN = re.compile(r"^\d{3}-\d{2}-\d{4}$")
_NINO = re.compile(r"^[A-CEGHJ-PR-TW-Z]{2}\s?\d{2}\s?\d{2}\s?\d{2}\s?[A-D]$")
_LONG_DIGITS = re.compile(r"^\d{9,12}$")
_NAME = re.compile(r"^[A-Z][a-z'’-]+(?:\s[A-Z][a-z'’.-]*){1,3}$")
_LOWER_NAME = re.compile(r"^[a-z][a-z'’-]+(?:\s[a-z][a-z'’.-]*){1,3}$")  # "miguel hernandez"
_UPPER_NAME = re.compile(r"^[A-Z][A-Z'’-]+(?:,?\s[A-Z][A-Z'’.-]*){1,3}$")  # "HERNANDEZ, MIGUEL"
_CASE_NUMBER = re.compile(r"^(?=(?:[^0-9]*[0-9]){4})(?=.*[A-Za-z])[A-Za-z0-9][A-Za-z0-9/-]{6,40}$")
_DATE = re.compile(r"^(?:(\d{4})-\d{1,2}-\d{1,2}|\d{1,2}[/.]\d{1,2}[/.](\d{4}))$")


def _normalise(header: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(header).lower())


def header_words(header: str) -> list[str]:
    """A header's words: split at non-alphanumerics and at lower-to-upper case changes."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", str(header))
    return [w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w]


def header_kinds(header: str) -> list[str]:
    """The personal-data kinds a column header names (by the whole header or by its words)."""
    normal = _normalise(header)
    kinds = [kind for kind, names in _HEADERS.items() if normal in names]
    words = header_words(header)
    if "record_id" not in kinds and len(words) > 1 and (
        words[-1] in _ID_WORDS or (set(words) & _CASE_WORDS and set(words) & _NUMBER_WORDS)
    ):
        kinds.append("record_id")
    return kinds


def is_case_number(value: str) -> bool:
    """A code that mixes letters with at least four digits, like a case or booking number."""
    return bool(_CASE_NUMBER.match(value)) and not _DATE.match(value) and not _EMAIL.match(value)


def _is_phone(value: str) -> bool:
    digits = sum(ch.isdigit() for ch in value)
    return (bool(_PHONE.match(value)) and 7 <= digits <= 15 and any(ch in value for ch in "+-( .")
            and not _SSN.match(value) and not _DATE.match(value))


def _is_birth_date(value: str, today: date) -> bool:
    match = _DATE.match(value)
    if not match:
        return False
    year = int(match.group(1) or match.group(2))
    return 1900 <= year <= today.year - 16  # old enough to be a person's birth year


def _value_kinds(values: pd.Series, share: float) -> list[str]:
    if values.empty:
        return []
    today = date.today()
    tests = {
        "email": lambda v: bool(_EMAIL.match(v)),
        "national_id": lambda v: bool(_SSN.match(v) or _NINO.match(v)),
        "phone": _is_phone,
        "date_of_birth": lambda v: _is_birth_date(v, today),
        "name": lambda v: bool(_NAME.match(v) or _LOWER_NAME.match(v) or _UPPER_NAME.match(v)),
        "record_id": is_case_number,
    }
    kinds = [kind for kind, test in tests.items() if values.map(test).mean() >= share]
    # Names and long digit strings are identifiers only when they (nearly) single out a row.
    distinct = values.nunique() / len(values)
    if "name" in kinds and distinct < 0.5:
        kinds.remove("name")
    if "record_id" in kinds and distinct < 0.9:
        kinds.remove("record_id")
    if not {"national_id", "phone"} & set(kinds) and distinct > 0.9 and values.map(lambda v: bool(_LONG_DIGITS.match(v))).mean() >= share:
        kinds.append("national_id")
    return kinds


def _non_blank_sample(series: pd.Series, sample: int, seed: int) -> pd.Series:
    """The column's non-missing values that are not blank as text, stripped, as strings; at most
    ``sample`` of them (seeded). The rows are chosen before the values become text, so that a
    categorical or integer column of millions of rows is not turned into a string per row: the
    same rows, and the same strings, as stripping every value and sampling after."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        blank = series.cat.categories.astype(str).str.strip() == ""
        codes = series.cat.codes.to_numpy()
        keep = series[(codes >= 0) & ~np.asarray(blank)[codes]]
    elif pd.api.types.is_integer_dtype(series):
        keep = series.dropna()  # an integer is never blank as text
    else:
        text = series.dropna().astype(str).str.strip()
        keep = text[text != ""]
    if len(keep) > sample:
        keep = keep.sample(sample, random_state=seed)
    return keep.astype(str).str.strip()


def scan_pii(frame: pd.DataFrame, *, sample: int = 2000, share: float = 0.5, seed: int = 0) -> dict[str, list[dict]]:
    """Column -> [{kind, by: "header"|"values", share}] for every column that looks like an identifier."""
    found: dict[str, list[dict]] = {}
    for column in frame.columns:
        hits = [{"kind": kind, "by": "header"} for kind in header_kinds(column)]
        series = frame[column]
        if not (pd.api.types.is_float_dtype(series) or pd.api.types.is_bool_dtype(series)):
            values = _non_blank_sample(series, sample, seed)
            for kind in _value_kinds(values, share):
                if all(h["kind"] != kind for h in hits):
                    hits.append({"kind": kind, "by": "values"})
        if hits:
            found[str(column)] = hits
    return found
