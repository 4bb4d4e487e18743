"""AuditStore: save, list, load and verify audit runs in any SQLAlchemy database.

SQLite is the default (one file in the working folder); PostgreSQL serves teams whose CI
runners write to one database. Dialect-specific code lives in :func:`_create_engines` alone.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import Connection, Engine, create_engine, event, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlmodel import SQLModel

from govssl.errors import StoreError
from govssl.records import AuditRun
from govssl.store import _codec, _ledger
from govssl.store._ledger import VerifyReport
from govssl.store._tables import ALL_TABLES, LEDGER, RECORD_TABLES

__all__ = ["AuditStore", "default_url", "DEFAULT_URL", "ENV_VAR"]

ENV_VAR = "GOVSSL_DB_URL"
DEFAULT_URL = "sqlite:///.govssl/audit.db"
SQLITE_BUSY_TIMEOUT_MS = 30_000
_AMBIGUOUS_SHOWN = 10

BAD_URL = "'{url}' is not a database URL ({reason}); expected e.g. {example}"
CANNOT_OPEN = "cannot open the audit store {url}: {reason}"
CANNOT_READ = "cannot read the audit store {url}: {reason}"
CANNOT_SAVE = "cannot save run '{run_id}' to {url}: {reason}"
DUPLICATE_RUN = "run '{run_id}' is already in {url}; run ids are unique"
NO_RUN = "no run '{run_id}' in {url}"
AMBIGUOUS_RUN = (
    "run id '{prefix}' matches {count} runs in {url}: {candidates}; give more characters"
)
BAD_LIMIT = "limit must be a positive integer or None; got {limit!r}"

# Connection option that makes the SQLite begin hook take the write lock up front.
_WRITE = "govssl_write"


def default_url() -> str:
    """``$GOVSSL_DB_URL`` if set, else ``.govssl/audit.db`` under the current working folder."""
    return os.environ.get(ENV_VAR) or DEFAULT_URL


def _reason(exc: BaseException) -> str:
    """The driver's own message (without SQLAlchemy's SQL echo and background links)."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _sqlite_file(url: URL) -> Path | None:
    """The database file of a plain SQLite URL; None for other databases, memory and URIs."""
    if url.get_backend_name() != "sqlite" or url.query.get("uri"):
        return None
    if url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def _parse(url: str) -> URL:
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise StoreError(
            BAD_URL.format(url=url, reason=_reason(exc), example=DEFAULT_URL)
        ) from None
    sqlite_file = _sqlite_file(parsed)
    if sqlite_file is not None:
        # Resolve now: the store stays the same file if the process changes folder later.
        parsed = parsed.set(database=str(sqlite_file.resolve()))
    return parsed


def _create_engines(url: URL) -> tuple[Engine, Engine, Engine]:
    """The engine and its views for reading and for writing; all dialect-specific code is here.

    Writers must append to the chain one at a time. pysqlite emits no BEGIN before a SELECT,
    so a writer could read the chain head, be overtaken and fork the chain: on SQLite we take
    over BEGIN (SQLAlchemy's documented pysqlite recipe) and begin a write transaction with
    BEGIN IMMEDIATE, which waits for the write lock before reading anything; WAL lets readers
    go on meanwhile. On PostgreSQL, ``SELECT ... FOR UPDATE`` on the chain head (in _ledger)
    serialises writers, and readers use REPEATABLE READ so that verify's several queries see
    one snapshot (SQLite transactions already do).
    """
    engine = create_engine(url)
    if engine.dialect.name == "postgresql":
        return engine, engine.execution_options(isolation_level="REPEATABLE READ"), engine
    if engine.dialect.name != "sqlite":
        return engine, engine, engine

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        write = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine, engine, engine.execution_options(**{_WRITE: True})


