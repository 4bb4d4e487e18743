"""Reading YAML files safely and turning pydantic errors into messages that name file and key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from govssl.errors import GovsslError

__all__ = ["read_yaml_mapping", "format_loc", "pydantic_problems"]


def read_yaml_mapping(path: Path, error: type[GovsslError], what: str) -> dict[str, Any]:
    """Load a YAML mapping with ``safe_load``; every failure becomes ``error`` naming the file."""
    if not path.exists():
        raise error(f"{path}: {what} file not found")
    if path.is_dir():
        raise error(f"{path}: is a folder, expected a {what} file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read {what} file: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise error(f"{path}: not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise error(f"{path}: a {what} must be a YAML mapping of keys to values")
    return data


def format_loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def pydantic_problems(path: Path, exc: Any, names: dict | None = None) -> list[str]:
    """One line per pydantic error: ``file: key.path: what is wrong; got X``."""
    problems = []
    for err in exc.errors():
        loc = format_loc(tuple(p for p in err["loc"] if not str(p).startswith("function-")))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling and level)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        got = ""
        if err["type"] not in ("missing", "extra_forbidden") and "input" in err:
            got = f"; got {err['input']!r}"
        problems.append(f"{path}: {loc}: {msg}{got}")
    return problems
