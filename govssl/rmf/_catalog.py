"""The NIST AI RMF 1.0 Core as data: 72 subcategories in 19 categories under 4 functions.

Source: NIST AI 100-1, Artificial Intelligence Risk Management Framework (AI RMF 1.0), January
2023, doi:10.6028/NIST.AI.100-1 (a work of the U.S. Government). ``catalog.json`` carries the
ids and statements; this module reads it once and keeps it in NIST order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

__all__ = [
    "FUNCTIONS",
    "SOURCE",
    "Subcategory",
    "load_catalog",
    "subcategory",
    "is_subcategory",
    "sort_key",
    "catalog_source",
    "UNKNOWN_SUBCATEGORY",
]

FUNCTIONS = ("GOVERN", "MAP", "MEASURE", "MANAGE")
SOURCE = "NIST AI 100-1 (AI RMF 1.0), doi:10.6028/NIST.AI.100-1"
UNKNOWN_SUBCATEGORY = "'{id}' is not a NIST AI RMF 1.0 subcategory; ids look like 'MEASURE 2.11'"


@dataclass(frozen=True)
class Subcategory:
    """One outcome of the AI RMF Core, e.g. ``MEASURE 2.11`` (fairness and bias are evaluated)."""

    id: str
    function: str
    category: str
    category_text: str
    text: str


def sort_key(subcategory_id: str) -> tuple[int, int, int]:
    """NIST order: function (GOVERN, MAP, MEASURE, MANAGE), then category and number as integers."""
    function, _, number = subcategory_id.partition(" ")
    category, _, item = number.partition(".")
    return FUNCTIONS.index(function), int(category), int(item)


@cache
def _load() -> tuple[str, tuple[Subcategory, ...]]:
    raw = json.loads(resources.files("govssl.rmf").joinpath("catalog.json").read_text("utf-8"))
    entries = tuple(Subcategory(**entry) for entry in raw["subcategories"])
    return raw["source"], tuple(sorted(entries, key=lambda s: sort_key(s.id)))


@cache
def _by_id() -> dict[str, Subcategory]:
    return {s.id: s for s in _load()[1]}


def load_catalog() -> tuple[Subcategory, ...]:
    """All 72 subcategories in NIST order."""
    return _load()[1]


def catalog_source() -> str:
    """The citation stored with the catalog."""
    return _load()[0]


def is_subcategory(subcategory_id: str) -> bool:
    """True for an exact id such as ``"MEASURE 2.11"`` (policies validate their ``rmf:`` lists)."""
    return isinstance(subcategory_id, str) and subcategory_id in _by_id()


def subcategory(subcategory_id: str) -> Subcategory:
    """The subcategory with this id; KeyError with a hint when there is none."""
    try:
        return _by_id()[subcategory_id]
    except (KeyError, TypeError):
        raise KeyError(UNKNOWN_SUBCATEGORY.format(id=subcategory_id)) from None
