"""The hash chain over every record of the store (DESIGN.md, "The audit store").

Entry ``seq`` hashes ``sha256(prev_hash || canonical_json(record))``, where ``prev_hash`` is the
hex hash of entry ``seq - 1`` (64 zeros for the first entry) and ``record`` is

    {"seq": seq, "table": record_table, "created_at": entry's created_at, "row": {column: value}}

built from the record's row as stored. Hashing the ledger coordinates with the row means an
entry cannot be moved, re-timed or pointed at another row without breaking its hash.
"""

from __future__ import annotations

import hashlib
import heapq
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from operator import itemgetter
from pathlib import Path
from typing import Any, Callable, Iterator

from sqlalchemy import Connection, exists, func, insert, select, update

from govssl.records import sha256_file
from govssl.store._tables import CHAIN_HEAD, LEDGER, RECORD_TABLES, primary_key_of

__all__ = [
    "GENESIS_HASH", "LedgerHead", "VerifyReport", "canonical_json", "entry_hash", "lock_head",
    "read_head", "append", "verify", "integrity_problem", "Visitor",
]

GENESIS_HASH = "0" * 64
_HEAD_ID = 1
_VERIFY_BATCH = 20_000

CHANGED = "ledger entry {seq} ({table} '{record_id}'): the row was changed after it was recorded"
REMOVED = "ledger entry {seq} ({table} '{record_id}'): the row was removed"
UNREADABLE = (
    "ledger entry {seq} ({table} '{record_id}'): the row holds a value that is not JSON ({error})"
)
UNKNOWN_TABLE = "ledger entry {seq} points at '{table}', which is not a record table"
GAP = "ledger entry {seq} follows entry {previous}: entries {first}..{last} were removed"
FIRST_NOT_ONE = "the ledger starts at entry {seq}, not 1: entries 1..{last} were removed"
REORDERED = (
    "ledger entry {seq}: its prev_hash is the hash of entry {actual}, not of entry {previous}: "
    "ledger entries were reordered"
)
BROKEN_LINK = (
    "ledger entry {seq}: its prev_hash does not match the hash of entry {previous}: "
    "an entry was changed or removed"
)
HEAD_BEHIND = (
    "the ledger ends at entry {last} but the chain head records entry {head}: "
    "entries after {last} were removed"
)
HEAD_MISMATCH = "the chain head (entry {head}) does not match the ledger's last entry {last}"
INSERTED = "{table} '{record_id}' has no ledger entry: the row was inserted outside govssl"
FILE_CHANGED = (
    "ledger entry {seq} (artifacts '{record_id}'): the file {path} changed on disk: "
    "its sha256 is {actual}, the store records {expected}"
)
FILE_UNREADABLE = "ledger entry {seq} (artifacts '{record_id}'): cannot read {path}: {error}"
DAMAGED_FILE = (
    "the database file is damaged: SQLite's integrity check reports: {found} "
    "(an index or page no longer matches its table)"
)
EXPECTED_OTHER = (
    "ledger entry {seq} has hash {actual}, but {expected} was expected: the chain was rewritten "
    "at or before entry {seq}, or this is another store"
)
EXPECTED_MISSING = (
    "the ledger ends at entry {last}, so it has no entry {seq} (expected hash {expected}): "
    "entries were removed, or this is another store"
)


@dataclass(frozen=True)
class LedgerHead:
    """The newest entry of a store's chain: ``seq`` (0 for an empty ledger) and its hash.

    ``store`` is the store's URL with any password hidden ('' where it is not known).
    ``str(head)`` is ``SEQ:HASH``, the form ``govssl verify --expect-head`` takes.
    """

    seq: int
    entry_hash: str
    store: str = ""

    def __str__(self) -> str:
        return f"{self.seq}:{self.entry_hash}"

    def to_dict(self) -> dict[str, Any]:
        """``{"store", "seq", "hash"}``: the anchor an audit's signed statement records."""
        return {"store": self.store, "seq": self.seq, "hash": self.entry_hash}


@dataclass(frozen=True)
class VerifyReport:
    """Outcome of walking the chain: ``first_problem`` is '' when ``ok``."""

    ok: bool
    entries: int
    first_problem: str = ""
    files_checked: int = 0  # artifact files found and hashed (verify with check_files)
    files_missing: int = 0  # artifact files not on this machine (written elsewhere or moved)
    head_seq: int | None = None  # the verified chain's last entry (0: empty); None when not ok
    head_hash: str | None = None  # its hash (64 zeros for an empty ledger); None when not ok
    heads_checked: int = 0  # expected (seq, hash) pairs found in the chain


