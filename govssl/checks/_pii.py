"""A scan for columns that hold personal identifiers, by header and by value patterns.

Kinds: name, email, phone, date_of_birth, national_id. A column is flagged by its header (a
known field name) or when at least ``share`` of a sample of its values match a pattern. The scan
finds direct identifiers only; indirect re-identification (quasi-identifiers in combination,
Sweeney 2002, "k-anonymity") is not assessed here.
"""

from __future__ import annotations

import re
from datetime import date

import pandas as pd

__all__ = ["scan_pii", "PII_KINDS"]

PII_KINDS = ("name", "email", "phone", "date_of_birth", "national_id")

_HEADERS = {
    "name": {"name", "fullname", "firstname", "lastname", "surname", "givenname", "familyname", "forename",
             "middlename", "personname", "customername", "patientname", "employeename", "username"},
    "email": {"email", "emailaddress", "mail", "emailid"},
    "phone": {"phone", "phonenumber", "telephone", "tel", "mobile", "mobilenumber", "cell", "cellphone", "fax"},
    "date_of_birth": {"dob", "dateofbirth", "birthdate", "birthday", "birthdt"},
    "national_id": {"ssn", "socialsecuritynumber", "nationalid", "nationalidnumber", "nino", "passport",
                    "passportnumber", "taxid", "tin", "nationalinsurancenumber", "idnumber", "driverslicense"},
}
_EMAIL = re.compile(r"^[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")
_PHONE = re.compile(r"^\+?[\d(][\d\s().-]{5,}\d$")
_SSN = re.compile(r"^\d{3}-\d{2}-\d{4}$")
_NINO = re.compile(r"^[A-CEGHJ-PR-TW-Z]{2}\s?\d{2}\s?\d{2}\s?\d{2}\s?[A-D]$")
_LONG_DIGITS = re.compile(r"^\d{9,12}$")
_NAME = re.compile(r"^[A-Z][a-z'’-]+(?:\s[A-Z][a-z'’.-]*){1,3}$")
_DATE = re.compile(r"^(?:(\d{4})-\d{1,2}-\d{1,2}|\d{1,2}[/.]\d{1,2}[/.](\d{4}))$")


def _normalise(header: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(header).lower())


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
        "name": lambda v: bool(_NAME.match(v)),
    }
    kinds = [kind for kind, test in tests.items() if values.map(test).mean() >= share]
    # Names and long digit strings are identifiers only when they (nearly) single out a row.
    distinct = values.nunique() / len(values)
    if "name" in kinds and distinct < 0.5:
        kinds.remove("name")
    if not {"national_id", "phone"} & set(kinds) and distinct > 0.9 and values.map(lambda v: bool(_LONG_DIGITS.match(v))).mean() >= share:
        kinds.append("national_id")
    return kinds


def scan_pii(frame: pd.DataFrame, *, sample: int = 2000, share: float = 0.5, seed: int = 0) -> dict[str, list[dict]]:
    """Column -> [{kind, by: "header"|"values", share}] for every column that looks like an identifier."""
    found: dict[str, list[dict]] = {}
    for column in frame.columns:
        hits = []
        header = _normalise(column)
        for kind, names in _HEADERS.items():
            if header in names:
                hits.append({"kind": kind, "by": "header"})
        series = frame[column]
        if not (pd.api.types.is_float_dtype(series) or pd.api.types.is_bool_dtype(series)):
            values = series.dropna().astype(str).str.strip()
            values = values[values != ""]
            if len(values) > sample:
                values = values.sample(sample, random_state=seed)
            for kind in _value_kinds(values, share):
                if all(h["kind"] != kind for h in hits):
                    hits.append({"kind": kind, "by": "values"})
        if hits:
            found[str(column)] = hits
    return found
