"""Anchoring the chain outside the database: the head a store reports, heads expected back later,
and what a writer who rewrites the whole chain consistently gets past (the walk) and what not.

Each test on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sqlite3
import threading

import pytest

from govssl.errors import StoreError
from govssl.store import AuditStore, LedgerHead
from govssl.store import _ledger
from govssl.store._tables import RECORD_TABLES, primary_key_of
from tests.conftest import fast_plan_data, run_cli

from .test_store import RECORDS_PER_RUN, make_run

GENESIS = "0" * 64
R1_M8_SEQ = 1 + 3 + 8 + 1  # run, its 3 checks, its first 8 measurements, then r1/m8


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def rewrite_chain(backend, measurement_id: str, value_json: str) -> int:
    """Change one measurement's value and rewrite the chain consistently, as a writer with plain
    database access would: recompute every entry's hash from the changed one on, with the
    documented formula alone, then the chain head. Returns the seq of the changed entry."""
    backend.raw_sql(f"UPDATE measurements SET value_json = {_quote(value_json)} "
                    f"WHERE id = {_quote(measurement_id)}")
    (first,), = backend.query(f"SELECT seq FROM ledger WHERE record_table = 'measurements' "
                              f"AND record_id = {_quote(measurement_id)}")
    (prev,), = backend.query(f"SELECT prev_hash FROM ledger WHERE seq = {first}")
    entries = backend.query(f"SELECT seq, record_table, record_id, created_at FROM ledger "
                            f"WHERE seq >= {first} ORDER BY seq")
    updates = []
    for seq, table_name, record_id, created_at in entries:
        table = RECORD_TABLES[table_name]
        columns = [column.name for column in table.columns]
        (values,) = backend.query(f"SELECT {', '.join(columns)} FROM {table_name} "
                                  f"WHERE {primary_key_of(table).name} = {_quote(record_id)}")
        record = {"seq": seq, "table": table_name, "created_at": created_at,
                  "row": dict(zip(columns, values))}
        text = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False)
        digest = hashlib.sha256((prev + text).encode("utf-8")).hexdigest()
        updates.append(f"UPDATE ledger SET prev_hash = '{prev}', entry_hash = '{digest}' WHERE seq = {seq}")
        prev = digest
    last_seq = entries[-1][0]
    updates.append(f"UPDATE chain_head SET seq = {last_seq}, entry_hash = '{prev}'")
    backend.raw_sql(*updates)
    return first


def ledger_hash(backend, seq: int) -> str:
    (digest,), = backend.query(f"SELECT entry_hash FROM ledger WHERE seq = {seq}")
    return digest


@pytest.fixture
def store(backend):
    opened = AuditStore(backend.url)
    yield opened
    opened.close()


def test_head__genesis_then_the_newest_entry(store, backend, tmp_path):
    assert store.head() == LedgerHead(0, GENESIS, backend.url)
    store.save(make_run(tmp_path, "r1"))
    assert store.head() == LedgerHead(RECORDS_PER_RUN, ledger_hash(backend, RECORDS_PER_RUN), backend.url)
    assert str(store.head()) == f"{RECORDS_PER_RUN}:{ledger_hash(backend, RECORDS_PER_RUN)}"
    assert store.head().to_dict() == {
        "store": backend.url, "seq": RECORDS_PER_RUN, "hash": ledger_hash(backend, RECORDS_PER_RUN)
    }


def test_head__names_the_store_without_its_password(backend, tmp_path):
    if backend.name == "sqlite":
        assert AuditStore(backend.url).head().store == backend.url
        return
    url = backend.url.replace("govssl@", "govssl:s3cret@")  # the test server trusts any password
    store = AuditStore(url)
    assert store.head().store == backend.url.replace("govssl@", "govssl:***@")
    store.close()


def _hold_the_write_lock(backend, started: threading.Event, release: threading.Event) -> None:
    """A writer in the middle of its transaction: chain head locked and changed, not committed."""
    if backend.sqlite_file is not None:
        conn = sqlite3.connect(backend.sqlite_file, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE chain_head SET seq = 999")
        started.set()
        release.wait(60)
        conn.execute("ROLLBACK")
        conn.close()
        return
    from psycopg import Rollback

    with backend.server.connect(backend.schema) as conn, conn.transaction():
        conn.execute("SELECT seq FROM chain_head FOR UPDATE")
        conn.execute("UPDATE chain_head SET seq = 999")
        started.set()
        release.wait(60)
        raise Rollback()  # leaves the transaction, rolled back


def test_head__does_not_wait_for_a_writer_and_reads_the_committed_head(store, backend, tmp_path):
    store.save(make_run(tmp_path, "r1"))
    committed = store.head()
    started, release = threading.Event(), threading.Event()
    writer = threading.Thread(target=_hold_the_write_lock, args=(backend, started, release))
    writer.start()
    try:
        assert started.wait(30)
        seen = []
        reader = threading.Thread(target=lambda: seen.append(store.head()))
        reader.start()
        reader.join(10)
        assert not reader.is_alive(), "head() waited for the writer's lock"
        assert seen == [committed]
    finally:
        release.set()
        writer.join(30)


def test_verify__expected_heads_that_hold(store, backend, tmp_path):
    store.save(make_run(tmp_path, "r1"))
    first = store.head()
    store.save(make_run(tmp_path, "r2"))
    report = store.verify(expected=[(0, GENESIS), (first.seq, first.entry_hash), (7, ledger_hash(backend, 7))])
    assert report.ok and report.heads_checked == 3
    assert (report.head_seq, report.head_hash) == (2 * RECORDS_PER_RUN, store.head().entry_hash)


def test_verify__expected_head_with_another_hash_or_past_the_end_names_the_entry(store, backend, tmp_path):
    store.save(make_run(tmp_path, "r1"))
    actual = ledger_hash(backend, 5)
    report = store.verify(expected=[(0, GENESIS), (5, "ab" * 32)])
    assert not report.ok and report.head_seq is None and report.head_hash is None
    assert report.first_problem == _ledger.EXPECTED_OTHER.format(seq=5, actual=actual, expected="ab" * 32)
    assert actual in report.first_problem and "ab" * 32 in report.first_problem
    report = store.verify(expected=[(RECORDS_PER_RUN + 1, "cd" * 32)])
    assert report.first_problem == _ledger.EXPECTED_MISSING.format(
        last=RECORDS_PER_RUN, seq=RECORDS_PER_RUN + 1, expected="cd" * 32
    )
    assert not store.verify(expected=[(0, "ef" * 32)]).ok  # seq 0 is the empty chain: 64 zeros


@pytest.mark.parametrize("pair", [(-1, GENESIS), (1, "AB" * 32), (1, "ab"), ("1", GENESIS), (True, GENESIS), (1,)])
def test_verify__malformed_expected_head_raises_store_error(store, pair):
    with pytest.raises(StoreError, match=re.escape(repr(pair))):
        store.verify(expected=[pair])


def test_rewrite_chain__a_consistent_rewrite_passes_the_walk_but_not_an_expected_head(store, backend, tmp_path):
    """The weakness anchoring closes: the walk alone cannot see a writer who recomputed every
    hash from the changed entry on; a head recorded before the rewrite can."""
    store.save(make_run(tmp_path, "r1", non_finite=False))
    before = store.head()
    store.save(make_run(tmp_path, "r2", non_finite=False))
    anchored = ledger_hash(backend, before.seq)
    untouched = ledger_hash(backend, R1_M8_SEQ - 1)
    assert store.load_run("r1").measurements[8].value == 0.0734
    changed = rewrite_chain(backend, "r1/m8", "0.01")
    assert changed == R1_M8_SEQ
    assert store.load_run("r1").measurements[8].value == 0.01
    assert store.verify(check_files=True).ok  # plain verify passes: the weakness
    report = store.verify(expected=[(before.seq, before.entry_hash)])
    assert not report.ok
    assert report.first_problem == _ledger.EXPECTED_OTHER.format(
        seq=before.seq, actual=ledger_hash(backend, before.seq), expected=anchored
    )
    assert ledger_hash(backend, before.seq) != anchored
    # an anchor covers the entries up to it: one recorded before the changed entry still holds
    assert store.verify(expected=[(R1_M8_SEQ - 1, untouched)]).ok


# --- govssl verify: the head it prints, and --expect-head ------------------------------------


@pytest.fixture
def saved(store, tmp_path):
    """One run (r1) in the backend's store."""
    store.save(make_run(tmp_path, "r1", non_finite=False))
    return store


