"""Where the shipped policy packs, templates and datasets are, in a checkout and in a wheel."""

from __future__ import annotations

from pathlib import Path

__all__ = ["policies_dir", "templates_dir", "datasets_dir"]

_ROOT = Path(__file__).resolve().parent


def _shipped(name: str) -> Path:
    # An installed wheel carries the files as the package folder ``govssl/_<name>``; in a
    # checkout (or an editable install) the top-level folder is the source of truth. (The folder
    # has no __init__.py, so importlib.resources.files() gives a MultiplexedPath whose str() is
    # not a path: the folder is located directly.)
    wheel = _ROOT / f"_{name}"
    if wheel.is_dir():
        return wheel
    return _ROOT.parent / name


def policies_dir() -> Path:
    return _shipped("policies")


def templates_dir() -> Path:
    return _shipped("templates")


def datasets_dir() -> Path:
    return _ROOT / "datasets"
