"""govssl installs what it imports: every distribution whose modules an audit imports (govssl's own
imports and those ART, Opacus and fairlearn make) is a declared dependency of govssl, or one of
theirs that their metadata declares. `packaging` was not: ART imports it without declaring it, so
a plain `pip install govssl` left robustness, poisoning and privacy erroring."""

from __future__ import annotations

import importlib.metadata as md
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

# every module tree an audit imports, the checks' lazy imports of ART included
AUDIT_MODULES = [
    "govssl.cli", "govssl.audit", "govssl.checks", "govssl.train", "govssl.store", "govssl.reports",
    "govssl.data", "govssl.provenance", "govssl.policy", "govssl.rmf", "govssl.web", "govssl.charts",
    "govssl.monitor._run", "govssl.monitor._measure", "govssl.monitor._report", "matplotlib.backends.backend_agg",
    "art.attacks.evasion", "art.attacks.poisoning", "art.attacks.poisoning.perturbations",
    "art.defences.detector.poison", "art.attacks.inference.membership_inference",
    "art.estimators.classification", "opacus", "opacus.accountants", "opacus.grad_sample", "fairlearn.metrics",
    "sklearn.ensemble", "sklearn.linear_model", "sklearn.neighbors", "sklearn.svm", "sklearn.tree",
    "pyarrow.parquet", "psycopg", "alembic.command", "sqlmodel", "safetensors.torch", "PIL.Image",
]

# Imported only when present, each inside a try/except ImportError of the importer's (read there):
# installed here by the test or mlflow extras, absent from a user's install, and nothing breaks.
OPTIONAL_IMPORTS = {
    "charset_normalizer": "numpy.f2py.crackfortran",
    "sniffio": "anyio._core._eventloop",
}

_IMPORTED = """
import json, sys
for name in sys.argv[1:]:
    __import__(name)
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def _name(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def _closure(roots: list[Requirement]) -> set[str]:
    """The distributions the roots declare, and theirs, with the extras each requirement names."""
    seen: set[tuple[str, str]] = set()
    names: set[str] = set()
    todo = [(r.name, extra) for r in roots for extra in ("", *r.extras)]
    while todo:
        dist, extra = todo.pop()
        if (_name(dist), extra) in seen:
            continue
        seen.add((_name(dist), extra))
        names.add(_name(dist))
        for line in md.requires(dist) or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": extra}):
                todo += [(req.name, e) for e in ("", *req.extras)]
    return names


def _declared() -> list[Requirement]:
    return [Requirement(r) for r in md.requires("govssl") or [] if "extra ==" not in r]


@pytest.mark.slow  # imports torch, ART, Opacus, sklearn in a fresh interpreter (10-20 s)
def test_every_imported_distribution_is_declared_by_govssl_or_by_its_dependencies():
    out = subprocess.run([sys.executable, "-c", _IMPORTED, *AUDIT_MODULES], capture_output=True, text=True,
                         timeout=600, check=True).stdout
    top_level = set(json.loads(out)) - set(sys.stdlib_module_names) - set(sys.builtin_module_names) - {"govssl"}
    owners = md.packages_distributions()
    installed_by = _closure(_declared())

    undeclared = {}
    for module in sorted(top_level):
        dists = owners.get(module)
        if not dists or module in OPTIONAL_IMPORTS:
            continue  # a module no distribution lists (a stub, a private extension), or an optional import
        if not any(_name(d) in installed_by for d in dists):
            undeclared[module] = dists
    assert not undeclared, f"imported but installed by no declared dependency: {undeclared}"


def test_packaging_is_declared():
    assert "packaging" in {_name(r.name) for r in _declared()}


@pytest.mark.parametrize("module, importer", sorted(OPTIONAL_IMPORTS.items()))
def test_optional_imports_are_guarded_by_their_importer(module, importer):
    """The exemption above holds only while the importer really tolerates the module's absence."""
    import importlib.util

    source = Path(importlib.util.find_spec(importer).origin).read_text(encoding="utf-8")
    assert re.search(rf"try:\s*\n\s*import {module}\s*\n\s*except (ImportError|ModuleNotFoundError)", source), importer
