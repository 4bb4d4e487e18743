"""Audit store timings: a 1,000-measurement run written, a 100,000-entry ledger verified, on
SQLite and on PostgreSQL (a throw-away server on 127.0.0.1, as the tests start it, with its
default durability settings; or ``--pg URL``).

Also times what a command that relies on one run pays for reading it verified (the whole chain
walked in the read snapshot) and what verify's database integrity check adds.

Prints each figure against the issue's targets (write < 1 s, verify < 5 s) and, because the
machine's speed varies, against references measured in the same run: for the write, inserting
the same rows with the plain driver (sqlite3 executemany) and no ledger; for the verify, the
bare hashing work (sha256 over the canonical JSON of every entry, no database).

    python benchmarks/bench_store.py [--entries 100000] [--repeat 3] [--pg URL | --no-pg]
"""

from __future__ import annotations

import argparse
import importlib.util
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from govssl.checks.base import CheckResult, Measurement  # noqa: E402
from govssl.store import AuditStore  # noqa: E402
from govssl.store import _codec, _ledger  # noqa: E402

WRITE_TARGET_S, VERIFY_TARGET_S = 1.0, 5.0
MEASUREMENTS = 1000


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


test_store = _load("bench_test_store", REPO / "tests" / "store" / "test_store.py")
store_fixtures = _load("bench_store_fixtures", REPO / "tests" / "store" / "conftest.py")


def big_run(folder: Path, run_id: str):
    """A realistic run with 1,000 measurements (per-group fairness and robustness figures)."""
    run = test_store.make_run(folder, run_id, non_finite=False)
    measurements = tuple(
        Measurement("fairness", "selection_rate", 0.1 + i * 1e-4, f"group={i}", 0.09, 0.11, 500 + i,
                    {"n_positive": i, "groups": ["a", "b"]})
        for i in range(MEASUREMENTS)
    )
    run.results = [CheckResult("fairness", "measured", measurements, seconds=1.5)]
    return run


def entries_per_run(run) -> int:
    return sum(len(rows) for rows in _codec.run_to_rows(run).values())


def time_write(url: str, folder: Path, repeat: int) -> float:
    store = AuditStore(url)
    seconds = []
    for i in range(repeat):
        run = big_run(folder, f"write-{i}")
        started = time.perf_counter()
        store.save(run)
        seconds.append(time.perf_counter() - started)
    store.close()
    return statistics.median(seconds)


def reference_write(folder: Path, repeat: int) -> float:
    """The same rows inserted with sqlite3 alone: one transaction, no ledger, no hashing."""
    seconds = []
    rows_by_table = _codec.run_to_rows(big_run(folder, "reference"))
    for i in range(repeat):
        db = folder / f"reference-{i}.db"
        conn = sqlite3.connect(db, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        for name, rows in rows_by_table.items():
            columns = list(rows[0]) if rows else []
            if columns:
                conn.execute(f"CREATE TABLE {name} ({', '.join(columns)})")
        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        for name, rows in rows_by_table.items():
            if rows:
                marks = ", ".join("?" for _ in rows[0])
                conn.executemany(f"INSERT INTO {name} VALUES ({marks})", [tuple(r.values()) for r in rows])
        conn.execute("COMMIT")
        seconds.append(time.perf_counter() - started)
        conn.close()
    return statistics.median(seconds)


def fill(url: str, folder: Path, entries: int) -> int:
    store = AuditStore(url)
    have = store.verify().entries
    i = 0
    while have < entries:
        run = big_run(folder, f"fill-{i}")
        store.save(run)
        have += entries_per_run(run)
        i += 1
    store.close()
    return have


def time_verify(url: str, repeat: int) -> tuple[float, int]:
    store = AuditStore(url)
    seconds, report = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        report = store.verify()
        seconds.append(time.perf_counter() - started)
    store.close()
    assert report.ok, report.first_problem
    return statistics.median(seconds), report.entries


def time_read(url: str, repeat: int) -> tuple[float, float]:
    """What a command that relies on one run pays: the run and the waivers read and the whole
    chain walked in one read-only snapshot (AuditStore.read_runs); and verify without the
    database's own integrity check, to show what that check adds."""
    store = AuditStore(url, read_only=True)
    reads, walks = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        (run,), _ = store.read_runs(["write-0"], strict=False)
        reads.append(time.perf_counter() - started)
        started = time.perf_counter()
        assert store.verify(check_database=False).ok
        walks.append(time.perf_counter() - started)
    store.close()
    assert len(run.measurements) == MEASUREMENTS
    return statistics.median(reads), statistics.median(walks)


def reference_verify(folder: Path, entries: int) -> float:
    """Hash the same number of entries from rows already in memory: the floor of any verify."""
    rows_by_table = _codec.run_to_rows(big_run(folder, "hash-reference"))
    records = [(name, row) for name, rows in rows_by_table.items() for row in rows]
    started = time.perf_counter()
    previous = _ledger.GENESIS_HASH
    for seq in range(1, entries + 1):
        name, row = records[seq % len(records)]
        previous = _ledger.entry_hash(previous, {"seq": seq, "table": name, "created_at": "t", "row": row})
    return time.perf_counter() - started


def bench(name: str, url: str, folder: Path, entries: int, repeat: int, write_ref: float, verify_ref: float):
    write = time_write(url, folder, repeat)
    filled = fill(url, folder, entries)
    verify, verified = time_verify(url, repeat)
    read, walk = time_read(url, repeat)
    print(f"\n{name}")
    print(f"  write a run of {MEASUREMENTS} measurements: {write:7.3f} s  (target < {WRITE_TARGET_S:g} s: "
          f"{'holds' if write < WRITE_TARGET_S else 'MISSED'}, {write / WRITE_TARGET_S:.2f} of it; "
          f"{write / write_ref:.1f}x the plain sqlite3 insert)")
    print(f"  verify {verified:,} ledger entries:     {verify:7.3f} s  (target < {VERIFY_TARGET_S:g} s: "
          f"{'holds' if verify < VERIFY_TARGET_S else 'MISSED'}, {verify / VERIFY_TARGET_S:.2f} of it; "
          f"{verify / verify_ref:.1f}x the bare hashing; {verified / verify:,.0f} entries/s)")
    print(f"  of which the database's integrity check: {verify - walk:7.3f} s  (verify without it {walk:.3f} s)")
    print(f"  read one run verified (whole chain walked in the read snapshot, as gate/show/report/export do): "
          f"{read:7.3f} s")
    del filled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pg", default=None, help="a PostgreSQL URL to use instead of a throw-away server")
    parser.add_argument("--no-pg", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="govssl-bench-") as tmp:
        folder = Path(tmp)
        per_run = entries_per_run(big_run(folder, "count"))
        write_ref = reference_write(folder, args.repeat)
        verify_ref = reference_verify(folder, args.entries)
        print(f"references: plain sqlite3 insert of one run's {per_run:,} rows {write_ref:.3f} s; "
              f"bare sha256 of {args.entries:,} canonical entries {verify_ref:.3f} s")
        bench("SQLite (WAL, one file)", f"sqlite:///{folder / 'bench.db'}", folder, args.entries, args.repeat,
              write_ref, verify_ref)
        if args.no_pg:
            return
        server = None
        url = args.pg
        if url is None:
            try:
                server = store_fixtures.start_postgres()
            except RuntimeError as exc:
                print(f"\nPostgreSQL: skipped ({exc})")
                return
            url = server.url()
        try:
            bench("PostgreSQL (psycopg 3, loopback)", url, folder, args.entries, args.repeat, write_ref, verify_ref)
        finally:
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