def test_verify_cli__prints_the_verified_head_in_text_and_json(capsys, backend, saved):
    head = f"{RECORDS_PER_RUN}:{ledger_hash(backend, RECORDS_PER_RUN)}"
    code, out, _ = run_cli(capsys, "verify", "--db", backend.url)
    assert code == 0 and f"ledger head: {head}" in out
    code, out, _ = run_cli(capsys, "verify", "--db", backend.url, "--json")
    report = json.loads(out)
    assert code == 0 and report["head"] == head
    assert (report["head_seq"], report["head_hash"]) == (RECORDS_PER_RUN, ledger_hash(backend, RECORDS_PER_RUN))


def test_verify_cli__empty_store_has_the_genesis_head_and_expects_it(capsys, backend, store):
    code, out, _ = run_cli(capsys, "verify", "--db", backend.url)
    assert code == 0 and f"ledger head: 0:{GENESIS}" in out
    code, out, _ = run_cli(capsys, "verify", "--db", backend.url, "--expect-head", f"0:{GENESIS}")
    assert code == 0 and "1 expected head(s) found in the chain" in out


def test_verify_cli__untouched_store_passes_every_head_recorded_earlier(capsys, backend, saved, tmp_path):
    code, out, _ = run_cli(capsys, "verify", "--db", backend.url, "--json")
    earlier = json.loads(out)["head"]
    saved.save(make_run(tmp_path, "r2", non_finite=False))
    code, out, _ = run_cli(capsys, "verify", "--db", backend.url, "--expect-head", earlier,
                           "--expect-head", f"3:{ledger_hash(backend, 3).upper()}")
    assert code == 0 and "2 expected head(s) found in the chain" in out
    assert f"ledger head: {2 * RECORDS_PER_RUN}:{ledger_hash(backend, 2 * RECORDS_PER_RUN)}" in out


