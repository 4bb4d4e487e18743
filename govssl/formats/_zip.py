"""The default export format: the run as stored, in a self-checking zip (see ``govssl.store.export_run``)."""

from __future__ import annotations

from pathlib import Path

from govssl.records import AuditRun

__all__ = ["export"]


def export(run: AuditRun, out: Path, overwrite: bool) -> str:
    from govssl.store import export_run

    names = export_run(run, out, overwrite=overwrite)
    return f"exported run {run.run_id} to {out}: {len(names)} file(s) including SHA256SUMS"
