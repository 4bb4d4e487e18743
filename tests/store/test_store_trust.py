"""Commands that rely on the store trust only what verifies: gate, show, report, export, diff,
waive and attest-rmf rebuild runs from rows the chain walk hashed, a damaged index or file is
exit 3, read-only commands never change a database that is not a govssl store, and names read
from the store never lead a path out of its folder. Through the CLI, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import dataclasses
import hashlib
import sqlite3

import pytest

from govssl.policy import builtin_policy_path, load_policy
from govssl.policy.model import Decision
from govssl.errors import StoreError
from govssl.records import Waiver, sha256_file
from govssl.store import AuditStore

from tests.conftest import run_cli

from .test_store import RECORDS_PER_RUN, make_run

BLOCKED, PASSED = "20240501T090000Z-0000a1", "20240503T090000Z-0000b2"  # run ids as govssl makes them


def one_line(text: str) -> str:
    return " ".join(text.split())  # the console wraps long lines


def file_sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def gated(backend, tmp_path):
    return save_gated(backend, tmp_path)


def save_gated(backend, tmp_path) -> dict:
    """A blocked run (model A) and a passing run (model B), both under the built-in default
    policy, with the model files on disk, as `govssl gate` sees them."""
    policy = load_policy(builtin_policy_path("default"))
    runs = {}
    for run_id, passing in ((BLOCKED, False), (PASSED, True)):
        run = make_run(tmp_path, run_id, non_finite=False)
        model = tmp_path / f"{run_id}-model.safetensors"
        model.write_bytes(run_id.encode() * 50)
        run.training = dataclasses.replace(run.training, model_path=str(model), model_sha256=sha256_file(model))
        run.policy_sha256 = policy.sha256
        if passing:
            run.decision = Decision(tuple(dataclasses.replace(o, status="pass") for o in run.decision.outcomes))
        run.artifacts[0] = dataclasses.replace(run.artifacts[0], sha256=sha256_file(model), size=model.stat().st_size)
        runs[run_id] = (run, model)
    store = AuditStore(backend.url)
    for run, _ in runs.values():
        store.save(run)
    store.close()
    unaudited = tmp_path / "unaudited.safetensors"
    unaudited.write_bytes(b"never audited" * 50)
    return {"blocked": runs[BLOCKED][1], "passed": runs[PASSED][1], "unaudited": unaudited,
            "runs": runs, "policy": policy}


def gate(capsys, backend, model, *options):
    code, out, err = run_cli(capsys, "gate", "--model", str(model), "--db", backend.url, *options)
    return code, one_line(out + err)


def test_gate__rule_outcome_set_to_pass_exits_3_naming_the_entry(capsys, backend, gated):
    code, said = gate(capsys, backend, gated["blocked"])
    assert code == 1 and "fairness-equalized-odds" in said
    backend.raw_sql(f"UPDATE rule_outcomes SET status = 'pass' WHERE run_id = '{BLOCKED}'")
    code, said = gate(capsys, backend, gated["blocked"])
    assert code == 3, said
    assert f"ledger entry 18 (rule_outcomes '{BLOCKED}/o1'): the row was changed after it was recorded" in said
    assert backend.count_rows()["runs"] == 2


def test_gate__stored_verdict_column_is_never_the_decision(capsys, backend, gated):
    backend.raw_sql(f"UPDATE runs SET verdict = 'pass', n_blocking = 0 WHERE run_id = '{BLOCKED}'")
    code, said = gate(capsys, backend, gated["blocked"])
    assert code == 3 and f"(runs '{BLOCKED}'): the row was changed" in said


def test_runs__a_listing_of_rows_that_do_not_verify_exits_3(capsys, backend, gated):
    code, out, err = run_cli(capsys, "runs", "--db", backend.url, "--json")
    assert code == 0 and {r["verdict"] for r in json.loads(out)} == {"pass", "blocked"}
    # the verdict column changed in place: `runs` (and `runs --decision pass`) must not list it as pass
    backend.raw_sql(f"UPDATE runs SET verdict = 'pass', n_blocking = 0 WHERE run_id = '{BLOCKED}'")
    for options in ((), ("--decision", "pass")):
        code, out, err = run_cli(capsys, "runs", "--db", backend.url, *options)
        said = one_line(out + err)
        assert code == 3 and f"(runs '{BLOCKED}'): the row was changed" in said, said


def test_gate__another_policys_sha256_written_into_a_run_exits_3(capsys, backend, gated, tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text(builtin_policy_path("default").read_text() + "\n# another policy file\n")
    other_sha = load_policy(other).sha256
    code, said = gate(capsys, backend, gated["passed"], "--policy", str(other))
    assert code == 1 and "never under policy" in said
    backend.raw_sql(f"UPDATE runs SET policy_sha256 = '{other_sha}' WHERE run_id = '{PASSED}'")
    code, said = gate(capsys, backend, gated["passed"], "--policy", str(other))
    assert code == 3 and f"ledger entry {RECORDS_PER_RUN + 1} (runs '{PASSED}'): the row was changed" in said


def corrupt_model_index(db, run_id: str, lie: str) -> None:
    """Make ix_runs_model_sha256 map ``lie`` to the row of ``run_id`` while the row keeps its own
    model_sha256: build the index with the lie in the row, hide the index from SQLite (its
    schema says another column) while the row gets its value back, then show it again."""
    (truth,), = sqlite3.connect(db).execute(f"SELECT model_sha256 FROM runs WHERE run_id = '{run_id}'").fetchall()
    real = "CREATE INDEX ix_runs_model_sha256 ON runs (model_sha256)"
    steps = [
        ["DROP INDEX ix_runs_model_sha256", f"UPDATE runs SET model_sha256 = '{lie}' WHERE run_id = '{run_id}'", real],
        ["PRAGMA writable_schema = ON", "UPDATE sqlite_master SET sql = 'CREATE INDEX ix_runs_model_sha256 ON runs "
         "(run_id)' WHERE name = 'ix_runs_model_sha256'"],
        [f"UPDATE runs SET model_sha256 = '{truth}' WHERE run_id = '{run_id}'"],
        ["PRAGMA writable_schema = ON", f"UPDATE sqlite_master SET sql = '{real}' WHERE name = 'ix_runs_model_sha256'"],
    ]
    for statements in steps:  # one connection per step: each must read the schema afresh
        conn = sqlite3.connect(db)
        for statement in statements:
            conn.execute(statement)
        conn.commit()
        conn.close()


def test_gate__index_that_points_an_unaudited_model_at_an_audited_run_exits_3(capsys, backend, tmp_path):
    if backend.sqlite_file is None:
        pytest.skip("rewriting an index's b-tree behind the table is a SQLite case")
    db = backend.sqlite_file
    gated_runs = save_gated(backend, tmp_path)
    code, said = gate(capsys, backend, gated_runs["unaudited"])
    assert code == 1 and "no audit of a model" in said
    corrupt_model_index(db, PASSED, sha256_file(gated_runs["unaudited"]))
    problems = sqlite3.connect(db).execute("PRAGMA integrity_check").fetchall()
    assert ("row 2 missing from index ix_runs_model_sha256",) in problems
    assert sqlite3.connect(db).execute(
        f"SELECT run_id FROM runs WHERE model_sha256 = '{sha256_file(gated_runs['unaudited'])}'").fetchall() == [(PASSED,)]

    code, said = gate(capsys, backend, gated_runs["unaudited"])
    assert code == 3, said
    assert "the index ix_runs_model_sha256 (on runs.model_sha256)" in said and "is damaged" in said
    assert f"it lists run '{PASSED}'" in said
    code, said = gate(capsys, backend, gated_runs["passed"])  # the row itself is still its own model's
    assert code == 3 and f"it leaves out run '{PASSED}'" in said
    for argv in (["verify"], ["verify", "--expect-head", f"0:{'0' * 64}"]):
        code, out, err = run_cli(capsys, *argv, "--db", backend.url)
        assert code == 3 and "missing from index ix_runs_model_sha256" in one_line(err)
    assert not AuditStore(backend.url, read_only=True).verify().ok  # what `attest verify --db` asks
    assert backend.count_rows()["runs"] == 2


@pytest.mark.parametrize("argv", [
    ["show", PASSED], ["report", PASSED], ["export", PASSED, "--out", "{tmp}/x.zip"], ["diff", PASSED, BLOCKED],
    ["waive", "--run", BLOCKED, "--rule", "fairness-equalized-odds", "--approver", "a", "--reason", "b",
     "--expires", "2999-01-01"],
    ["attest-rmf", "--run", PASSED, "--subcategory", "GOVERN 1.1", "--by", "a", "--statement", "s"],
])
def test_commands_that_rely_on_a_run__changed_row_exits_3_and_write_nothing(capsys, backend, gated, tmp_path, argv):
    backend.raw_sql(f"UPDATE measurements SET value_json = '0.5' WHERE id = '{PASSED}/m8'")
    before = backend.count_rows()
    report_dir = gated["runs"][PASSED][0].out_dir
    code, out, err = run_cli(capsys, *[a.replace("{tmp}", str(tmp_path)) for a in argv], "--db", backend.url)
    assert code == 3, (out, err)
    assert f"ledger entry {RECORDS_PER_RUN + 13} (measurements '{PASSED}/m8'): the row was changed" in one_line(err)
    assert backend.count_rows() == before
    assert not (tmp_path / "x.zip").exists() and not (tmp_path / "out").exists(), report_dir


def test_verify__0_byte_file_is_not_a_store_and_stays_0_bytes(capsys, tmp_path):
    db = tmp_path / "audit.db"
    db.write_bytes(b"")
    for argv in (["verify"], ["runs"], ["show", PASSED]):
        code, _, err = run_cli(capsys, *argv, "--db", f"sqlite:///{db}")
        assert code == 3 and "is not a govssl audit store: it holds no tables" in one_line(err)
    assert db.read_bytes() == b"" and sorted(p.name for p in tmp_path.iterdir()) == ["audit.db"]


def test_verify__empty_genuine_store_is_ok(capsys, backend):
    AuditStore(backend.url).close()
    code, out, _ = run_cli(capsys, "verify", "--db", backend.url)
    assert code == 0 and "ok: 0 ledger entries verified" in one_line(out)


@pytest.mark.parametrize("how", ["every table", "all but the chain head"])
def test_verify__emptied_store_exits_3(capsys, backend, gated, how):
    tables = ["attestations", "artifacts", "rule_outcomes", "measurements", "check_results", "waivers", "runs",
              "ledger"] + (["chain_head"] if how == "every table" else [])
    backend.raw_sql(*(f"DELETE FROM {table}" for table in tables))
    code, _, err = run_cli(capsys, "verify", "--db", backend.url)
    expected = ("is damaged: its chain head (table chain_head) is empty" if how == "every table"
                else "the ledger ends at entry 0 but the chain head records entry")
    assert code == 3 and expected in one_line(err)
    code, said = gate(capsys, backend, gated["passed"])
    assert code == 3 and expected in said


@pytest.mark.parametrize("damage", ["half the file", "one byte flipped mid-file"])
def test_verify__damaged_file_exits_3(capsys, gated, backend, damage):
    if backend.sqlite_file is None:
        pytest.skip("a damaged database file is a SQLite case")
    sqlite3.connect(backend.sqlite_file).execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    data = bytearray(backend.sqlite_file.read_bytes())
    if damage == "half the file":
        data = data[: len(data) // 2]
    else:  # in the cell content at the end of the middle page (free space inside a page holds nothing)
        page = int.from_bytes(data[16:18], "big")
        data[(len(data) // 2 // page + 1) * page - 8] ^= 0xFF
    backend.sqlite_file.write_bytes(bytes(data))
    for argv in (["verify"], ["show", PASSED]):
        code, out, err = run_cli(capsys, *argv, "--db", backend.url)
        said = one_line(err)
        assert code == 3, (out, err)
        assert "damaged" in said or "does not verify" in said


def foreign_sqlite(tmp_path):
    db = tmp_path / "other-app.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO accounts (name) VALUES ('ada')")
    conn.commit()
    conn.close()
    return db


FOREIGN_COMMANDS = [
    ["runs"], ["verify"], ["show", PASSED], ["diff", PASSED, BLOCKED], ["report", PASSED],
    ["export", PASSED, "--out", "{tmp}/x.zip"], ["gate", "--model", "{tmp}/other-app.db"],
    ["waive", "--run", BLOCKED, "--rule", "r", "--approver", "a", "--reason", "b", "--expires", "2999-01-01"],
    ["attest-rmf", "--run", PASSED, "--subcategory", "GOVERN 1.1", "--by", "a", "--statement", "s"],
]


@pytest.mark.parametrize("argv", FOREIGN_COMMANDS, ids=[argv[0] for argv in FOREIGN_COMMANDS])
def test_foreign_sqlite_database__exit_3_and_byte_for_byte_unchanged(capsys, tmp_path, argv):
    db = foreign_sqlite(tmp_path)
    before = file_sha(db)
    code, out, err = run_cli(capsys, *[a.replace("{tmp}", str(tmp_path)) for a in argv], "--db", f"sqlite:///{db}")
    assert code == 3, (out, err)
    assert "is not a govssl audit store: it holds other tables and none of govssl's" in one_line(err)
    assert file_sha(db) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other-app.db"]  # no -wal, -shm, zip or folder
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone() == ("delete",)


def test_foreign_postgresql_schema__read_only_commands_exit_3_and_create_nothing(capsys, backend):
    if backend.server is None:
        pytest.skip("the PostgreSQL half of the foreign-database case")
    backend.raw_sql("CREATE TABLE accounts (id integer PRIMARY KEY, name text)")
    for argv in (["runs"], ["verify"], ["show", PASSED]):
        code, _, err = run_cli(capsys, *argv, "--db", backend.url)
        assert code == 3 and "is not a govssl audit store" in one_line(err)
    tables = backend.query(f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{backend.schema}'")
    assert tables == [("accounts",)]


def test_wal_store__read_only_commands_read_it_and_it_stays_in_wal(capsys, gated, backend):
    if backend.sqlite_file is None:
        pytest.skip("WAL is a SQLite case")
    assert sqlite3.connect(backend.sqlite_file).execute("PRAGMA journal_mode").fetchone() == ("wal",)
    for argv in (["runs"], ["verify"], ["show", PASSED], ["diff", PASSED, BLOCKED]):
        code, out, err = run_cli(capsys, *argv, "--db", backend.url)
        assert code == 0, (out, err)
    code, said = gate(capsys, backend, gated["passed"])
    assert code == 0 and PASSED in said
    assert sqlite3.connect(backend.sqlite_file).execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_read_only_commands__open_sqlite_read_only(gated, backend):
    if backend.sqlite_file is None:
        pytest.skip("a SQLite case")
    store = AuditStore(backend.url, read_only=True)
    assert store.read_runs([PASSED])[0][0].run_id == PASSED
    waiver = Waiver(waiver_id="w", rule_id="r", approver="a", reason="b", expires="2999-01-01",
                    created_at="2024-05-04T09:00:00+00:00", run_id=PASSED)
    with pytest.raises(StoreError, match="was opened read-only"):
        store.add_waiver(waiver)
    with pytest.raises(StoreError, match="readonly database"), store._reading() as conn:
        conn.exec_driver_sql("CREATE TABLE sneaked_in (a integer)")
    assert backend.count_rows()["waivers"] == 0


ZIPSLIP = "../../../../x/ZIPSLIP"


@pytest.mark.parametrize("argv", [["export", ZIPSLIP, "--out", "{tmp}/x.zip"], ["report", ZIPSLIP], ["show", ZIPSLIP]])
def test_run_id_that_climbs_out_exits_3_and_writes_nothing(capsys, backend, tmp_path, argv):
    work = tmp_path / "deep" / "er" / "still" / "work"
    work.mkdir(parents=True)
    run = make_run(work, ZIPSLIP.replace("/", "_"), non_finite=False)
    run.run_id, run.out_dir = ZIPSLIP, str(work / "out" / ZIPSLIP)
    AuditStore(backend.url).save(run)
    listing = sorted(str(p) for p in tmp_path.rglob("*"))
    code, out, err = run_cli(capsys, *[a.replace("{tmp}", str(tmp_path)) for a in argv], "--db", backend.url)
    assert code == 3, (out, err)
    assert f"run id '{ZIPSLIP}' read from" in one_line(err) and "is not a run id govssl makes" in one_line(err)
    assert sorted(str(p) for p in tmp_path.rglob("*")) == listing


def test_report__run_folder_elsewhere_exits_3_and_writes_nothing(capsys, backend, tmp_path):
    run = make_run(tmp_path, PASSED, non_finite=False)
    run.out_dir = str(tmp_path / "out" / PASSED / ".." / ".." / "elsewhere")
    AuditStore(backend.url).save(run)
    code, _, err = run_cli(capsys, "report", PASSED, "--db", backend.url)
    assert code == 3 and "its folder" in one_line(err) and "is not a folder named after the run" in one_line(err)
    assert not (tmp_path / "elsewhere").exists() and not (tmp_path / "out").exists()


def test_export__existing_out_needs_force(capsys, backend, gated, tmp_path):
    target = tmp_path / "keep.zip"
    target.write_bytes(b"someone's file")
    code, _, err = run_cli(capsys, "export", PASSED, "--out", str(target), "--db", backend.url)
    assert code == 2 and str(target) in one_line(err) and "--force" in err
    assert target.read_bytes() == b"someone's file"
    code, out, _ = run_cli(capsys, "export", PASSED, "--out", str(target), "--force", "--db", backend.url)
    assert code == 0 and target.read_bytes()[:2] == b"PK"


def test_old_schema__read_only_commands_ask_for_the_upgrade_and_change_nothing(capsys, backend, tmp_path):
    from sqlalchemy import create_engine

    from govssl.store import _codec, _ledger, _migrate

    old = dataclasses.replace(make_run(tmp_path, PASSED, non_finite=False), attestations=[])
    rows = _codec.run_to_rows(old)
    del rows["attestations"]  # the first revision had no attestations table
    engine = create_engine(backend.url)
    with engine.begin() as conn:
        _migrate.upgrade(conn, _migrate.FIRST_REVISION)
        _ledger.ensure_head(conn)
        _ledger.append(conn, rows)
    engine.dispose()
    for argv in (["verify"], ["show", PASSED], ["runs"]):
        code, _, err = run_cli(capsys, *argv, "--db", backend.url)
        assert code == 2 and "has schema revision 0001" in one_line(err) and "upgrades it first" in one_line(err)
    assert backend.query("SELECT version_num FROM alembic_version") == [("0001",)]
    code, _, _ = run_cli(capsys, "attest-rmf", "--run", PASSED, "--subcategory", "GOVERN 1.1", "--by", "Dana",
                         "--statement", "reviewed", "--db", backend.url)
    assert code == 0
    assert backend.query("SELECT version_num FROM alembic_version") == [(_migrate.head_revision(),)]
    code, out, _ = run_cli(capsys, "verify", "--db", backend.url)
    assert code == 0 and f"ok: {RECORDS_PER_RUN - 2 + 1} ledger entries verified" in one_line(out)
