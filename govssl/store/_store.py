"""AuditStore: save, list, load and verify audit runs in any SQLAlchemy database.

SQLite is the default (one file in the working folder); PostgreSQL serves teams whose CI
runners write to one database. Dialect-specific code lives in :func:`_create_engines` alone.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import time
import uuid
from contextlib import contextmanager
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Iterator

from sqlalchemy import Connection, Engine, create_engine, event, func, or_, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from govssl.errors import StoreError
from govssl.records import Attestation, AuditRun, Waiver
from govssl.store import _codec, _ledger, _migrate
from govssl.store._ledger import LedgerHead, VerifyReport
from govssl.store._tables import LEDGER, RECORD_TABLES

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
NO_STORE = "there is no audit store at {url}; check --db or GOVSSL_DB_URL"
CANNOT_WRITE = "cannot write {what} to {url}: {reason}"
BAD_WAIVER = "waiver '{waiver_id}': {reason}"
DUPLICATE_WAIVER = "waiver '{waiver_id}' is already in {url}; waiver ids are unique"
BAD_SINCE = "since must be a datetime or None; got {since!r}"
BAD_EXPECTED = (
    "expected head {pair!r} is not a (seq, hash) pair: seq an integer >= 0, hash 64 lowercase "
    "hex digits"
)

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


def _set_wal(cursor) -> None:
    """Switch a SQLite file to WAL once. The switch needs the file to itself and SQLite does
    not always wait for that (the busy timeout is skipped), so several processes opening a new
    file at once retry here until the busy timeout."""
    if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
        return
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


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
        _set_wal(cursor)
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
    the SQLite file's folder) or upgrades them to this govssl's schema; with ``create=False``
    a SQLite file that does not exist is an error instead (commands that only read). Every
    failure is a :class:`StoreError` naming the URL.
    """

    def __init__(self, url: str | None = None, *, create: bool = True):
        self.url = url if url is not None else default_url()
        parsed = _parse(self.url)
        self._shown_url = parsed.render_as_string(hide_password=True)
        sqlite_file = _sqlite_file(parsed)
        if not create and sqlite_file is not None and not sqlite_file.is_file():
            raise StoreError(NO_STORE.format(url=self._shown_url))
        try:
            if sqlite_file is not None:
                sqlite_file.parent.mkdir(parents=True, exist_ok=True)
            self._engine, self._reader, self._writer = _create_engines(parsed)
            with self._writer.begin() as conn:
                _migrate.upgrade(conn)
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
                _ledger.lock_head(conn)
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
        return self.find_runs(limit=limit)

    def find_runs(
        self,
        model_sha256: str | None = None,
        policy_sha256: str | None = None,
        verdict: str | None = None,
        since: datetime | None = None,
        plan_name: str | None = None,
        limit: int | None = None,
    ) -> list[dict]:
        """The runs that match every filter given, newest first, as :meth:`list_runs` gives them.

        ``since`` keeps runs created at or after it (a naive datetime is UTC); the others match
        the stored value exactly (``verdict``: "pass" or "blocked").
        """
        positive = isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1
        if limit is not None and not positive:
            raise StoreError(BAD_LIMIT.format(limit=limit))
        if since is not None and not isinstance(since, datetime):
            raise StoreError(BAD_SINCE.format(since=since))
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
        stmt = select(*columns).select_from(runs.outerjoin(LEDGER, saved))
        for column, wanted in (
            (runs.c.model_sha256, model_sha256),
            (runs.c.policy_sha256, policy_sha256),
            (runs.c.verdict, verdict),
            (runs.c.plan_name, plan_name),
        ):
            if wanted is not None:
                stmt = stmt.where(column == wanted)
        if since is not None:
            utc = since.replace(tzinfo=timezone.utc) if since.tzinfo is None else since
            # created_at is ISO 8601 in UTC ("2024-05-01T12:00:00+00:00"): text order is time order
            stmt = stmt.where(
                runs.c.created_at >= utc.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
            )
        stmt = stmt.order_by(runs.c.created_at.desc(), LEDGER.c.seq.desc()).limit(limit)
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
                rows("attestations", tables["attestations"].c.position),
            )

    def verify(
        self, check_files: bool = False, expected: list[tuple[int, str]] | None = None
    ) -> VerifyReport:
        """Walk the hash chain against the tables as they are now (see :mod:`._ledger`).

        With ``check_files``, each artifact file found on this machine must also still have
        its recorded sha256 (files written on another machine are counted as not found).
        Each ``expected`` ``(seq, hash)`` (a head recorded outside the database: a CI log, a
        signed statement) must then be an entry of the chain with exactly that hash; seq 0 is
        the empty chain, whose hash is 64 zeros. The report's ``head_seq`` / ``head_hash`` are
        the head that was verified.
        """
        expected = list(expected or [])
        for pair in expected:
            if not _is_head(pair):
                raise StoreError(BAD_EXPECTED.format(pair=pair))
        with self._reading() as conn:
            return _ledger.verify(conn, check_files=check_files, expected=expected)

    def head(self) -> LedgerHead:
        """The chain head now: the newest entry's seq and hash (0 and 64 zeros while the store
        is empty), with this store's URL (password hidden).

        Read without the write lock, so it never waits for a writer: an entry that existed is
        a valid anchor even if others are appended meanwhile.
        """
        with self._reading() as conn:
            return _ledger.read_head(conn, store=self._shown_url)

    def _write(self, what: str, write) -> None:
        """Run ``write(conn)`` in one write transaction holding the chain head."""
        try:
            with self._writer.begin() as conn:
                _ledger.lock_head(conn)
                write(conn)
        except SQLAlchemyError as exc:
            raise StoreError(
                CANNOT_WRITE.format(what=what, url=self._shown_url, reason=_reason(exc))
            ) from None

    def add_attestations(self, run_id: str, attestations: list[Attestation]) -> None:
        """Attestations made after the run (exact run id), appended to it and to the ledger."""
        attestations = list(attestations)
        table = RECORD_TABLES["attestations"]
        runs = RECORD_TABLES["runs"]

        def write(conn: Connection) -> None:
            if conn.execute(select(runs.c.run_id).where(runs.c.run_id == run_id)).first() is None:
                raise StoreError(NO_RUN.format(run_id=run_id, url=self._shown_url))
            last = conn.execute(
                select(func.max(table.c.position)).where(table.c.run_id == run_id)
            ).scalar()
            added_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
            first = 0 if last is None else last + 1
            try:
                rows = _codec.attestation_rows(run_id, first, attestations, added_at)
            except (TypeError, ValueError) as exc:
                raise StoreError(
                    CANNOT_WRITE.format(what="attestations", url=self._shown_url, reason=exc)
                ) from None
            _ledger.append(conn, {"attestations": rows})

        self._write(f"attestations of run '{run_id}'", write)

    def add_waiver(self, waiver: Waiver) -> str:
        """Store a waiver (ledgered); returns its id, made up when ``waiver.waiver_id`` is ''.

        It must name a rule, a run or a model (or both), and an ISO expiry date.
        """
        if not isinstance(waiver, Waiver):
            raise StoreError(f"add_waiver takes a Waiver; got {type(waiver).__name__}")
        if not waiver.waiver_id:
            waiver = dataclasses.replace(waiver, waiver_id=f"waiver-{uuid.uuid4().hex[:12]}")
        if not waiver.created_at:
            now = datetime.now(timezone.utc).isoformat(timespec="seconds")
            waiver = dataclasses.replace(waiver, created_at=now)
        problem = _waiver_problem(waiver)
        if problem:
            raise StoreError(BAD_WAIVER.format(waiver_id=waiver.waiver_id, reason=problem))
        table = RECORD_TABLES["waivers"]

        def write(conn: Connection) -> None:
            taken = select(table.c.waiver_id).where(table.c.waiver_id == waiver.waiver_id)
            if conn.execute(taken).first() is not None:
                raise StoreError(
                    DUPLICATE_WAIVER.format(waiver_id=waiver.waiver_id, url=self._shown_url)
                )
            _ledger.append(conn, {"waivers": [_codec.waiver_row(waiver)]})

        self._write(f"waiver '{waiver.waiver_id}'", write)
        return waiver.waiver_id

    def waivers(
        self,
        rule_id: str | None = None,
        run_id: str | None = None,
        model_sha256: str | None = None,
        active_at: datetime | None = None,
    ) -> list[Waiver]:
        """Waivers in the order they were stored, filtered.

        Given both ``run_id`` and ``model_sha256``, the waivers that apply to that run: those
        for the run or for its model. ``active_at`` keeps those not expired then.
        """
        table = RECORD_TABLES["waivers"]
        recorded = (LEDGER.c.record_table == "waivers") & (LEDGER.c.record_id == table.c.waiver_id)
        stmt = select(table).select_from(table.outerjoin(LEDGER, recorded))
        if rule_id is not None:
            stmt = stmt.where(table.c.rule_id == rule_id)
        applies = []
        if run_id is not None:
            applies.append(table.c.run_id == run_id)
        if model_sha256 is not None:
            applies.append(table.c.model_sha256 == model_sha256)
        if applies:
            stmt = stmt.where(or_(*applies))
        stmt = stmt.order_by(LEDGER.c.seq, table.c.waiver_id)
        with self._reading() as conn:
            found = [_codec.row_to_waiver(dict(row._mapping)) for row in conn.execute(stmt)]
        if active_at is not None:
            found = [w for w in found if w.active(active_at)]
        return found


def _is_head(pair) -> bool:
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        return False
    seq, digest = pair
    return (
        isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0
        and isinstance(digest, str) and len(digest) == 64
        and all(c in "0123456789abcdef" for c in digest)
    )


def _waiver_problem(waiver: Waiver) -> str:
    if not waiver.rule_id:
        return "rule_id is empty"
    if not (waiver.run_id or waiver.model_sha256):
        return "it names neither a run_id nor a model_sha256"
    if not waiver.approver:
        return "approver is empty"
    try:
        date.fromisoformat(waiver.expires)
    except (TypeError, ValueError):
        return f"expires must be an ISO date (YYYY-MM-DD); got {waiver.expires!r}"
    return ""
