"""Reading YAML files safely and turning pydantic errors into messages that name file and key.

Every YAML file govssl reads (plans, policies, datasheet answers, attestations) goes through
:func:`read_yaml`: PyYAML's safe loader, plus bounds that a hand-written file never reaches and a
hostile one does. Aliases let a few hundred bytes stand for billions of values ("billion laughs"):
PyYAML shares the aliased objects, so loading is cheap, but anything that walks the result
(validation, error messages, JSON) pays for every expanded value. The document's node graph is
therefore measured, aliases expanded, before anything is built from it. A key given twice in one
mapping is refused instead of the last one silently winning.
"""

from __future__ import annotations

import reprlib
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, SequenceNode

from govssl.errors import GovsslError

__all__ = ["read_yaml", "read_yaml_mapping", "format_loc", "pydantic_problems", "short_repr",
           "MAX_YAML_BYTES", "MAX_YAML_NODES", "MAX_YAML_ALIASES", "MAX_YAML_DEPTH"]

MAX_YAML_BYTES = 1_000_000  # these files are written by hand; the largest shipped one is a few KB
MAX_YAML_NODES = 100_000  # values once aliases are expanded
MAX_YAML_ALIASES = 1_000  # alias uses (*name) in one document
MAX_YAML_DEPTH = 64  # levels of nesting once aliases are expanded
MAX_QUOTE = 200  # characters of a bad value quoted back in a message


class _Refused(Exception):
    """A document outside the bounds, or with a duplicate key; ``line`` is 1-based or None."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.line = line


def _line(node) -> int | None:
    mark = getattr(node, "start_mark", None)
    return mark.line + 1 if mark is not None else None


def _measure(root) -> None:
    """Refuse a node graph whose expansion exceeds the bounds, or which contains itself.

    Iterative and memoised per node, so it costs one visit per distinct node however often an
    anchor is aliased: the expanded size of a shared node is computed once and added per use.
    """
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    uses: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            kids = _children(node)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            height[key] = 1 + max((height[id(k)] for k in kids), default=0)
            continue
        if key in size:
            continue
        on_path.add(key)
        stack.append((node, True))
        for kid in _children(node):
            uses[id(kid)] = uses.get(id(kid), 0) + 1
            if id(kid) in on_path:
                raise _Refused("an alias refers to a value that contains it (a self-referencing anchor)",
                               _line(kid))
            if id(kid) not in size:
                stack.append((kid, False))
    if size[id(root)] > MAX_YAML_NODES:
        where, node = _largest(root, size)
        raise _Refused(f"{where}: expands to {size[id(node)]:,} values through aliases ('*name'); at most "
                       f"{MAX_YAML_NODES:,} are allowed in a document", _line(node))
    if height[id(root)] > MAX_YAML_DEPTH:
        where, node = _largest(root, height)
        raise _Refused(f"{where}: nests {height[id(node)] - 1} levels deep; at most {MAX_YAML_DEPTH} are "
                       "allowed", _line(node))
    # a node used from more than one place is an anchor's node; every further use is an alias
    aliases = sum(n - 1 for n in uses.values() if n > 1)
    if aliases > MAX_YAML_ALIASES:
        raise _Refused(f"the document uses aliases ('*name') {aliases:,} times; at most {MAX_YAML_ALIASES:,} "
                       "are allowed", None)


def _largest(root, measure: dict[int, int]) -> tuple[str, Any]:
    """The key path (``a.b``) to the biggest value by ``measure``, descending through mappings."""
    path, node = [], root
    while isinstance(node, MappingNode) and node.value:
        key_node, value = max(node.value, key=lambda pair: measure[id(pair[1])])
        path.append(str(key_node.value) if isinstance(key_node.value, str) else "(key)")
        node = value
    return short_repr(".".join(path) or "(top level)")[1:-1], node


def _children(node) -> list:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


class BoundedSafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that measures the document before constructing it (see the module
    docstring) and refuses a key given twice in one mapping."""

    def construct_document(self, node):
        _measure(node)
        return super().construct_document(node)

    def construct_mapping(self, node, deep=False):
        if isinstance(node, MappingNode):
            seen: dict[Any, int | None] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # '<<: *base' merges; keys given next to it override on purpose
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key, False)
                except TypeError:
                    continue  # an unhashable key; the base constructor reports it
                if first is not False:
                    where = f" (first at line {first})" if first else ""
                    raise _Refused(f"duplicate key {short_repr(key)}{where}; a key may appear only once "
                                   "in a mapping (YAML would silently keep the last)", _line(key_node))
                seen[key] = _line(key_node)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path, error: type[GovsslError], what: str) -> Any:
    """Load one YAML document with :class:`BoundedSafeLoader`; every failure is ``error`` naming the file."""
    if not path.exists():
        raise error(f"{path}: {what} file not found")
    if path.is_dir():
        raise error(f"{path}: is a folder, expected a {what} file")
    try:
        size = path.stat().st_size
        if size > MAX_YAML_BYTES:
            raise error(f"{path}: the {what} file is {size:,} bytes; at most {MAX_YAML_BYTES:,} are read")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read {what} file: {exc}") from None
    try:
        return yaml.load(text, Loader=BoundedSafeLoader)  # noqa: S506 (a SafeLoader subclass)
    except _Refused as exc:
        where = f" (line {exc.line})" if exc.line else ""
        raise error(f"{path}: not accepted as a {what} file{where}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise error(f"{path}: not valid YAML{where}: {problem[:MAX_QUOTE]}") from None
    except RecursionError:
        raise error(f"{path}: not accepted as a {what} file: it nests too deeply") from None


def read_yaml_mapping(path: Path, error: type[GovsslError], what: str) -> dict[str, Any]:
    """Like :func:`read_yaml`, for a file that must be a mapping of keys to values."""
    data = read_yaml(path, error, what)
    if not isinstance(data, dict):
        raise error(f"{path}: a {what} must be a YAML mapping of keys to values")
    return data


class _ShortRepr(reprlib.Repr):
    """reprlib's bounded repr, keeping a mapping's keys in their order (reprlib sorts them)."""

    def repr_dict(self, x, level):
        if not x:
            return "{}"
        if level <= 0:
            return "{...}"
        items = [f"{self.repr1(k, level - 1)}: {self.repr1(v, level - 1)}" for k, v in list(x.items())[: self.maxdict]]
        return "{" + ", ".join(items) + (", ..." if len(x) > self.maxdict else "") + "}"


_repr = _ShortRepr()
_repr.maxstring = _repr.maxother = MAX_QUOTE
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 12
_repr.maxlevel = 4


def short_repr(value: Any, limit: int = MAX_QUOTE) -> str:
    """``repr(value)`` cut to about ``limit`` characters, without building the whole repr first."""
    text = _repr.repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def format_loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def pydantic_problems(path: Path, exc: Any, names: dict | None = None) -> list[str]:
    """One line per pydantic error: ``file: key.path: what is wrong; got X`` (X cut short)."""
    problems = []
    for err in exc.errors(include_url=False):
        loc = format_loc(tuple(p for p in err["loc"] if not str(p).startswith("function-")))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling and level)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        got = ""
        if err["type"] not in ("missing", "extra_forbidden") and "input" in err:
            got = f"; got {short_repr(err['input'])}"
        problems.append(f"{path}: {loc}: {msg}{got}")
    return problems