_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def canonical_json(record: dict[str, Any]) -> str:
    """The one JSON form that is hashed: sorted keys, no spaces, UTF-8, no NaN; that is,
    ``json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    allow_nan=False)``."""
    return _CANONICAL.encode(record)


def entry_hash(prev_hash: str, record: dict[str, Any]) -> str:
    """``sha256(prev_hash_hex || canonical_json(record))`` as hex."""
    data = prev_hash.encode("ascii") + canonical_json(record).encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def _record(seq: int, table: str, created_at: str, row: dict[str, Any]) -> dict[str, Any]:
    return {"seq": seq, "table": table, "created_at": created_at, "row": row}


def ensure_head(conn: Connection) -> None:
    """Create the chain head (genesis) if this is a new store."""
    if conn.execute(select(CHAIN_HEAD.c.id).where(CHAIN_HEAD.c.id == _HEAD_ID)).first() is None:
        conn.execute(insert(CHAIN_HEAD).values(id=_HEAD_ID, seq=0, entry_hash=GENESIS_HASH))


def lock_head(conn: Connection) -> tuple[int, str]:
    """Lock the chain head for the rest of the transaction; returns ``(seq, entry_hash)``.

    ``SELECT ... FOR UPDATE`` queues writers on PostgreSQL; on SQLite the writer's
    BEGIN IMMEDIATE already holds the database's write lock (FOR UPDATE is not emitted).
    """
    head = conn.execute(
        select(CHAIN_HEAD.c.seq, CHAIN_HEAD.c.entry_hash)
        .where(CHAIN_HEAD.c.id == _HEAD_ID)
        .with_for_update()
    ).one()
    return head.seq, head.entry_hash


def append(conn: Connection, rows_by_table: dict[str, list[dict[str, Any]]]) -> int:
    """Insert the rows and one ledger entry for each, in the caller's transaction.

    Locks the chain head first (SELECT ... FOR UPDATE; on SQLite the caller's BEGIN IMMEDIATE
    already holds the write lock), so concurrent writers append one after the other and the
    chain cannot fork. Returns the number of entries appended.
    """
    seq, prev = lock_head(conn)
    created_at = datetime.now(timezone.utc).isoformat(timespec="microseconds")
    entries = []
    for table_name, rows in rows_by_table.items():
        if not rows:
            continue
        table = RECORD_TABLES[table_name]
        conn.execute(insert(table), rows)
        pk = primary_key_of(table).name
        for row in rows:
            seq += 1
            digest = entry_hash(prev, _record(seq, table_name, created_at, row))
            entries.append(
                {
                    "seq": seq,
                    "prev_hash": prev,
                    "entry_hash": digest,
                    "record_table": table_name,
                    "record_id": row[pk],
                    "created_at": created_at,
                }
            )
            prev = digest
    if entries:
        conn.execute(insert(LEDGER), entries)
        conn.execute(
            update(CHAIN_HEAD).where(CHAIN_HEAD.c.id == _HEAD_ID).values(seq=seq, entry_hash=prev)
        )
    return len(entries)


def _entries(conn: Connection) -> tuple[Iterator[tuple], list]:
    """Every ledger entry in seq order as ``(seq, prev_hash, entry_hash, table, record_id,
    created_at, *row)``, ``row`` being its record's columns as stored now (all None if gone).

    One outer-join stream per record table, merged by seq: no query per entry, and each row
    is only as wide as its own table.
    """
    streaming = conn.execution_options(stream_results=True, yield_per=_VERIFY_BATCH)
    results = []
    for name, table in RECORD_TABLES.items():
        joined = LEDGER.outerjoin(table, primary_key_of(table) == LEDGER.c.record_id)
        stmt = select(*LEDGER.c, *table.c).select_from(joined).where(LEDGER.c.record_table == name)
        results.append(streaming.execute(stmt.order_by(LEDGER.c.seq)))
    strays = select(*LEDGER.c).where(LEDGER.c.record_table.not_in(list(RECORD_TABLES)))
    results.append(streaming.execute(strays.order_by(LEDGER.c.seq)))
    return heapq.merge(*results, key=itemgetter(0)), results


