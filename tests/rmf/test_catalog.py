"""The NIST AI RMF 1.0 catalog and the default mapping of checks to it."""

from __future__ import annotations

import json
import re
from collections import Counter
from importlib import resources
from pathlib import Path

import pytest

from govssl.rmf import (
    CHECK_RMF,
    FUNCTIONS,
    UNKNOWN_SUBCATEGORY,
    Subcategory,
    catalog_source,
    is_subcategory,
    load_catalog,
    sort_key,
    subcategory,
)

REFERENCE_DIR = Path(__file__).parents[2].parent / "shared" / "reference"
REFERENCE = REFERENCE_DIR / "nist_ai_rmf_subcategories.json"


def test_catalog__has_72_subcategories_in_19_categories():
    catalog = load_catalog()
    assert len(catalog) == 72
    assert len({s.id for s in catalog}) == 72
    per_function = Counter(s.function for s in catalog)
    assert per_function == {"GOVERN": 19, "MAP": 18, "MEASURE": 22, "MANAGE": 13}
    assert len({s.category for s in catalog}) == 19
    assert all(isinstance(s, Subcategory) and s.text and s.category_text for s in catalog)


def test_catalog__ids_name_their_function_and_category():
    for s in load_catalog():
        assert re.fullmatch(r"(GOVERN|MAP|MEASURE|MANAGE) \d+\.\d+", s.id)
        assert s.id.startswith(s.category + ".")
        assert s.category.split()[0] == s.function


def test_catalog__is_in_nist_order():
    ids = [s.id for s in load_catalog()]
    assert ids[0] == "GOVERN 1.1" and ids[-1] == "MANAGE 4.3"
    functions = [s.function for s in load_catalog()]
    assert list(dict.fromkeys(functions)) == list(FUNCTIONS)
    later = ("MEASURE 2.9", "MEASURE 2.10", "MEASURE 2.13", "MEASURE 3.1")
    positions = [ids.index(i) for i in later]
    assert positions == sorted(positions)
    assert ids == sorted(ids, key=sort_key)


def test_sort_key__compares_numbers_not_text():
    assert sort_key("GOVERN 1.10") > sort_key("GOVERN 1.9")
    assert sort_key("MAP 1.1") > sort_key("GOVERN 6.2")
    assert sort_key("MANAGE 1.1") > sort_key("MEASURE 4.3")


def test_subcategory__by_id():
    s = subcategory("MEASURE 2.11")
    assert s.function == "MEASURE" and s.category == "MEASURE 2"
    assert s.text.startswith("Fairness and bias")


@pytest.mark.parametrize(
    "bad", ["MEASURE 2.14", "measure 2.11", "MEASURE 2.11 ", "MEASURE", "", None, 2.11]
)
def test_is_subcategory__rejects_anything_but_an_exact_id(bad):
    assert is_subcategory(bad) is False


def test_subcategory__unknown_id_raises_with_a_hint():
    with pytest.raises(KeyError) as info:
        subcategory("MAP 9.9")
    assert info.value.args[0] == UNKNOWN_SUBCATEGORY.format(id="MAP 9.9")
    assert "ids look like 'MEASURE 2.11'" in info.value.args[0]


def test_catalog__cites_nist_ai_100_1():
    raw = json.loads(resources.files("govssl.rmf").joinpath("catalog.json").read_text("utf-8"))
    assert "NIST AI 100-1" in raw["source"] and "doi:10.6028/NIST.AI.100-1" in raw["source"]
    assert catalog_source() == raw["source"]
    assert set(raw) == {"source", "subcategories"}
    fields = {"id", "function", "category", "category_text", "text"}
    assert all(set(e) == fields for e in raw["subcategories"])


def test_check_rmf__every_id_exists():
    assert set(CHECK_RMF) >= {
        "performance", "fairness", "robustness", "poisoning", "privacy", "provenance",
        "data_quality", "label_efficiency",
    }
    for check, ids in CHECK_RMF.items():
        assert ids, check
        assert len(set(ids)) == len(ids), check
        for sid in ids:
            assert is_subcategory(sid), f"{check}: {sid}"


def test_check_rmf__core_topics():
    assert "MEASURE 2.11" in CHECK_RMF["fairness"]
    assert "MEASURE 2.10" in CHECK_RMF["privacy"]
    assert "MEASURE 2.7" in CHECK_RMF["robustness"] and "MEASURE 2.7" in CHECK_RMF["poisoning"]
    assert CHECK_RMF["performance"][0] == "MEASURE 2.5"
    assert {"GOVERN 6.1", "MAP 4.1"} <= set(CHECK_RMF["provenance"])


def _normalise(text: str) -> str:
    return " ".join(text.replace("\u2019", "'").replace("\u2018", "'").casefold().split())


@pytest.mark.skipif(not REFERENCE.is_file(), reason="the shared reference files are not present")
def test_catalog__matches_the_reference_text():
    reference = json.loads(REFERENCE.read_text(encoding="utf-8"))
    catalog = load_catalog()
    assert [s.id for s in catalog] == [e["id"] for e in reference]
    for s, e in zip(catalog, reference):
        assert s.function == e["function"] and s.category == e["category"]
        assert _normalise(s.text) == _normalise(e["text"]), s.id
        assert _normalise(s.category_text) == _normalise(e["category_text"]), s.id
