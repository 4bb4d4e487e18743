"""Number and identifier formatting shared by the document templates."""

from __future__ import annotations

import math

import pytest

from govssl.reports._format import cell, ci, code, num


@pytest.mark.parametrize(
    "value, text",
    [
        (0.847312, "0.8473"),
        (0.90118, "0.9012"),
        (1e-5, "1e-05"),
        (2.9871, "2.987"),
        (32561, "32561"),
        (32561.0, "32561"),
        (1.0, "1"),
        (-0.0412345, "-0.04123"),
        (None, "n/a"),
        (True, "true"),
        (False, "false"),
        (math.nan, "nan"),
        (-math.inf, "-inf"),
        ("rdp", "rdp"),
    ],
)
def test_num__four_significant_digits(value, text):
    assert num(value) == text


def test_ci__as_low_high():
    assert ci(0.84171, 0.85283) == "[0.8417, 0.8528]"
    assert ci({"ci_low": 0.1, "ci_high": 0.2}) == "[0.1, 0.2]"
    assert ci(None, 0.2) == "" and ci({"ci_low": None, "ci_high": None}) == ""


@pytest.mark.parametrize(
    "text, span",
    [("sex", "`sex`"), ("a`b", "``a`b``"), ("`x`", "`` `x` ``"), ("", "")],
)
def test_code__shows_text_literally(text, span):
    assert code(text) == span


def test_cell__keeps_one_table_cell():
    assert cell("a|b\nc") == "a\\|b c"
    assert cell(3) == "3"