_N_LEDGER = len(LEDGER.c)
_COLUMNS = {name: [column.name for column in table.c] for name, table in RECORD_TABLES.items()}
_KEY_AT = {
    name: _N_LEDGER + list(table.c).index(primary_key_of(table))
    for name, table in RECORD_TABLES.items()
}


def _check_entry(entry: tuple) -> tuple[str, dict[str, Any] | None]:
    """('', the row as read) when the entry's hash matches its row as stored now, else
    (the problem, None)."""
    seq, prev_hash, stored_hash, table, record_id, created_at = entry[:_N_LEDGER]
    if table not in _COLUMNS:
        return UNKNOWN_TABLE.format(seq=seq, table=table), None
    if entry[_KEY_AT[table]] is None:
        return REMOVED.format(seq=seq, table=table, record_id=record_id), None
    row = dict(zip(_COLUMNS[table], entry[_N_LEDGER:]))
    try:
        actual = entry_hash(prev_hash, _record(seq, table, created_at, row))
    except (TypeError, ValueError) as exc:
        return UNREADABLE.format(seq=seq, table=table, record_id=record_id, error=exc), None
    if actual != stored_hash:
        return CHANGED.format(seq=seq, table=table, record_id=record_id), None
    return "", row


def _link_problem(conn: Connection, seq: int, prev_hash: str, previous: int) -> str:
    actual = conn.execute(select(LEDGER.c.seq).where(LEDGER.c.entry_hash == prev_hash)).scalar()
    if actual is not None:
        return REORDERED.format(seq=seq, actual=actual, previous=previous)
    return BROKEN_LINK.format(seq=seq, previous=previous)


#: called with (seq, table, row) for each entry whose hash matches the row it was read with
Visitor = Callable[[int, str, dict[str, Any]], None]


def _walk(conn: Connection, visit: Visitor | None = None) -> tuple[str, int, str]:
    """Walk the chain: (first problem or '', last good seq, its hash). ``visit`` sees every
    verified row exactly as it was read and hashed, in seq order."""
    last_seq, last_hash = 0, GENESIS_HASH
    problem, broken_link = "", None
    entries, results = _entries(conn)
    for entry in entries:
        seq, prev_hash, stored_hash = entry[0], entry[1], entry[2]
        if seq != last_seq + 1:
            template = FIRST_NOT_ONE if last_seq == 0 else GAP
            problem = template.format(seq=seq, previous=last_seq, first=last_seq + 1, last=seq - 1)
        elif prev_hash != last_hash:
            broken_link = (seq, prev_hash, last_seq)
        else:
            problem, row = _check_entry(entry)
            if not problem and visit is not None:
                visit(seq, entry[3], row)
        if problem or broken_link:
            break
        last_seq, last_hash = seq, stored_hash
    for result in results:
        result.close()
    if broken_link:
        problem = _link_problem(conn, *broken_link)
    return problem, last_seq, last_hash


def read_head(conn: Connection, store: str = "") -> LedgerHead:
    """The chain head as stored, without locking it: a writer may be appending meanwhile, and
    the entry read existed all the same (a valid anchor). Genesis where there is no head row."""
    head = conn.execute(
        select(CHAIN_HEAD.c.seq, CHAIN_HEAD.c.entry_hash).where(CHAIN_HEAD.c.id == _HEAD_ID)
    ).first()
    if head is None:
        return LedgerHead(0, GENESIS_HASH, store)
    return LedgerHead(head.seq, head.entry_hash, store)


def _head_problem(conn: Connection, last_seq: int, last_hash: str) -> str:
    head = read_head(conn)
    head_seq, head_hash = head.seq, head.entry_hash
    if head_seq > last_seq:
        return HEAD_BEHIND.format(last=last_seq, head=head_seq)
    if (head_seq, head_hash) != (last_seq, last_hash):
        return HEAD_MISMATCH.format(last=last_seq, head=head_seq)
    return ""


def _inserted_problem(conn: Connection) -> str:
    for name, table in RECORD_TABLES.items():
        pk = primary_key_of(table)
        recorded = exists().where(LEDGER.c.record_table == name, LEDGER.c.record_id == pk)
        record_id = conn.execute(select(pk).where(~recorded).order_by(pk).limit(1)).scalar()
        if record_id is not None:
            return INSERTED.format(table=name, record_id=record_id)
    return ""