class AuditStore:
    """The tamper-evident audit database: runs written whole or not at all, each record chained.

    ``url`` is any SQLAlchemy URL (None: :func:`default_url`). Opening creates the tables (and
    the SQLite file's folder); every failure is a :class:`StoreError` naming the URL.
    """

    def __init__(self, url: str | None = None):
        self.url = url if url is not None else default_url()
        parsed = _parse(self.url)
        self._shown_url = parsed.render_as_string(hide_password=True)
        try:
            sqlite_file = _sqlite_file(parsed)
            if sqlite_file is not None:
                sqlite_file.parent.mkdir(parents=True, exist_ok=True)
            self._engine, self._reader, self._writer = _create_engines(parsed)
            with self._writer.begin() as conn:
                SQLModel.metadata.create_all(conn, tables=ALL_TABLES)
                _ledger.ensure_head(conn)
        except (NoSuchModuleError, ImportError) as exc:
            raise StoreError(
                CANNOT_OPEN.format(url=self._shown_url, reason=f"no driver for it ({_reason(exc)})")
            ) from None
        except (SQLAlchemyError, OSError) as exc:
            raise StoreError(CANNOT_OPEN.format(url=self._shown_url, reason=_reason(exc))) from None

    def __repr__(self) -> str:
        return f"AuditStore({self._shown_url!r})"

    def close(self) -> None:
        """Release pooled connections (the store can still be used; it reconnects)."""
        self._engine.dispose()

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        try:
            with self._reader.connect() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StoreError(CANNOT_READ.format(url=self._shown_url, reason=_reason(exc))) from None

    def save(self, run: AuditRun) -> str:
        """Write the run and append a ledger entry for each of its records, in one transaction.

        Returns ``run.run_id``. A run id already in the store raises StoreError; so does any
        failure, after which nothing of the run is in the store.
        """
        try:
            rows = _codec.run_to_rows(run)
        except (TypeError, ValueError) as exc:
            raise StoreError(
                CANNOT_SAVE.format(run_id=run.run_id, url=self._shown_url, reason=exc)
            ) from None
        runs = RECORD_TABLES["runs"]
        try:
            with self._writer.begin() as conn:
                exists = conn.execute(
                    select(runs.c.run_id).where(runs.c.run_id == run.run_id)
                ).first()
                if exists:
                    raise StoreError(DUPLICATE_RUN.format(run_id=run.run_id, url=self._shown_url))
                _ledger.append(conn, rows)
        except SQLAlchemyError as exc:
            raise StoreError(
                CANNOT_SAVE.format(run_id=run.run_id, url=self._shown_url, reason=_reason(exc))
            ) from None
        return run.run_id

    def list_runs(self, limit: int | None = None) -> list[dict]:
        """Runs newest first (by created_at, then by save order) with their headline figures."""
        positive = isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1
        if limit is not None and not positive:
            raise StoreError(BAD_LIMIT.format(limit=limit))
        runs = RECORD_TABLES["runs"]
        columns = [
            runs.c.run_id,
            runs.c.created_at,
            runs.c.plan_name,
            runs.c.policy_name,
            runs.c.policy_sha256,
            runs.c.model_sha256,
            runs.c.verdict,
            runs.c.n_measurements,
            runs.c.n_blocking,
        ]
        saved = (LEDGER.c.record_table == "runs") & (LEDGER.c.record_id == runs.c.run_id)
        stmt = (
            select(*columns)
            .select_from(runs.outerjoin(LEDGER, saved))
            .order_by(runs.c.created_at.desc(), LEDGER.c.seq.desc())
            .limit(limit)
        )
        with self._reading() as conn:
            return [dict(row._mapping) for row in conn.execute(stmt)]

    def _resolve(self, conn: Connection, prefix: str) -> str:
        runs = RECORD_TABLES["runs"]
        if prefix and conn.execute(select(runs.c.run_id).where(runs.c.run_id == prefix)).first():
            return prefix
        matches = []
        if prefix:
            stmt = (
                select(runs.c.run_id)
                .where(runs.c.run_id.startswith(prefix, autoescape=True))
                .order_by(runs.c.run_id)
            )
            matches = list(conn.execute(stmt).scalars())
        if not matches:
            raise StoreError(NO_RUN.format(run_id=prefix, url=self._shown_url))
        if len(matches) > 1:
            shown = ", ".join(matches[:_AMBIGUOUS_SHOWN])
            if len(matches) > _AMBIGUOUS_SHOWN:
                shown += f", ... ({len(matches) - _AMBIGUOUS_SHOWN} more)"
            raise StoreError(
                AMBIGUOUS_RUN.format(
                    prefix=prefix, count=len(matches), url=self._shown_url, candidates=shown
                )
            )
        return matches[0]

    def load_run(self, run_id_or_unique_prefix: str) -> AuditRun:
        """The full AuditRun of a run id, or of the one run whose id starts with the prefix."""
        tables = RECORD_TABLES
        with self._reading() as conn:
            run_id = self._resolve(conn, run_id_or_unique_prefix)

            def rows(name: str, *order) -> list[dict]:
                table = tables[name]
                stmt = select(table).where(table.c.run_id == run_id).order_by(*order)
                return [dict(row._mapping) for row in conn.execute(stmt)]

            m = tables["measurements"].c
            return _codec.rows_to_run(
                rows("runs")[0],
                rows("check_results", tables["check_results"].c.position),
                rows("measurements", m.check_position, m.position),
                rows("rule_outcomes", tables["rule_outcomes"].c.position),
                rows("artifacts", tables["artifacts"].c.position),
            )

    def verify(self) -> VerifyReport:
        """Walk the hash chain against the tables as they are now (see :mod:`._ledger`)."""
        with self._reading() as conn:
            return _ledger.verify(conn)
