"""AuditStore.snapshot: every run and waiver from one verified walk of the chain, on SQLite and
PostgreSQL; a store that does not verify gives the report and nothing else."""

from __future__ import annotations

import pytest

from govssl.errors import StoreError
from govssl.records import Waiver
from govssl.store import AuditStore
from tests.store.test_store import assert_same, make_run

OLD, NEW = "20240501T120000Z-aaaaaa", "20240502T120000Z-bbbbbb"


def test_snapshot__every_run_newest_first_as_read_runs_gives_it(backend, tmp_path):
    store = AuditStore(backend.url)
    store.save(make_run(tmp_path, OLD))
    store.save(make_run(tmp_path, NEW, created_at="2024-05-02T12:00:00+00:00"))
    store.add_waiver(Waiver("w1", "fairness-equalized-odds", "Dana", "pilot", "2099-12-31", "", run_id=NEW))
    reader = AuditStore(backend.url, read_only=True)
    snapshot = reader.snapshot()
    assert snapshot.report.ok and snapshot.report.head_seq == reader.head().seq
    assert [row["run_id"] for row in snapshot.runs] == [NEW, OLD]
    assert [w.waiver_id for w in snapshot.waivers] == ["w1"]
    (expected,), _ = reader.read_runs([NEW])
    assert_same(snapshot.run(NEW), expected)
    with pytest.raises(StoreError, match="no run '20240503T120000Z-cccccc'"):
        snapshot.run("20240503T120000Z-cccccc")


def test_snapshot__a_changed_row_gives_the_problem_and_no_run(backend, tmp_path):
    store = AuditStore(backend.url)
    store.save(make_run(tmp_path, OLD))
    backend.raw_sql("UPDATE rule_outcomes SET status = 'pass' WHERE rule_id = 'fairness-equalized-odds'")
    snapshot = AuditStore(backend.url, read_only=True).snapshot()
    assert not snapshot.report.ok and "rule_outcomes" in snapshot.report.first_problem
    assert snapshot.runs == [] and snapshot.waivers == []