def _file_problems(conn: Connection) -> tuple[str, int, int]:
    """Hash every artifact file on this machine: (first changed file or '', checked, missing)."""
    artifacts = RECORD_TABLES["artifacts"]
    recorded = (LEDGER.c.record_table == "artifacts") & (LEDGER.c.record_id == artifacts.c.id)
    stmt = (
        select(LEDGER.c.seq, artifacts.c.id, artifacts.c.path, artifacts.c.sha256)
        .select_from(artifacts.join(LEDGER, recorded))
        .order_by(LEDGER.c.seq)
    )
    checked = missing = 0
    for seq, record_id, path, expected in conn.execute(stmt).all():
        if not Path(path).is_file():
            missing += 1
            continue
        try:
            actual = sha256_file(path)
        except OSError as exc:
            problem = FILE_UNREADABLE.format(seq=seq, record_id=record_id, path=path, error=exc)
            return problem, checked, missing
        checked += 1
        if actual != expected:
            problem = FILE_CHANGED.format(
                seq=seq, record_id=record_id, path=path, actual=actual, expected=expected
            )
            return problem, checked, missing
    return "", checked, missing


def _expected_problem(conn: Connection, expected: list[tuple[int, str]], last_seq: int) -> str:
    """'' when every expected ``(seq, hash)`` is an entry of the walked chain (seq 0: genesis)."""
    wanted = sorted({seq for seq, _ in expected if 0 < seq <= last_seq})
    stored = {0: GENESIS_HASH}
    if wanted:
        rows = conn.execute(
            select(LEDGER.c.seq, LEDGER.c.entry_hash).where(LEDGER.c.seq.in_(wanted))
        ).all()
        stored.update((seq, digest) for seq, digest in rows)
    for seq, digest in expected:
        if seq > last_seq:
            return EXPECTED_MISSING.format(last=last_seq, seq=seq, expected=digest)
        if stored.get(seq) != digest:
            return EXPECTED_OTHER.format(seq=seq, actual=stored.get(seq), expected=digest)
    return ""


def integrity_problem(conn: Connection) -> str:
    """'' when the database engine finds its own file sound, else what it reports.

    On SQLite, ``PRAGMA integrity_check``: a page or an index that disagrees with its table
    (an index rewritten to point a value at another row) is reported here, not by the chain,
    which reads rows by primary key. Other databases: '' (no portable equivalent).
    """
    if conn.dialect.name != "sqlite":
        return ""
    found = [row[0] for row in conn.exec_driver_sql("PRAGMA integrity_check(20)")]
    if found == ["ok"]:
        return ""
    shown = "; ".join(found[:5]) + (f"; ... ({len(found) - 5} more)" if len(found) > 5 else "")
    return DAMAGED_FILE.format(found=shown)


def verify(
    conn: Connection,
    check_files: bool = False,
    expected: list[tuple[int, str]] | None = None,
    visit: Visitor | None = None,
    check_database: bool = False,
) -> VerifyReport:
    """Walk the ledger in seq order against the tables as they are now; report the first problem.

    Checks, in order: seq continuity, prev_hash links, each entry's hash against its row
    (changed / removed), the chain head against the last entry (removed tail), rows that
    no entry records (inserted), and then that each ``expected`` ``(seq, hash)``, a head
    recorded outside the database, is an entry of the chain with that hash: a writer who
    rewrote the chain consistently (every hash from a changed entry on, and the head) passes
    the walk but not this. With ``check_database``, the database's own consistency check
    (:func:`integrity_problem`) runs first. ``visit`` is called for each verified row.
    """
    expected = list(expected or [])
    problem = integrity_problem(conn) if check_database else ""
    if problem:
        return VerifyReport(ok=False, entries=0, first_problem=problem)
    problem, last_seq, last_hash = _walk(conn, visit)
    problem = problem or _head_problem(conn, last_seq, last_hash) or _inserted_problem(conn)
    problem = problem or _expected_problem(conn, expected, last_seq)
    checked = missing = 0
    if not problem and check_files:
        problem, checked, missing = _file_problems(conn)
    if not problem:
        return VerifyReport(
            ok=True, entries=last_seq, files_checked=checked, files_missing=missing,
            head_seq=last_seq, head_hash=last_hash, heads_checked=len(expected),
        )
    total = conn.execute(select(func.count()).select_from(LEDGER)).scalar_one()
    return VerifyReport(
        ok=False, entries=total, first_problem=problem, files_checked=checked,
        files_missing=missing,
    )
