"""AuditStore: save, list, load and verify audit runs in any SQLAlchemy database.

SQLite is the default (one file in the working folder); PostgreSQL serves teams whose CI
runners write to one database. Dialect-specific code lives in :func:`_create_engines` alone.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sqlite3
import time
import uuid
from contextlib import contextmanager
from datetime import date, datetime, timezone
from pathlib import Path
from operator import itemgetter
from pathlib import PurePath
from typing import Callable, Iterator

from sqlalchemy import Connection, Engine, create_engine, event, func, inspect, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from govssl.errors import IntegrityError, StoreError
from govssl.records import Attestation, AuditRun, Waiver
from govssl.store import _codec, _ledger, _migrate
from govssl.store._ledger import LedgerHead, VerifyReport
from govssl.store._tables import ALL_TABLES, CHAIN_HEAD, LEDGER, RECORD_TABLES

__all__ = ["AuditStore", "StoreSnapshot", "default_url", "DEFAULT_URL", "ENV_VAR"]

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

NOT_A_STORE = "{url} is not a govssl audit store: {reason}"
DAMAGED = "the audit store {url} is damaged: {reason}"
NOT_VERIFIED = (
    "the audit store {url} does not verify, so nothing in it is trusted: {problem}; "
    "`govssl verify` reports the same"
)
OLD_SCHEMA = (
    "the audit store {url} has schema revision {found}, and this govssl reads revision {head}: "
    "a command that writes to it (govssl audit, report, waive, attest, attest-rmf or monitor) upgrades it first"
)
NEWER_SCHEMA = (
    "the audit store {url} has schema revision {found}, which this govssl does not know "
    "(its newest is {head}): it was written by a newer govssl"
)
INDEX_LIED = (
    "the index {index} of the audit store {url} is damaged: {detail}; the rows themselves "
    "verify (`govssl verify` runs SQLite's integrity check, which names the index)"
)
BAD_RUN_ID = (
    "run id {run_id!r} read from {url} is not a run id govssl makes (YYYYMMDDTHHMMSSZ-xxxxxx): "
    "the store was changed outside govssl"
)
BAD_OUT_DIR = (
    "run '{run_id}' in {url}: its folder {out_dir!r} is not a folder named after the run "
    "(without '..'): the store was changed outside govssl"
)
RUN_ID_PATTERN = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}")
_GOVSSL_TABLES = frozenset(table.name for table in ALL_TABLES)

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


def _read_only_engine(url: URL, sqlite_file: Path | None) -> Engine:
    """An engine that cannot write: SQLite opened with ``mode=ro`` (no journal-mode switch, no
    file created), PostgreSQL in read-only REPEATABLE READ transactions."""
    if sqlite_file is not None:
        uri = sqlite_file.as_uri() + "?mode=ro"

        def connect():
            return sqlite3.connect(uri, uri=True, check_same_thread=False)

        engine = create_engine("sqlite://", creator=connect)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection, _record):
            dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA query_only = ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn):
            conn.exec_driver_sql("BEGIN")

        return engine
    engine = create_engine(url)
    if engine.dialect.name == "postgresql":
        return engine.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
    return engine


def _is_damage(exc: SQLAlchemyError) -> bool:
    """True when SQLite says the file itself is not a sound database (not a lock or a path)."""
    orig = getattr(exc, "orig", None)
    if isinstance(orig, sqlite3.OperationalError):  # a text value whose bytes were damaged
        return str(orig).startswith("Could not decode to UTF-8")
    return isinstance(orig, sqlite3.DatabaseError)


def _schema_state(conn: Connection) -> tuple[str, str | None]:
    """What the database holds: "empty" (no tables), "foreign" (tables, none of govssl's),
    "current" (a govssl store at this govssl's schema) or "old" (an older govssl schema),
    with the schema revision (None where there is none).

    Raises IntegrityError for a govssl store with tables or its chain head gone, StoreError
    for a schema newer than this govssl.
    """
    names = set(inspect(conn).get_table_names())
    ours = names & _GOVSSL_TABLES
    if not ours:
        return ("foreign" if names else "empty"), None
    revision = _migrate.current_revision(conn)
    known = _migrate.known_revisions()
    if revision is not None and revision not in known:
        raise StoreError(NEWER_SCHEMA.format(url="{url}", found=revision, head=known[-1]))
    if revision is None and not {"runs", "ledger", "chain_head"} <= names:
        missing = ", ".join(sorted({"runs", "ledger", "chain_head"} - names))
        raise IntegrityError(DAMAGED.format(url="{url}", reason=f"table(s) {missing} are gone"))
    if revision is None or revision != known[-1]:
        return "old", revision or _migrate.FIRST_REVISION
    missing = sorted(_GOVSSL_TABLES - names)
    if missing:
        raise IntegrityError(DAMAGED.format(url="{url}", reason=f"table(s) {', '.join(missing)} are gone"))
    if conn.execute(select(CHAIN_HEAD.c.id)).first() is None:
        raise IntegrityError(DAMAGED.format(
            url="{url}", reason="its chain head (table chain_head) is empty: the ledger was emptied"
        ))
    return "current", revision


@dataclasses.dataclass
class _Snapshot:
    """What one verified walk of the chain collected: every run row's headline fields with its
    seq, the full records of the runs asked for, and every waiver."""

    heads: list[tuple[int, dict]] = dataclasses.field(default_factory=list)
    records: dict[str, dict[str, list[dict]]] = dataclasses.field(default_factory=dict)
    waivers: list[dict] = dataclasses.field(default_factory=list)


_HEADLINE = ("run_id", "created_at", "model_sha256", "policy_sha256")


def _among(run_ids: list[str], prefix: str) -> str | None:
    """The run id that ``prefix`` resolves to among ``run_ids`` (None: none or several)."""
    if prefix in run_ids:
        return prefix
    matches = {run_id for run_id in run_ids if prefix and run_id.startswith(prefix)}
    return matches.pop() if len(matches) == 1 else None


class AuditStore:
    """The tamper-evident audit database: runs written whole or not at all, each record chained.

    ``url`` is any SQLAlchemy URL (None: :func:`default_url`). Opening creates the tables (and
    the SQLite file's folder) in a database that has none, or upgrades an older govssl store to
    this govssl's schema. With ``create=False`` the database must already be a govssl store
    (commands that add to one); with ``read_only=True`` it must be one at this govssl's schema,
    and nothing is ever written: SQLite is opened ``mode=ro``, PostgreSQL in read-only
    transactions. A SQLite file that holds other tables is never changed: IntegrityError
    "not a govssl audit store" (exit 3), as is a damaged or emptied store; other failures are
    a :class:`StoreError` naming the URL.
    """

    def __init__(self, url: str | None = None, *, create: bool = True, read_only: bool = False):
        self.url = url if url is not None else default_url()
        parsed = _parse(self.url)
        self._shown_url = parsed.render_as_string(hide_password=True)
        sqlite_file = _sqlite_file(parsed)
        self.read_only = read_only
        #: the URL as it may be shown (password hidden), and the file of a SQLite store (else None)
        self.shown_url, self.sqlite_file = self._shown_url, sqlite_file
        if (read_only or not create) and sqlite_file is not None and not sqlite_file.is_file():
            raise StoreError(NO_STORE.format(url=self._shown_url))
        try:
            if read_only:
                self._engine = self._reader = _read_only_engine(parsed, sqlite_file)
                self._writer = None
                with self._reader.connect() as conn:
                    self._require_store(*_schema_state(conn), create=False, old_ok=False)
                return
            if sqlite_file is not None and sqlite_file.is_file():
                # look before the first write (even the switch to WAL is one)
                probe = _read_only_engine(parsed, sqlite_file)
                try:
                    with probe.connect() as conn:
                        state, revision = _schema_state(conn)
                finally:
                    probe.dispose()
                self._require_store(state, revision, create=create, old_ok=True)
            if sqlite_file is not None:
                sqlite_file.parent.mkdir(parents=True, exist_ok=True)
            self._engine, self._reader, self._writer = _create_engines(parsed)
            with self._writer.begin() as conn:
                state, revision = _schema_state(conn)
                # PostgreSQL schemas are shared with other applications: create beside them
                shared = conn.dialect.name != "sqlite" and create and state == "foreign"
                if not shared:
                    self._require_store(state, revision, create=create, old_ok=True)
                if state != "current":
                    _migrate.upgrade(conn)
                    _ledger.ensure_head(conn)
        except (NoSuchModuleError, ImportError) as exc:
            raise StoreError(
                CANNOT_OPEN.format(url=self._shown_url, reason=f"no driver for it ({_reason(exc)})")
            ) from None
        except SQLAlchemyError as exc:
            if _is_damage(exc):
                raise IntegrityError(DAMAGED.format(url=self._shown_url, reason=_reason(exc))) from None
            raise StoreError(CANNOT_OPEN.format(url=self._shown_url, reason=_reason(exc))) from None
        except OSError as exc:
            raise StoreError(CANNOT_OPEN.format(url=self._shown_url, reason=_reason(exc))) from None
        except (IntegrityError, StoreError) as exc:
            # messages made before the URL was known carry a {url} placeholder
            raise type(exc)(str(exc).replace("{url}", self._shown_url)) from None

    def _require_store(self, state: str, revision: str | None, *, create: bool, old_ok: bool) -> None:
        """Raise unless a store in ``state`` may be used (see the class docstring)."""
        if state == "empty" and not create:
            raise IntegrityError(NOT_A_STORE.format(
                url="{url}", reason="it holds no tables (an empty or 0-byte database)"
            ))
        if state == "foreign":
            raise IntegrityError(NOT_A_STORE.format(
                url="{url}", reason="it holds other tables and none of govssl's; nothing was changed"
            ))
        if state == "old" and not old_ok:
            raise StoreError(OLD_SCHEMA.format(url="{url}", found=revision, head=_migrate.head_revision()))

    def __repr__(self) -> str:
        return f"AuditStore({self._shown_url!r})"

    def close(self) -> None:
        """Release pooled connections (the store can still be used; it reconnects)."""
        self._engine.dispose()

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        """One read transaction: every query in it sees the same snapshot."""
        try:
            with self._reader.connect() as conn:
                yield conn
        except SQLAlchemyError as exc:
            if _is_damage(exc):
                raise IntegrityError(DAMAGED.format(url=self._shown_url, reason=_reason(exc))) from None
            raise StoreError(CANNOT_READ.format(url=self._shown_url, reason=_reason(exc))) from None

    def _writing(self) -> Engine:
        if self._writer is None:
            raise StoreError(f"the audit store {self._shown_url} was opened read-only")
        return self._writer

    def _read_verified(
        self, conn: Connection, wanted: set[str], match: Callable[[dict], bool] | None = None
    ) -> _Snapshot:
        """Walk the whole chain in ``conn``'s snapshot and keep, from the rows exactly as they
        were read and hashed, the records of the runs in ``wanted`` (and of the runs whose row
        ``match`` accepts), every run's headline fields and every waiver. Raises
        IntegrityError when the chain does not verify."""
        snapshot = _Snapshot()
        wanted = set(wanted)

        def visit(seq: int, table: str, row: dict) -> None:
            if table == "runs":
                snapshot.heads.append((seq, {key: row[key] for key in _HEADLINE}))
                if row["run_id"] in wanted or (match is not None and match(row)):
                    snapshot.records[row["run_id"]] = {"runs": [row]}
            elif table == "waivers":
                snapshot.waivers.append(row)
            elif row.get("run_id") in snapshot.records:
                snapshot.records[row["run_id"]].setdefault(table, []).append(row)

        report = _ledger.verify(conn, visit=visit)
        if not report.ok:
            raise IntegrityError(NOT_VERIFIED.format(url=self._shown_url, problem=report.first_problem))
        return snapshot

    def _to_run(self, records: dict[str, list[dict]], strict: bool) -> AuditRun:
        def rows(table: str, *keys: str) -> list[dict]:
            return sorted(records.get(table, []), key=itemgetter(*keys))

        run = _codec.rows_to_run(
            records["runs"][0],
            rows("check_results", "position"),
            rows("measurements", "check_position", "position"),
            rows("rule_outcomes", "position"),
            rows("artifacts", "position"),
            rows("attestations", "position"),
        )
        if strict:
            self._check_names(run)
        return run

    def _check_names(self, run: AuditRun) -> None:
        """Raise IntegrityError unless the run id and its folder have the form govssl gives
        them, so that neither can lead a path out of the folder it is joined to."""
        if not isinstance(run.run_id, str) or not RUN_ID_PATTERN.fullmatch(run.run_id):
            raise IntegrityError(BAD_RUN_ID.format(run_id=run.run_id, url=self._shown_url))
        folder = PurePath(run.out_dir) if isinstance(run.out_dir, str) and run.out_dir else None
        if folder is None or folder.name != run.run_id or ".." in folder.parts or "\0" in run.out_dir:
            raise IntegrityError(
                BAD_OUT_DIR.format(run_id=run.run_id, out_dir=run.out_dir, url=self._shown_url)
            )

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
            with self._writing().begin() as conn:
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
        """The runs that match every filter given, newest first, as :meth:`list_runs` gives them,
        each with ``monitoring``: how many monitoring results it has, and the newest one's verdict
        and time. The whole chain is walked first, in the same read transaction, so a listing is
        never of rows that do not verify (IntegrityError, exit 3).

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
            self._read_verified(conn, set())
            found = [dict(row._mapping) for row in conn.execute(stmt)]
            counts = self._monitoring_counts(conn)
        for row in found:
            row["monitoring"] = counts.get(row["run_id"], {"count": 0, "last_verdict": None, "last_at": None})
        return found

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
        """The full AuditRun of a run id, or of the one run whose id starts with the prefix,
        verified like :meth:`read_runs` (without its checks of the run id's form)."""
        return self.read_runs([run_id_or_unique_prefix], strict=False)[0][0]

    def read_runs(self, run_ids: list[str], strict: bool = True) -> tuple[list[AuditRun], list[Waiver]]:
        """The runs (ids or unique prefixes) and every waiver in the store, as trusted input.

        In one read snapshot: the ids are resolved, then the whole chain is walked and the
        runs are rebuilt from the rows exactly as that walk read and hashed them (never from
        a second query), so a record changed, removed or inserted outside govssl raises
        IntegrityError naming its ledger entry. A run id that the primary key index resolves
        otherwise than the verified rows do raises IntegrityError naming the index. With
        ``strict``, a run id or run folder not of the form govssl gives them raises too.
        """
        run_ids = list(run_ids)
        with self._reading() as conn:
            resolved = [self._resolve(conn, prefix) for prefix in run_ids]
            snapshot = self._read_verified(conn, set(resolved))
        verified = [head["run_id"] for _, head in snapshot.heads]
        for prefix, run_id in zip(run_ids, resolved):
            truth = _among(verified, prefix)
            if truth != run_id or run_id not in snapshot.records:
                detail = (f"run id '{prefix}' leads it to run '{run_id}', but the verified rows "
                          f"resolve it to {repr(truth) if truth else 'no single run'}")
                raise IntegrityError(INDEX_LIED.format(
                    index="on runs.run_id (its primary key)", url=self._shown_url, detail=detail
                ))
        runs = [self._to_run(snapshot.records[run_id], strict) for run_id in resolved]
        return runs, [_codec.row_to_waiver(row) for row in snapshot.waivers]

    def runs_of_model(self, model_sha256: str) -> tuple[list[AuditRun], list[Waiver]]:
        """Every run of the model with this sha256, newest first, and every waiver: verified as
        :meth:`read_runs` does (``strict``). The runs come from the verified rows; the index on
        ``runs.model_sha256`` is asked too, and a run it lists or leaves out otherwise than the
        rows say raises IntegrityError naming the index."""
        runs = RECORD_TABLES["runs"]
        with self._reading() as conn:
            listed = set(
                conn.execute(select(runs.c.run_id).where(runs.c.model_sha256 == model_sha256)).scalars()
            )
            snapshot = self._read_verified(
                conn, set(), match=lambda row: row["model_sha256"] == model_sha256
            )
        heads = dict((head["run_id"], head) for _, head in snapshot.heads)
        index = "ix_runs_model_sha256 (on runs.model_sha256)"
        for run_id in sorted(listed - set(snapshot.records)):
            row_says = heads[run_id]["model_sha256"] if run_id in heads else "no verified row"
            detail = (f"it lists run '{run_id}' for model sha256 {model_sha256}, but the run's "
                      f"row records {row_says}")
            raise IntegrityError(INDEX_LIED.format(index=index, url=self._shown_url, detail=detail))
        for run_id in sorted(set(snapshot.records) - listed):
            detail = f"it leaves out run '{run_id}', whose row records model sha256 {model_sha256}"
            raise IntegrityError(INDEX_LIED.format(index=index, url=self._shown_url, detail=detail))
        order = {head["run_id"]: (head["created_at"], seq) for seq, head in snapshot.heads}
        newest_first = sorted(snapshot.records, key=order.__getitem__, reverse=True)
        found = [self._to_run(snapshot.records[run_id], strict=True) for run_id in newest_first]
        return found, [_codec.row_to_waiver(row) for row in snapshot.waivers]

    def verify(
        self,
        check_files: bool = False,
        expected: list[tuple[int, str]] | None = None,
        check_database: bool = True,
    ) -> VerifyReport:
        """Walk the hash chain against the tables as they are now (see :mod:`._ledger`).

        With ``check_files``, each artifact file found on this machine must also still have
        its recorded sha256 (files written on another machine are counted as not found).
        Each ``expected`` ``(seq, hash)`` (a head recorded outside the database: a CI log, a
        signed statement) must then be an entry of the chain with exactly that hash; seq 0 is
        the empty chain, whose hash is 64 zeros. With ``check_database`` (the default), the
        database's own consistency check runs first (SQLite: ``PRAGMA integrity_check``, which
        finds an index that disagrees with its table). The report's ``head_seq`` / ``head_hash`` are
        the head that was verified.
        """
        expected = list(expected or [])
        for pair in expected:
            if not _is_head(pair):
                raise StoreError(BAD_EXPECTED.format(pair=pair))
        with self._reading() as conn:
            return _ledger.verify(
                conn, check_files=check_files, expected=expected, check_database=check_database
            )

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
            with self._writing().begin() as conn:
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

    def stored_artifact_paths(self, paths: list[str]) -> list[str]:
        """Those of ``paths`` (absolute, resolved) that are the path of an artifact of any run."""
        artifacts = RECORD_TABLES["artifacts"]
        paths = sorted(set(paths))
        if not paths:
            return []
        with self._reading() as conn:
            stmt = select(artifacts.c.path).where(artifacts.c.path.in_(paths)).distinct()
            return sorted(conn.execute(stmt).scalars())

    def add_rendering(
        self, run_id: str, artifacts: list, folder: str, waiver_ids: list[str],
        attestation_positions: list[int],
    ) -> int:
        """Documents re-rendered after the run (exact run id): their files appended to the run's
        artifacts with their sha256, and a renderings record naming them, their folder and the
        waivers and attestations they reflect; all ledgered in one transaction. Refuses (StoreError)
        a file whose path is already a stored artifact. Returns the rendering's position."""
        artifacts = list(artifacts)
        table, runs = RECORD_TABLES["artifacts"], RECORD_TABLES["runs"]
        renderings = RECORD_TABLES["renderings"]
        position: list[int] = []

        def write(conn: Connection) -> None:
            if conn.execute(select(runs.c.run_id).where(runs.c.run_id == run_id)).first() is None:
                raise StoreError(NO_RUN.format(run_id=run_id, url=self._shown_url))
            taken = conn.execute(
                select(table.c.path).where(table.c.path.in_([a.path for a in artifacts]))
            ).scalars().first()
            if taken is not None:
                raise StoreError(CANNOT_WRITE.format(
                    what="the re-rendered documents", url=self._shown_url,
                    reason=f"{taken} is already a stored artifact and is never replaced",
                ))
            last = conn.execute(select(func.max(table.c.position)).where(table.c.run_id == run_id)).scalar()
            first = 0 if last is None else last + 1
            last_r = conn.execute(
                select(func.max(renderings.c.position)).where(renderings.c.run_id == run_id)
            ).scalar()
            position.append(0 if last_r is None else last_r + 1)
            rendered_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
            try:
                rows = {
                    "artifacts": _codec.artifact_rows(run_id, first, artifacts),
                    "renderings": [_codec.rendering_row(
                        run_id, position[0], rendered_at, folder,
                        list(range(first, first + len(artifacts))), waiver_ids, attestation_positions,
                    )],
                }
            except (TypeError, ValueError) as exc:
                raise StoreError(
                    CANNOT_WRITE.format(what="the re-rendered documents", url=self._shown_url, reason=exc)
                ) from None
            _ledger.append(conn, rows)

        self._write(f"re-rendered documents of run '{run_id}'", write)
        return position[0]

    def renderings(self, run_id: str) -> list[dict]:
        """The run's re-renderings (exact run id) in order, read from rows the chain walk verified."""
        with self._reading() as conn:
            snapshot = self._read_verified(conn, {run_id})
        rows = snapshot.records.get(run_id, {}).get("renderings", [])
        return [_codec.row_to_rendering(row) for row in sorted(rows, key=itemgetter("position"))]

    def add_monitoring(self, result) -> int:
        """A monitoring result (govssl.monitor.MonitoringResult) of a stored run (exact run id),
        appended to the run's monitoring records and to the ledger in one transaction. Returns its
        position among the run's monitoring results."""
        table, runs = RECORD_TABLES["monitoring"], RECORD_TABLES["runs"]
        position: list[int] = []

        def write(conn: Connection) -> None:
            row = conn.execute(select(runs.c.model_sha256).where(runs.c.run_id == result.run_id)).first()
            if row is None:
                raise StoreError(NO_RUN.format(run_id=result.run_id, url=self._shown_url))
            if row.model_sha256 != result.model_sha256:
                raise StoreError(CANNOT_WRITE.format(
                    what="the monitoring result", url=self._shown_url,
                    reason=f"it names model {result.model_sha256}, run '{result.run_id}' has {row.model_sha256}",
                ))
            last = conn.execute(select(func.max(table.c.position)).where(table.c.run_id == result.run_id)).scalar()
            position.append(0 if last is None else last + 1)
            try:
                rows = {"monitoring": [_codec.monitoring_row(result, position[0])]}
            except (TypeError, ValueError) as exc:
                raise StoreError(
                    CANNOT_WRITE.format(what="the monitoring result", url=self._shown_url, reason=exc)
                ) from None
            _ledger.append(conn, rows)

        self._write(f"monitoring result of run '{result.run_id}'", write)
        return position[0]

    @staticmethod
    def _monitoring_counts(conn: Connection) -> dict[str, dict]:
        """Per run id: how many monitoring results it has, the newest one's verdict and time
        (for :meth:`find_runs`, inside its verified read)."""
        table = RECORD_TABLES["monitoring"]
        stmt = select(table.c.run_id, table.c.created_at, table.c.verdict).order_by(table.c.created_at, table.c.position)
        found: dict[str, dict] = {}
        for run_id, created_at, verdict in conn.execute(stmt):
            entry = found.setdefault(run_id, {"count": 0})
            entry.update(count=entry["count"] + 1, last_verdict=verdict, last_at=created_at)
        return found

    def monitoring(self, run_ids: list[str] | None = None, model_sha256: str | None = None) -> list:
        """Monitoring results (govssl.monitor.MonitoringResult) oldest first, read from the rows a
        walk of the whole chain verified (IntegrityError when it does not verify): those of the
        runs given (exact ids), or of every run of the model with this sha256, or all of them."""
        found: list[tuple[int, dict]] = []
        wanted = set(run_ids) if run_ids is not None else None

        def keep(seq: int, table: str, row: dict) -> None:
            if table != "monitoring":
                return
            if wanted is not None and row["run_id"] not in wanted:
                return
            if model_sha256 is not None and row["model_sha256"] != model_sha256:
                return
            found.append((seq, row))

        with self._reading() as conn:
            report = _ledger.verify(conn, visit=keep)
        if not report.ok:
            raise IntegrityError(NOT_VERIFIED.format(url=self._shown_url, problem=report.first_problem))
        found.sort(key=lambda pair: (pair[1]["created_at"], pair[0]))
        return [_codec.row_to_monitoring(row) for _, row in found]

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
        for the run or for its model. ``active_at`` keeps those not expired then. Read from
        the rows a walk of the whole chain verified (IntegrityError when it does not verify).
        """
        with self._reading() as conn:
            snapshot = self._read_verified(conn, set())
        found = []
        for waiver in map(_codec.row_to_waiver, snapshot.waivers):  # in ledger order
            if rule_id is not None and waiver.rule_id != rule_id:
                continue
            applies = [(run_id, waiver.run_id), (model_sha256, waiver.model_sha256)]
            if any(asked is not None for asked, _ in applies) and not any(
                asked is not None and asked == value for asked, value in applies
            ):
                continue
            found.append(waiver)
        if active_at is not None:
            found = [w for w in found if w.active(active_at)]
        return found

    def snapshot(self, check_files: bool = False) -> "StoreSnapshot":
        """Everything the store holds, from one verified walk of the whole chain in one read
        snapshot: the verify report (run with the database's own consistency check first, and
        with ``check_files`` the artifact files hashed), and, when it is ok, every run's
        records and every waiver exactly as the walk read and hashed them. When the store does
        not verify, the snapshot holds the report alone (nothing in it is trusted).

        For readers that serve many views of one state of the store (``govssl serve``)."""
        snapshot = _Snapshot()

        def visit(seq: int, table: str, row: dict) -> None:
            if table == "runs":
                snapshot.heads.append((seq, dict(row)))
                snapshot.records[row["run_id"]] = {"runs": [row]}
            elif table == "waivers":
                snapshot.waivers.append(row)
            elif row.get("run_id") in snapshot.records:
                snapshot.records[row["run_id"]].setdefault(table, []).append(row)

        with self._reading() as conn:
            report = _ledger.verify(conn, visit=visit, check_files=check_files, check_database=True)
        if not report.ok:
            return StoreSnapshot(self, report, [], {}, [])
        order = sorted(snapshot.heads, key=lambda pair: (pair[1]["created_at"], pair[0]), reverse=True)
        return StoreSnapshot(
            self, report, [row for _, row in order], snapshot.records,
            [_codec.row_to_waiver(row) for row in snapshot.waivers],
        )


@dataclasses.dataclass
class StoreSnapshot:
    """What :meth:`AuditStore.snapshot` read: ``report`` (the verify report), ``runs`` (each
    run's row, newest first), ``waivers`` and, through :meth:`run`, each full run."""

    store: AuditStore
    report: VerifyReport
    runs: list[dict]
    records: dict[str, dict[str, list[dict]]]
    waivers: list[Waiver]

    def run(self, run_id: str) -> AuditRun:
        """The run with this exact id (StoreError if none), rebuilt from the verified rows; a
        run id or folder not of the form govssl gives them raises IntegrityError."""
        if run_id not in self.records:
            raise StoreError(NO_RUN.format(run_id=run_id, url=self.store._shown_url))
        return self.store._to_run(self.records[run_id], strict=True)

    def renderings(self, run_id: str) -> list[dict]:
        """The run's re-renderings (exact run id) in order."""
        rows = self.records.get(run_id, {}).get("renderings", [])
        return [_codec.row_to_rendering(row) for row in sorted(rows, key=itemgetter("position"))]

    def monitoring(self, run_id: str | None = None) -> list:
        """The monitoring results (govssl.monitor.MonitoringResult) of the run with this exact id,
        or of every run, oldest first, rebuilt from the verified rows."""
        ids = [run_id] if run_id is not None else list(self.records)
        rows = [row for key in ids for row in self.records.get(key, {}).get("monitoring", [])]
        rows.sort(key=lambda row: (row["created_at"], row["run_id"], row["position"]))
        return [_codec.row_to_monitoring(row) for row in rows]


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
