"""The store as a team shares it: waivers, later attestations, queries, migrations, many writers
at once and writers killed half-way; each test on SQLite and on PostgreSQL."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
from datetime import datetime, timezone

import pytest
from sqlalchemy import create_engine, text

from govssl.errors import StoreError
from govssl.policy.model import RuleOutcome
from govssl.records import Attestation, Waiver
from govssl.store import AuditStore
from govssl.store import _codec, _ledger, _migrate
from .test_store import RECORDS_PER_RUN, make_run, verified


@pytest.fixture
def store(backend):
    opened = AuditStore(backend.url)
    yield opened
    opened.close()


def waiver(**changes) -> Waiver:
    base = Waiver(
        waiver_id="w1", rule_id="fairness-equalized-odds", approver="Ada Lead",
        reason="Known gap; retraining with more data in Q3.", expires="2024-06-30",
        created_at="2024-05-02T10:00:00+00:00", run_id="r1",
    )
    return dataclasses.replace(base, **changes)


def test_add_waiver__stored_ledgered_and_filtered(store, backend, tmp_path):
    store.save(make_run(tmp_path, "r1"))
    assert store.add_waiver(waiver()) == "w1"
    store.add_waiver(waiver(waiver_id="w2", run_id=None, model_sha256="cd" * 32, expires="2024-05-31"))
    store.add_waiver(waiver(waiver_id="w3", rule_id="performance-accuracy", run_id="other"))
    assert store.verify() == verified(backend, RECORDS_PER_RUN + 3)
    assert [w.waiver_id for w in store.waivers()] == ["w1", "w2", "w3"]
    assert store.waivers(rule_id="performance-accuracy") == [waiver(waiver_id="w3", rule_id="performance-accuracy", run_id="other")]
    assert [w.waiver_id for w in store.waivers(run_id="r1")] == ["w1"]
    assert [w.waiver_id for w in store.waivers(model_sha256="cd" * 32)] == ["w2"]
    applying = store.waivers(rule_id="fairness-equalized-odds", run_id="r1", model_sha256="cd" * 32)
    assert [w.waiver_id for w in applying] == ["w1", "w2"]
    june = datetime(2024, 6, 1, 8, tzinfo=timezone.utc)
    assert [w.waiver_id for w in store.waivers(run_id="r1", model_sha256="cd" * 32, active_at=june)] == ["w1"]
    last_day = datetime(2024, 6, 30, 23, 59)
    assert [w.waiver_id for w in store.waivers(active_at=last_day)] == ["w1", "w3"]


def test_add_waiver__made_up_id_and_time(store):
    waiver_id = store.add_waiver(waiver(waiver_id="", created_at=""))
    (stored,) = store.waivers()
    assert stored.waiver_id == waiver_id and waiver_id.startswith("waiver-")
    assert datetime.fromisoformat(stored.created_at).tzinfo is not None


@pytest.mark.parametrize(
    "changes, problem",
    [
        ({"rule_id": ""}, "rule_id is empty"),
        ({"run_id": None}, "it names neither a run_id nor a model_sha256"),
        ({"expires": "next week"}, "expires must be an ISO date"),
        ({"approver": ""}, "approver is empty"),
    ],
)
def test_add_waiver__invalid_waiver_names_the_problem(store, backend, changes, problem):
    with pytest.raises(StoreError, match=f"waiver 'w1': {problem}"):
        store.add_waiver(waiver(**changes))
    assert backend.count_rows()["ledger"] == 0


def test_add_waiver__duplicate_id_changes_nothing(store, backend):
    store.add_waiver(waiver())
    with pytest.raises(StoreError, match="waiver 'w1' is already in"):
        store.add_waiver(waiver(reason="again"))
    assert store.waivers() == [waiver()] and store.verify().ok


def test_verify__detects_changed_waiver(store, backend):
    store.add_waiver(waiver())
    store.add_waiver(waiver(waiver_id="w2"))
    backend.raw_sql("UPDATE waivers SET expires = '2099-12-31' WHERE waiver_id = 'w1'")
    assert store.verify().first_problem == _ledger.CHANGED.format(seq=1, table="waivers", record_id="w1")


def test_add_attestations__after_the_run_come_back_with_it(store, backend, tmp_path):
    run = make_run(tmp_path, "r1")
    store.save(run)
    later = [Attestation("MANAGE 1.1", "Release Board", "2024-05-10", "Go decision minuted.")]
    store.add_attestations("r1", later)
    store.add_attestations("r1", [Attestation("GOVERN 1.6", "Ops", "2024-05-11", "Inventoried.")])
    loaded = store.load_run("r1")
    assert loaded.attestations == [*run.attestations, *later,
                                   Attestation("GOVERN 1.6", "Ops", "2024-05-11", "Inventoried.")]
    assert store.verify() == verified(backend, RECORDS_PER_RUN + 2)
    added = backend.query("SELECT position, added_at FROM attestations ORDER BY position")
    assert [p for p, _ in added] == [0, 1, 2, 3] and added[0][1] == "" and added[2][1] != ""


def test_add_attestations__unknown_run_or_bad_record(store, backend, tmp_path):
    store.save(make_run(tmp_path, "r1"))
    before = backend.count_rows()
    with pytest.raises(StoreError, match="no run 'r2' in"):
        store.add_attestations("r2", [Attestation("MAP 1.1", "x", "2024-05-01", "y")])
    with pytest.raises(StoreError, match="attestation 2 is a dict, not an Attestation"):
        store.add_attestations("r1", [{"subcategory": "MAP 1.1"}])
    assert backend.count_rows() == before


def test_find_runs__each_filter(store, tmp_path):
    first = make_run(tmp_path, "r1", "2024-05-01T09:00:00+00:00")
    second = make_run(tmp_path, "r2", "2024-05-02T09:00:00+00:00")
    second.training = dataclasses.replace(second.training, model_sha256="aa" * 32)
    # one passing rule: passes (a decision with no rules is blocked: nothing was evaluated)
    second.decision = type(second.decision)((RuleOutcome("auc", "performance", "roc_auc", "block", "pass", 0.9, "",
                                                         ">= 0.7", "worst roc_auc 0.9 within >= 0.7"),))
    third = make_run(tmp_path, "r3", "2024-05-03T09:00:00+00:00")
    third.plan_name, third.policy_sha256 = "german-credit", "34" * 32
    for run in (first, second, third):
        store.save(run)

    def ids(**filters):
        return [r["run_id"] for r in store.find_runs(**filters)]

    assert ids() == ["r3", "r2", "r1"] and store.find_runs() == store.list_runs()
    assert ids(model_sha256="aa" * 32) == ["r2"]
    assert ids(verdict="pass") == ["r2"] and ids(verdict="blocked") == ["r3", "r1"]
    assert ids(policy_sha256="34" * 32) == ["r3"]
    assert ids(plan_name="adult-income") == ["r2", "r1"]
    assert ids(since=datetime(2024, 5, 2, 9)) == ["r3", "r2"]
    assert ids(since=datetime(2024, 5, 2, 11, tzinfo=timezone.utc)) == ["r3"]
    assert ids(verdict="blocked", plan_name="adult-income", limit=1) == ["r1"]
    with pytest.raises(StoreError, match="since must be a datetime"):
        store.find_runs(since="2024-05-01")


def test_verify__detects_artifact_file_changed_on_disk(store, backend, tmp_path):
    run = make_run(tmp_path, "r1")
    store.save(run)
    assert store.verify(check_files=True) == verified(backend, RECORDS_PER_RUN, files_checked=2)
    card = run.artifacts[1]
    with open(card.path, "a", encoding="utf-8") as fh:
        fh.write("one more line\n")
    report = store.verify(check_files=True)
    assert not report.ok
    seq = 1 + 3 + 12 + 3 + 2
    assert report.first_problem.startswith(
        f"ledger entry {seq} (artifacts 'r1/a1'): the file {card.path} changed on disk: its sha256 is "
    )
    assert report.first_problem.endswith(f"the store records {card.sha256}")
    assert store.verify().ok  # the database itself is intact


def test_verify__artifact_files_of_another_machine_are_counted_not_failed(store, backend, tmp_path):
    run = make_run(tmp_path, "r1")
    store.save(run)
    os.remove(run.artifacts[0].path)
    assert store.verify(check_files=True) == verified(backend, RECORDS_PER_RUN, files_checked=1, files_missing=1)


def _old_rows(run) -> dict:
    """The rows govssl wrote before attestations had a table (the first revision's schema)."""
    rows = _codec.run_to_rows(run)
    del rows["attestations"]
    return rows


@pytest.mark.parametrize("stamped", [True, False], ids=["alembic-0001", "before-alembic"])
def test_migrations__store_of_the_first_revision_opens_upgraded_and_verifies(backend, tmp_path, stamped):
    old = dataclasses.replace(make_run(tmp_path, "old", non_finite=False), attestations=[])
    engine = create_engine(backend.url)
    with engine.begin() as conn:
        _migrate.upgrade(conn, _migrate.FIRST_REVISION)
        assert _migrate.current_revision(conn) == "0001"
        _ledger.ensure_head(conn)
        _ledger.append(conn, _old_rows(old))
        if not stamped:
            conn.execute(text("DROP TABLE alembic_version"))
    engine.dispose()

    store = AuditStore(backend.url)
    assert store.verify() == verified(backend, RECORDS_PER_RUN - 2)
    assert store.load_run("old").to_dict() == old.to_dict()
    new = make_run(tmp_path, "new", non_finite=False)
    store.save(new)
    store.add_waiver(waiver(run_id="new"))
    assert store.verify() == verified(backend, 2 * RECORDS_PER_RUN - 2 + 1)
    assert store.load_run("new").to_dict() == new.to_dict()
    assert backend.query("SELECT version_num FROM alembic_version") == [(_migrate.head_revision(),)]
    store.close()


def _write_runs(url: str, worker: int, n_runs: int, tmp_path) -> list[str]:
    store = AuditStore(url)
    saved = [store.save(make_run(tmp_path, f"w{worker}-r{i}")) for i in range(n_runs)]
    store.close()
    return saved


def test_save__8_processes_x_5_runs_lose_nothing(backend, tmp_path):
    """Every writer opens the store itself (the first opens also race to create the schema)."""
    with multiprocessing.get_context("fork").Pool(8) as pool:
        saved = pool.starmap(_write_runs, [(backend.url, w, 5, tmp_path) for w in range(8)])
    assert sorted(run_id for ids in saved for run_id in ids) == sorted(
        f"w{w}-r{i}" for w in range(8) for i in range(5)
    )
    store = AuditStore(backend.url)
    assert len(store.list_runs()) == 40
    assert store.verify() == verified(backend, 40 * RECORDS_PER_RUN)
    assert backend.count_rows()["measurements"] == 40 * 12
    store.close()


def _save_then_hang(url: str, run, ready) -> None:
    """Save a run, but stop inside the transaction after every row and entry is written."""
    real_append = _ledger.append

    def append_and_hang(conn, rows_by_table):
        appended = real_append(conn, rows_by_table)
        ready.set()
        signal.pause()  # the parent kills us here, before COMMIT
        return appended

    _ledger.append = append_and_hang
    AuditStore(url).save(run)


def test_save__sigkill_half_way_leaves_no_partial_run(backend, tmp_path):
    store = AuditStore(backend.url)
    store.save(make_run(tmp_path, "before"))
    store.close()
    before = backend.count_rows()
    context = multiprocessing.get_context("fork")
    ready = context.Event()
    child = context.Process(target=_save_then_hang, args=(backend.url, make_run(tmp_path, "killed"), ready))
    child.start()
    assert ready.wait(60), "the writer never reached the middle of its transaction"
    os.kill(child.pid, signal.SIGKILL)
    child.join(30)
    assert child.exitcode == -signal.SIGKILL

    store = AuditStore(backend.url)
    assert backend.count_rows() == before
    assert [r["run_id"] for r in store.list_runs()] == ["before"]
    assert store.verify() == verified(backend, RECORDS_PER_RUN)
    store.save(make_run(tmp_path, "after"))  # the killed writer's lock is gone
    assert store.verify() == verified(backend, 2 * RECORDS_PER_RUN)
    store.close()
