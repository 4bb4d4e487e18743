"""Built-in datasets shipped as package data (see govssl/datasets/*/README.md for attribution)."""

from __future__ import annotations

import gzip
import re
import hashlib
from dataclasses import dataclass

import pandas as pd

from govssl._resources import datasets_dir
from govssl.errors import IntegrityError

__all__ = ["BuiltinSource", "load_builtin", "ADULT"]


@dataclass(frozen=True)
class BuiltinSource:
    name: str
    source: str
    license: str
    citation: str
    target: str
    positive_label: str
    sensitive: tuple[str, ...]
    categorical: tuple[str, ...]
    files: tuple[tuple[str, str], ...]  # (file name, sha256 of the uncompressed bytes)
    # The documented values of each categorical column (the dataset's own description, a public
    # document): the model's category levels, so that none is read from the private rows.
    levels_file: str = ""


ADULT_COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education-num", "marital-status",
    "occupation", "relationship", "race", "sex", "capital-gain", "capital-loss",
    "hours-per-week", "native-country", "income",
]

ADULT = BuiltinSource(
    name="adult",
    source="UCI Machine Learning Repository, Adult (1994 U.S. Census extract)",
    license="CC-BY-4.0",
    citation="Becker, B. & Kohavi, R. (1996). Adult. UCI Machine Learning Repository. doi:10.24432/C5XW20",
    target="income",
    positive_label=">50K",
    sensitive=("sex", "race"),
    categorical=(
        "workclass", "education", "marital-status", "occupation", "relationship", "race",
        "sex", "native-country",
    ),
    files=(
        ("adult.data.gz", "5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d"),
        ("adult.test.gz", "a2a9044bc167a35b2361efbabec64e89d69ce82d9790d2980119aac5fd7e9c05"),
    ),
    levels_file="adult.names",
)


def documented_levels(source: BuiltinSource) -> dict[str, list[str]]:
    """The levels of each categorical column as the dataset's description lists them: in
    adult.names, a line ``column: value, value, ... .`` per attribute ("continuous." for numbers)."""
    if not source.levels_file:
        return {}
    text = (datasets_dir() / source.name / source.levels_file).read_text(encoding="utf-8")
    levels: dict[str, list[str]] = {}
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z][\w-]*): (.+)\.\s*$", line)
        if match and match.group(1) in source.categorical:
            levels[match.group(1)] = [v.strip() for v in match.group(2).split(",") if v.strip()]
    missing = sorted(set(source.categorical) - set(levels))
    if missing:  # the shipped file is part of the package: a bug, not an input error
        raise RuntimeError(f"{source.levels_file} lists no values for {', '.join(missing)}")
    return levels


def _read_verified(name: str, expected: str) -> tuple[bytes, dict]:
    path = datasets_dir() / "adult" / name
    raw = gzip.decompress(path.read_bytes())
    digest = hashlib.sha256(raw).hexdigest()
    if digest != expected:
        raise IntegrityError(
            f"{path}: built-in data does not match its published sha256 "
            f"(expected {expected}, found {digest}); reinstall govssl"
        )
    from govssl.records import sha256_file

    return raw, {"path": str(path), "sha256": sha256_file(path), "size": path.stat().st_size,
                 "sha256_uncompressed": digest}


def _adult_frame(raw: bytes, skip_header: bool) -> pd.DataFrame:
    import io

    frame = pd.read_csv(
        io.BytesIO(raw),
        header=None,
        names=ADULT_COLUMNS,
        skiprows=1 if skip_header else 0,
        skipinitialspace=True,
        na_values=["?"],
        keep_default_na=False,
    )
    frame = frame.dropna(how="all")  # the files end with a blank line
    frame["income"] = frame["income"].str.rstrip(".")
    return frame.reset_index(drop=True)


def load_builtin(name: str) -> tuple[BuiltinSource, pd.DataFrame, pd.DataFrame, list[dict]]:
    """The official train and test frames of a built-in dataset, their hashes verified."""
    if name != "adult":
        raise KeyError(name)
    train_raw, train_file = _read_verified(*ADULT.files[0])
    test_raw, test_file = _read_verified(*ADULT.files[1])
    return ADULT, _adult_frame(train_raw, False), _adult_frame(test_raw, True), [train_file, test_file]
