"""Where the shipped policy packs, templates and datasets are, in a checkout and in a wheel."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

__all__ = ["policies_dir", "templates_dir", "datasets_dir"]

_ROOT = Path(__file__).resolve().parent


def _shipped(name: str) -> Path:
    # In a checkout (or an editable install) the top-level folder is the source of truth; an
    # installed wheel carries the same files as the package ``govssl._<name>``.
    checkout = _ROOT.parent / name
    if checkout.is_dir():
        return checkout
    return Path(str(importlib.resources.files(f"govssl._{name}")))


def policies_dir() -> Path:
    return _shipped("policies")


def templates_dir() -> Path:
    return _shipped("templates")


def datasets_dir() -> Path:
    return _ROOT / "datasets"