def test_verify_cli__expect_head_catches_a_consistent_rewrite_naming_the_entry(capsys, backend, saved, tmp_path):
    code, out, _ = run_cli(capsys, "verify", "--db", backend.url, "--json")
    recorded = json.loads(out)
    saved.save(make_run(tmp_path, "r2", non_finite=False))
    rewrite_chain(backend, "r1/m8", "0.01")

    code, out, _ = run_cli(capsys, "verify", "--db", backend.url)
    assert code == 0 and "ok:" in out  # the walk alone passes: the weakness

    code, out, err = run_cli(capsys, "verify", "--db", backend.url, "--expect-head", recorded["head"])
    err = " ".join(err.split())
    seq, now = recorded["head_seq"], ledger_hash(backend, recorded["head_seq"])
    assert code == 3 and out == ""
    assert f"ledger entry {seq} has hash {now}, but {recorded['head_hash']} was expected" in err
    code, out, _ = run_cli(capsys, "verify", "--db", backend.url, "--json", "--expect-head", recorded["head"])
    report = json.loads(out)
    assert code == 3 and not report["ok"] and report["head"] is None
    assert report["first_problem"].startswith(f"ledger entry {seq} has hash {now}")


def test_verify_cli__expect_head_past_the_end_exits_3_saying_the_chain_is_shorter(capsys, backend, saved):
    code, _, err = run_cli(capsys, "verify", "--db", backend.url, "--expect-head", f"{RECORDS_PER_RUN + 5}:{'ab' * 32}")
    err = " ".join(err.split())
    assert code == 3
    assert f"the ledger ends at entry {RECORDS_PER_RUN}, so it has no entry {RECORDS_PER_RUN + 5}" in err


@pytest.mark.parametrize("value", ["12", f"x:{GENESIS}", f"-1:{GENESIS}", "3:abc", f"3:{'g' * 64}",
                                   f"3:{GENESIS}0", f"3 {GENESIS}", ""])
def test_verify_cli__malformed_expect_head_exits_2_naming_the_option(capsys, backend, saved, value):
    code, out, err = run_cli(capsys, "verify", "--db", backend.url, "--expect-head", value)
    assert code == 2 and out == ""
    assert "--expect-head" in err and "SEQ:HASH" in err and "Traceback" not in err


