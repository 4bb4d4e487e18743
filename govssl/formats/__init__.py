"""Exports of a stored audit run to the formats other tools read, and documents that follow a
regulation's structure (the EU AI Act Annex IV report, :mod:`govssl.formats.annex_iv`).

``govssl export RUN --format NAME --out FILE`` looks NAME up in :data:`FORMATS`. Each format is
one :func:`register_format` line below: a name, a one-line summary for ``--help`` and the
function that writes it, named as ``"module:function"`` so that the module (and what it imports)
is loaded only when that format is asked for. The function is called as
``function(run, out, overwrite) -> str``: ``run`` is an :class:`~govssl.records.AuditRun` read
from the store and verified against its hash chain, ``out`` the file to write (replaced only
when ``overwrite``), and the return value one line saying what was written.

The audit itself also speaks two standard formats: the in-toto test-result attestation
(``govssl.provenance``) and MLflow tracking (:mod:`govssl.formats.mlflow`, ``govssl audit --mlflow``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the registry is imported by every command: it loads nothing but the standard library
    from govssl.records import AuditRun

__all__ = ["DEFAULT_FORMAT", "FORMATS", "ExportFormat", "export", "register_format"]


@dataclass(frozen=True)
class ExportFormat:
    """One export format: ``target`` is ``"module:function"`` (see the module docstring).
    ``waivers``: whether the run is exported with the waivers in force now applied to its
    decision, as ``govssl report`` renders it (False: the decision exactly as stored)."""

    name: str
    summary: str
    target: str
    waivers: bool = True

    def writer(self) -> Callable[[AuditRun, Path, bool], str]:
        module, _, function = self.target.partition(":")
        return getattr(importlib.import_module(module), function)


FORMATS: dict[str, ExportFormat] = {}
DEFAULT_FORMAT = "zip"


def register_format(name: str, summary: str, target: str, *, waivers: bool = True) -> ExportFormat:
    """Add an export format (a name already registered is a programming error)."""
    if name in FORMATS:
        raise ValueError(f"export format {name!r} is registered twice")
    FORMATS[name] = fmt = ExportFormat(name, summary, target, waivers)
    return fmt


register_format("zip", "the run as stored: record, documents, evidence, attestations and SHA256SUMS",
                "govssl.formats._zip:export", waivers=False)
register_format("cyclonedx", "CycloneDX 1.6 JSON BOM: the model with its modelCard, the data and the policy",
                "govssl.formats.cyclonedx:export")
register_format("croissant", "Croissant 1.1 JSON-LD of the audited dataset, with the RAI vocabulary",
                "govssl.formats.croissant:export")


def export(run: AuditRun, name: str, out: str | Path, overwrite: bool = False) -> str:
    """Write ``run`` as format ``name`` to ``out``; returns the writer's one-line summary."""
    return FORMATS[name].writer()(run, Path(out), overwrite)
