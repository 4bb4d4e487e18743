"""The audit store: every audit run in one tamper-evident database (DESIGN.md, "The audit store").

The only package that imports sqlmodel / SQLAlchemy.
"""

from govssl.store._ledger import LedgerHead, VerifyReport
from govssl.store._reports import diff_runs, export_run
from govssl.store._store import AuditStore, StoreSnapshot, default_url

__all__ = ["AuditStore", "LedgerHead", "StoreSnapshot", "VerifyReport", "default_url", "diff_runs", "export_run"]