# --- the anchor in each audit's signed statement, and govssl attest verify --db ----------------


@pytest.fixture
def signed_audit(capsys, backend, store, tmp_path, adult_csvs, write_plan):
    """A hand-made run r1, then a real audit signed with a key kept outside the store."""
    from govssl.provenance import generate_keys

    store.save(make_run(tmp_path, "r1", non_finite=False))
    before = store.head()
    generate_keys(tmp_path / "auditor")
    data = fast_plan_data(*adult_csvs)
    data["provenance"] = {"signing_key": str(tmp_path / "auditor.key")}
    code, _, err = run_cli(capsys, "audit", str(write_plan(data)), "--db", backend.url,
                           "--out", str(tmp_path / "out"), "--quiet")
    assert code in (0, 1), err
    (run_dir,) = (tmp_path / "out").iterdir()
    return {"envelope": str(run_dir / "attestation.intoto.json"), "key": str(tmp_path / "auditor.pub"),
            "before": before}


def _statement(envelope: str) -> dict:
    with open(envelope, encoding="utf-8") as fh:
        return json.loads(base64.b64decode(json.load(fh)["payload"]))


def test_anchor__untouched_store_passes_verify_expect_head_and_attest_verify(capsys, backend, store, signed_audit):
    before = signed_audit["before"]
    seq = before.seq
    assert seq == RECORDS_PER_RUN
    anchor = _statement(signed_audit["envelope"])["predicate"]["ledger_anchor"]
    assert anchor == {"store": backend.url, "seq": seq, "hash": ledger_hash(backend, seq)}  # the head before
    assert store.head().seq > seq  # the audit's own records came after it
    code, _, _ = run_cli(capsys, "verify", "--db", backend.url)
    assert code == 0
    code, _, _ = run_cli(capsys, "verify", "--db", backend.url, "--expect-head", str(signed_audit["before"]))
    assert code == 0
    code, out, err = run_cli(capsys, "attest", "verify", signed_audit["envelope"], "--key", signed_audit["key"],
                             "--db", backend.url)
    out = " ".join(out.split())
    assert code == 0, err
    assert "signature valid" in out
    assert f"ledger anchor: entry {seq} ({ledger_hash(backend, seq)}), recorded for {backend.url}, is in the chain" in out


def test_anchor__a_consistent_rewrite_passes_verify_but_not_the_anchors(capsys, backend, signed_audit):
    before = signed_audit["before"]
    rewrite_chain(backend, "r1/m8", "0.01")
    rewritten = ledger_hash(backend, before.seq)
    assert rewritten != before.entry_hash

    code, _, _ = run_cli(capsys, "verify", "--db", backend.url)
    assert code == 0  # the walk alone passes: the weakness

    code, _, err = run_cli(capsys, "verify", "--db", backend.url, "--expect-head", str(before))
    assert code == 3
    assert f"ledger entry {before.seq} has hash {rewritten}, but {before.entry_hash}" in " ".join(err.split())

    envelope, key = signed_audit["envelope"], signed_audit["key"]
    code, out, _ = run_cli(capsys, "attest", "verify", envelope, "--key", key)
    assert code == 0 and "signature valid" in out  # the envelope and its files are intact
    code, out, err = run_cli(capsys, "attest", "verify", envelope, "--key", key, "--db", backend.url)
    err = " ".join(err.split())
    assert code == 3 and "signature valid" in out
    assert envelope in err and f"(entry {before.seq})" in err
    assert f"ledger entry {before.seq} has hash {rewritten}, but {before.entry_hash} was expected" in err


def test_attest_verify__db_with_a_chain_that_does_not_walk_exits_3(capsys, backend, signed_audit):
    backend.raw_sql("UPDATE measurements SET value_json = '0.01' WHERE id = 'r1/m8'")
    code, _, err = run_cli(capsys, "attest", "verify", signed_audit["envelope"], "--key", signed_audit["key"],
                           "--db", backend.url)
    err = " ".join(err.split())
    assert code == 3
    assert f"ledger entry {R1_M8_SEQ} (measurements 'r1/m8'): the row was changed after it was recorded" in err
