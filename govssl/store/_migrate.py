"""Schema migrations with Alembic: a store written by an older govssl opens with a newer one.

The revisions live in ``govssl/store/migrations/versions``. :func:`upgrade` runs inside the
transaction that opens the store, holding the writers' lock, so concurrent first opens of one
database migrate it once.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text

__all__ = [
    "MIGRATIONS", "FIRST_REVISION", "head_revision", "known_revisions", "current_revision", "upgrade",
]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
FIRST_REVISION = "0001"
# any fixed 64-bit key: PostgreSQL writers that open a store at once queue on it
_PG_MIGRATION_LOCK = 0x676F7673736C


def _config(conn: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    return config


@cache
def head_revision() -> str:
    return ScriptDirectory.from_config(_config()).get_current_head()


def current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def upgrade(conn: Connection, revision: str = "head") -> None:
    """Bring the schema on ``conn`` (in a write transaction) to ``revision``.

    A store made before migrations existed (tables, no ``alembic_version``) is the first
    revision's schema: it is stamped as such, then upgraded.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
    current = current_revision(conn)
    target = head_revision() if revision == "head" else revision
    if current == target:
        return
    config = _config(conn)
    if current is None and inspect(conn).has_table("runs"):
        command.stamp(config, FIRST_REVISION)
    command.upgrade(config, revision)


@cache
def known_revisions() -> tuple[str, ...]:
    """Every revision this govssl knows, oldest first (the head last)."""
    script = ScriptDirectory.from_config(_config())
    return tuple(reversed([rev.revision for rev in script.walk_revisions()]))
