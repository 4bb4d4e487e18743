"""Readable text for numbers and identifiers in the documents (also the Jinja filters)."""

from __future__ import annotations

import math
import re

__all__ = ["num", "ci", "code", "cell", "Md", "md_text"]


class Md(str):
    """Text that is already Markdown (a code span, a table cell, a formatted figure): Markdown
    documents print it as it is instead of escaping it again."""


_ENTITY = re.compile(r"&(?=#[0-9]{1,7};|#[xX][0-9a-fA-F]{1,6};|[A-Za-z][A-Za-z0-9]{1,31};)")
_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")  # what opens raw HTML or an autolink; "<= 0.1" stays
_FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})", re.MULTILINE)


def md_text(value) -> Md:
    """``value`` as literal text in a Markdown document, for any CommonMark viewer, including
    those that pass raw HTML through: no HTML or autolink (a ``<`` that could open one becomes
``&lt;``; ``<= 0.1`` stays as it is), no character reference
    (``&amp;`` before one), no link, image or link definition (``](`` and ``]:`` are broken), no
    code fence that would swallow the rest of the document. Other Markdown punctuation (emphasis,
    a leading ``#``) is left as typed, since it only changes how the text looks."""
    if isinstance(value, Md):
        return value
    text = _TAG_START.sub("&lt;", _ENTITY.sub("&amp;", str(value)))
    text = text.replace("](", "]\\(").replace("]:", "]\\:")
    return Md(_FENCE.sub(lambda m: m.group(1) + "\\" + m.group(2), text))


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


def ci(low, high=None, digits: int = 4) -> Md:
    """A confidence interval as ``[low, high]``; empty when either bound is unknown.

    Also accepts one mapping with ``ci_low`` and ``ci_high`` (a measurement in a document context).
    """
    if high is None and isinstance(low, dict):
        low, high = low.get("ci_low"), low.get("ci_high")
    if low is None or high is None:
        return Md("")
    return Md(f"[{num(low, digits)}, {num(high, digits)}]")


def code(text) -> Md:
    """A Markdown code span that shows ``text`` literally whatever backticks it holds."""
    text = " ".join(str(text).splitlines())
    if not text:
        return Md("")
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return Md(f"{fence}{pad}{text}{pad}{fence}")


def cell(text) -> Md:
    """Text that stays inside one Markdown table cell: pipes escaped, line breaks flattened, and
    (unless it is Markdown already, such as a code span) made literal by :func:`md_text`."""
    flat = " ".join(str(text).splitlines())
    if not isinstance(text, Md):
        flat = md_text(flat)
    return Md(flat.replace("|", "\\|"))
