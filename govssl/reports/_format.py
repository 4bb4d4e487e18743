"""Readable text for numbers and identifiers in the documents (also the Jinja filters)."""

from __future__ import annotations

import math
import re

__all__ = ["num", "ci", "code", "cell"]


def num(value, digits: int = 4) -> str:
    """A value as a person reads it: floats to ``digits`` significant digits, whole counts whole."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.{digits}g}"
    return str(value)


def ci(low, high=None, digits: int = 4) -> str:
    """A confidence interval as ``[low, high]``; empty when either bound is unknown.

    Also accepts one mapping with ``ci_low`` and ``ci_high`` (a measurement in a document context).
    """
    if high is None and isinstance(low, dict):
        low, high = low.get("ci_low"), low.get("ci_high")
    if low is None or high is None:
        return ""
    return f"[{num(low, digits)}, {num(high, digits)}]"


def code(text) -> str:
    """A Markdown code span that shows ``text`` literally whatever backticks it holds."""
    text = str(text)
    if not text:
        return ""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def cell(text) -> str:
    """Text that stays inside one Markdown table cell: pipes escaped, line breaks flattened."""
    return " ".join(str(text).splitlines()).replace("|", "\\|")
