"""Tests of the audit store: exact round trips, lookups, atomic saves and the hash chain."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import multiprocessing
import re
import sqlite3
import struct

import pytest

from govssl.checks.base import CheckResult, Measurement
from govssl.errors import IntegrityError, StoreError
from govssl.policy.model import Decision, RuleOutcome
from govssl.records import Artifact, Attestation, AuditRun, DatasetSummary, TrainRecord
from govssl.store import AuditStore, VerifyReport, default_url
from govssl.store import _ledger, _store

RECORDS_PER_RUN = 1 + 3 + 12 + 3 + 2 + 2  # run, checks, measurements, outcomes, artifacts, attestations


def make_run(tmp_path, run_id="20240501T120000-a1b2c3", created_at="2024-05-01T12:00:00+00:00",
             non_finite=True) -> AuditRun:
    """A realistic run: 2 measured checks, 1 errored check, a pass/fail decision, 2 real files."""
    nan = float("nan") if non_finite else 0.25
    inf = float("inf") if non_finite else 7.5
    performance = CheckResult(
        check="performance",
        status="measured",
        measurements=(
            Measurement("performance", "accuracy", 0.8512345678901234, "", 0.8401, 0.8619, 9769,
                        {"method": "bootstrap", "resamples": 1000}),
            Measurement("performance", "balanced_accuracy", 0.7712, n=9769),
            Measurement("performance", "roc_auc", 0.1 + 0.2, ci_low=None, ci_high=0.95),
            Measurement("performance", "calibrated", True),
            Measurement("performance", "threshold_source", "validation split"),
            Measurement("performance", "n_classes", 2),
            Measurement("performance", "log_loss", inf, details={"note": "a probability of 0"}),
            Measurement("performance", "brier_delta", -0.0),
        ),
        seconds=1.234567,
    )
    fairness = CheckResult(
        check="fairness",
        status="measured",
        measurements=(
            Measurement("fairness", "equalized_odds_difference", 0.0734, "sex", 0.041, 0.112, 9769,
                        {"groups": {"Female": 3231, "Male": 6538}, "worst": ["Female", "Male"]}),
            Measurement("fairness", "demographic_parity_ratio", nan, "sex*race", None, None, 12,
                        {"reason": "a group has no positives", "ratio_bounds": [nan, 1.0]}),
            Measurement("fairness", "equalized_odds_difference", "0.0734", "race"),
            Measurement("fairness", "selection_rate", 1e-300, "sex=Female",
                        5e-324, 1.7976931348623157e308),
        ),
        seconds=3.5,
    )
    robustness = CheckResult(
        check="robustness", status="errored", reason="RuntimeError: ART attack failed", seconds=0.25
    )
    outcomes = (
        RuleOutcome("performance-accuracy", "performance", "accuracy", "block", "pass", 0.8401, "",
                    ">= 0.8 (ci_low)", "accuracy 0.840 >= 0.8", ("MEASURE 2.5",)),
        RuleOutcome("fairness-equalized-odds", "fairness", "equalized_odds_difference", "block",
                    "fail", 0.112, "sex", "<= 0.1 (ci_high)", "0.112 > 0.1 for sex",
                    ("MEASURE 2.11", "MAP 2.3")),
        RuleOutcome("robustness-pgd", "robustness", "accuracy_under_attack", "warn", "missing",
                    None, "", ">= 0.5", "check errored: RuntimeError: ART attack failed"),
    )
    model = tmp_path / f"{run_id}-model.safetensors"
    card = tmp_path / f"{run_id}-model_card.md"
    model.write_bytes(b"\x00\x01weights" * 100)
    card.write_text("# Model card\n\nNon-ASCII: équité, 公平\n", encoding="utf-8")
    dataset = DatasetSummary(
        name="adult", source="UCI", license="CC BY 4.0", citation="Becker & Kohavi (1996)",
        target="income", positive_label=">50K", sensitive=("sex", "race"),
        numeric_features=("age", "hours-per-week"), categorical_features=("workclass",),
        n_train=32561, n_test=16281, positive_rate_train=0.2408, positive_rate_test=0.2362,
        files=({"path": "adult.data.gz", "sha256": "ab" * 32, "size": 1000},),
        missing={"workclass": 1836},
    )
    training = TrainRecord(
        method="scarf", finetune_mode="linear_probe", label_fraction=0.1, n_pretrain_rows=32561,
        n_labelled_rows=3256, pretrain_epochs=5, finetune_epochs=10, dp_scope="head",
        end_to_end_dp=False, dp={"epsilon": 3.0, "delta": 1e-5, "accountant": "prv"},
        model_path=str(model), model_sha256="cd" * 32, architecture="mlp(256,256)",
        n_parameters=135426, seed=7, seconds=42.125,
        history={"pretrain_loss": [1.5, 1.2, nan], "finetune_accuracy": [0.7, 0.84]},
    )
    return AuditRun(
        run_id=run_id, created_at=created_at, govssl_version="0.1.0", plan_name="adult-income",
        plan_path="/audits/adult-income.yaml", plan_sha256="ef" * 32,
        plan={"dataset": {"name": "adult"}, "checks": [{"name": "fairness", "bootstrap": 1000}]},
        policy_name="default", policy_version=1, policy_path="/policies/default.yaml",
        policy_sha256="12" * 32, dataset=dataset, training=training,
        results=[performance, fairness, robustness], decision=Decision(outcomes),
        out_dir=str(tmp_path / "out" / run_id),
        artifacts=[Artifact.of("model", model), Artifact.of("model_card", card)],
        attestations=[
            Attestation("GOVERN 1.1", "Dana Reviewer", "2024-05-01", "Legal review done; ticket 42."),
            Attestation("MAP 1.1", "Kim Ø. Owner", "2024-05-02", "Context of use documented."),
        ],
        seconds=61.5,
    )


def assert_same(actual, expected, where="run"):
    """Deep equality that is stricter than ==: same types, floats bit for bit (NaN included)."""
    assert type(actual) is type(expected), f"{where}: {type(actual)} != {type(expected)}"
    if dataclasses.is_dataclass(expected):
        for f in dataclasses.fields(expected):
            assert_same(getattr(actual, f.name), getattr(expected, f.name), f"{where}.{f.name}")
    elif isinstance(expected, dict):
        assert list(actual) == list(expected), f"{where}: keys differ"
        for key in expected:
            assert_same(actual[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), f"{where}: lengths differ"
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_same(a, e, f"{where}[{i}]")
    elif isinstance(expected, float):
        bits = struct.pack(">d", actual), struct.pack(">d", expected)
        assert bits[0] == bits[1], f"{where}: {actual} != {expected}"
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


def verified(backend, entries: int, **files) -> VerifyReport:
    """The report of a chain that holds with ``entries`` entries: its head is the last entry,
    whose hash is read from the ledger table directly."""
    rows = backend.query(f"SELECT entry_hash FROM ledger WHERE seq = {entries}")
    head_hash = rows[0][0] if entries else "0" * 64
    return VerifyReport(ok=True, entries=entries, head_seq=entries, head_hash=head_hash, **files)


@pytest.fixture
def store(backend):
    opened = AuditStore(backend.url)
    yield opened
    opened.close()


def test_audit_store__round_trip_to_dict_is_exact(store, tmp_path):
    run = make_run(tmp_path, non_finite=False)
    assert store.save(run) == run.run_id
    assert store.load_run(run.run_id).to_dict() == run.to_dict()


def test_audit_store__round_trip_keeps_types_bits_and_non_finite_floats(store, tmp_path):
    run = make_run(tmp_path)
    store.save(run)
    loaded = store.load_run(run.run_id)
    assert_same(loaded, run)
    values = [m.value for m in loaded.measurements]
    assert [type(v) for v in values[3:6]] == [bool, str, int]
    assert math.isnan(values[9]) and values[6] == math.inf
    assert math.copysign(1.0, values[7]) == -1.0


def test_audit_store__round_trip_keeps_checks_without_measurements(store, tmp_path):
    run = make_run(tmp_path)
    store.save(run)
    errored = store.load_run(run.run_id).results[2]
    expected = CheckResult("robustness", "errored", (), "RuntimeError: ART attack failed", 0.25)
    assert errored == expected


def test_audit_store__round_trip_of_an_empty_run(store, tmp_path):
    run = dataclasses.replace(make_run(tmp_path), results=[], decision=Decision(()), artifacts=[])
    store.save(run)
    assert_same(store.load_run(run.run_id), run)


def test_audit_store__numpy_values_come_back_as_python_values(store, tmp_path):
    np = pytest.importorskip("numpy")
    run = make_run(tmp_path, non_finite=False)
    measurements = (
        Measurement("performance", "accuracy", np.float64(0.85), ci_low=np.float32(0.5)),
        Measurement("performance", "calibrated", np.bool_(True), n=np.int64(12)),
        Measurement("performance", "confusion", "see details",
                    details={"matrix": np.array([[5, 1], [2, 7]]), "nan": np.float32("nan")}),
    )
    run.results[0] = dataclasses.replace(run.results[0], measurements=measurements)
    store.save(run)
    loaded = store.load_run(run.run_id).results[0].measurements
    assert_same(
        [(m.value, m.ci_low, m.n) for m in loaded],
        [(0.85, 0.5, None), (True, None, 12), ("see details", None, None)],
    )
    assert loaded[2].details["matrix"] == [[5, 1], [2, 7]]
    assert math.isnan(loaded[2].details["nan"])


def test_list_runs__newest_first_with_headline_fields(store, tmp_path):
    store.save(make_run(tmp_path, "run-b", "2024-05-02T09:00:00+00:00"))
    store.save(make_run(tmp_path, "run-a", "2024-05-01T09:00:00+00:00"))
    store.save(make_run(tmp_path, "run-c", "2024-05-03T09:00:00+00:00"))
    runs = store.list_runs()
    assert [r["run_id"] for r in runs] == ["run-c", "run-b", "run-a"]
    assert runs[0] == {
        "run_id": "run-c",
        "created_at": "2024-05-03T09:00:00+00:00",
        "plan_name": "adult-income",
        "policy_name": "default",
        "policy_sha256": "12" * 32,
        "model_sha256": "cd" * 32,
        "verdict": "blocked",
        "n_measurements": 12,
        "n_blocking": 1,
        "monitoring": {"count": 0, "last_verdict": None, "last_at": None},
    }
    assert [r["run_id"] for r in store.list_runs(limit=2)] == ["run-c", "run-b"]


def test_list_runs__same_created_at_newest_saved_first(store, tmp_path):
    for run_id in ("first", "second"):
        store.save(make_run(tmp_path, run_id, "2024-05-01T09:00:00+00:00"))
    assert [r["run_id"] for r in store.list_runs()] == ["second", "first"]


def test_list_runs__bad_limit(store):
    with pytest.raises(StoreError, match="limit must be a positive integer"):
        store.list_runs(limit=0)


def test_load_run__unique_prefix(store, tmp_path):
    store.save(make_run(tmp_path, "a1b2c3"))
    store.save(make_run(tmp_path, "a1ffff"))
    assert store.load_run("a1b").run_id == "a1b2c3"


def test_load_run__exact_id_wins_over_longer_ids(store, tmp_path):
    store.save(make_run(tmp_path, "a1"))
    store.save(make_run(tmp_path, "a1b2"))
    assert store.load_run("a1").run_id == "a1"


def test_load_run__ambiguous_prefix_lists_candidates(store, backend, tmp_path):
    store.save(make_run(tmp_path, "a1b2c3"))
    store.save(make_run(tmp_path, "a1ffff"))
    with pytest.raises(StoreError) as error:
        store.load_run("a1")
    assert str(error.value) == _store.AMBIGUOUS_RUN.format(
        prefix="a1", count=2, url=backend.url, candidates="a1b2c3, a1ffff"
    )


@pytest.mark.parametrize("run_id", ["zzz", "", "a_", "a%"])
def test_load_run__unknown_id(store, backend, tmp_path, run_id):
    store.save(make_run(tmp_path, "abc"))
    with pytest.raises(StoreError) as error:
        store.load_run(run_id)
    assert str(error.value) == f"no run '{run_id}' in {backend.url}"


def test_save__duplicate_run_id_changes_nothing(store, backend, tmp_path):
    run = make_run(tmp_path)
    store.save(run)
    before = backend.count_rows()
    with pytest.raises(StoreError) as error:
        store.save(run)
    assert str(error.value) == _store.DUPLICATE_RUN.format(run_id=run.run_id, url=backend.url)
    assert backend.count_rows() == before
    assert store.verify().ok


def test_save__failure_half_way_leaves_no_trace(store, backend, tmp_path):
    """A measurement row already holding the id of the new run's 4th measurement: the run,
    check rows and first inserts go in, the measurement insert fails, all of it rolls back."""
    store.save(make_run(tmp_path, "earlier"))
    planted = ("INSERT INTO measurements VALUES ('later/m3', 'earlier', 0, 0, 'x', 'y', '', "
               "'1', 'null', 'null', NULL, '{}')")
    backend.raw_sql(planted)
    before = backend.count_rows()
    unique = "UNIQUE constraint failed" if backend.name == "sqlite" else "duplicate key value"
    with pytest.raises(StoreError, match=rf"cannot save run 'later' to .*{unique}"):
        store.save(make_run(tmp_path, "later"))
    assert backend.count_rows() == before
    backend.raw_sql("DELETE FROM measurements WHERE id = 'later/m3'")
    assert store.verify() == verified(backend, RECORDS_PER_RUN)
    assert [r["run_id"] for r in store.list_runs()] == ["earlier"]


def test_save__value_that_is_not_json_names_it(store, backend, tmp_path):
    run = make_run(tmp_path)
    bad = dataclasses.replace(run.results[0].measurements[0], details={"groups": {1, 2}})
    run.results[0] = dataclasses.replace(run.results[0], measurements=(bad,))
    expected = "measurement 0 of check 'performance' .accuracy.: details is not JSON data"
    with pytest.raises(StoreError, match=expected):
        store.save(run)
    assert backend.count_rows()["runs"] == 0


def test_save__integer_past_64_bits_names_it(store, backend, tmp_path):
    run = make_run(tmp_path)
    run.artifacts[0] = dataclasses.replace(run.artifacts[0], size=2**64)
    with pytest.raises(StoreError, match="artifacts.size does not fit in 64 bits"):
        store.save(run)
    assert backend.count_rows()["runs"] == 0


def test_verify__ok_counts_every_record(store, backend, tmp_path):
    assert store.verify() == verified(backend, 0)
    store.save(make_run(tmp_path, "one"))
    store.save(make_run(tmp_path, "two"))
    assert store.verify() == verified(backend, 2 * RECORDS_PER_RUN)


def test_ledger__entry_hash_follows_the_design_formula(store, backend, tmp_path):
    """Recompute the first entry by hand from DESIGN.md: sha256(prev_hash || canonical JSON)."""
    run = make_run(tmp_path)
    store.save(run)
    ledger_columns = ["seq", "prev_hash", "entry_hash", "record_table", "record_id", "created_at"]
    entry = dict(zip(ledger_columns, backend.query(
        f"SELECT {', '.join(ledger_columns)} FROM ledger WHERE seq = 1")[0]))
    run_columns = [c.name for c in _store.RECORD_TABLES["runs"].columns]
    row = dict(zip(run_columns, backend.query(f"SELECT {', '.join(run_columns)} FROM runs")[0]))
    record = {"seq": 1, "table": "runs", "created_at": entry["created_at"], "row": row}
    text = json.dumps(
        record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    assert entry["prev_hash"] == "0" * 64
    assert entry["entry_hash"] == hashlib.sha256(("0" * 64 + text).encode()).hexdigest()
    assert (entry["record_table"], entry["record_id"]) == ("runs", run.run_id)


def test_verify__detects_changed_measurement_value(store, backend, tmp_path):
    store.save(make_run(tmp_path, "r1"))
    backend.raw_sql("UPDATE measurements SET value_json = '0.05' WHERE id = 'r1/m8'")
    report = store.verify()
    seq = 1 + 3 + 8 + 1
    assert report == VerifyReport(
        ok=False,
        entries=RECORDS_PER_RUN,
        first_problem=_ledger.CHANGED.format(seq=seq, table="measurements", record_id="r1/m8"),
    )


def test_verify__detects_deleted_rule_outcome(store, backend, tmp_path):
    store.save(make_run(tmp_path, "r1"))
    backend.raw_sql("DELETE FROM rule_outcomes WHERE id = 'r1/o1'")
    assert store.verify().first_problem == _ledger.REMOVED.format(
        seq=1 + 3 + 12 + 2, table="rule_outcomes", record_id="r1/o1"
    )


def test_verify__detects_inserted_run(store, backend, tmp_path):
    store.save(make_run(tmp_path, "r1"))
    backend.raw_sql("INSERT INTO runs SELECT 'fake', created_at, govssl_version, plan_name, plan_path,"
                " plan_sha256, plan_json, policy_name, policy_version, policy_path, policy_sha256,"
                " dataset_name, dataset_json, model_sha256, training_json, 'pass', n_measurements,"
                " 0, out_dir, seconds FROM runs WHERE run_id = 'r1'")
    assert store.verify() == VerifyReport(
        ok=False,
        entries=RECORDS_PER_RUN,
        first_problem=_ledger.INSERTED.format(table="runs", record_id="fake"),
    )


def test_verify__detects_swapped_ledger_entries(store, backend, tmp_path):
    store.save(make_run(tmp_path, "r1"))
    backend.raw_sql(
        "UPDATE ledger SET seq = -1 WHERE seq = 5",
        "UPDATE ledger SET seq = 5 WHERE seq = 9",
        "UPDATE ledger SET seq = 9 WHERE seq = -1",
    )
    assert store.verify().first_problem == _ledger.REORDERED.format(seq=5, actual=8, previous=4)


def test_verify__detects_removed_ledger_entry(store, backend, tmp_path):
    store.save(make_run(tmp_path, "r1"))
    backend.raw_sql("DELETE FROM ledger WHERE seq = 7", "DELETE FROM measurements WHERE id = 'r1/m2'")
    assert store.verify().first_problem == _ledger.GAP.format(seq=8, previous=6, first=7, last=7)


def test_verify__detects_removed_last_run(store, backend, tmp_path):
    """Cutting the newest run out of every table leaves a consistent chain; the head tells."""
    store.save(make_run(tmp_path, "r1"))
    store.save(make_run(tmp_path, "r2"))
    backend.raw_sql(*[f"DELETE FROM {t} WHERE run_id = 'r2'"
                  for t in ("check_results", "measurements", "rule_outcomes", "artifacts",
                            "attestations", "runs")],
            f"DELETE FROM ledger WHERE seq > {RECORDS_PER_RUN}")
    assert store.verify().first_problem == _ledger.HEAD_BEHIND.format(
        last=RECORDS_PER_RUN, head=2 * RECORDS_PER_RUN
    )


def _save_in_child(url: str, run: AuditRun) -> str:
    return AuditStore(url).save(run)


def test_save__concurrent_processes_keep_one_chain(backend, tmp_path):
    url = backend.url
    AuditStore(url).close()  # tables first; no open connection crosses the fork
    runs = [make_run(tmp_path, f"run-{i:02d}") for i in range(12)]
    with multiprocessing.get_context("fork").Pool(4) as pool:
        saved = pool.starmap(_save_in_child, [(url, run) for run in runs])
    assert sorted(saved) == [run.run_id for run in runs]
    assert AuditStore(url).verify() == verified(backend, 12 * RECORDS_PER_RUN)


def test_audit_store__sqlite_is_in_wal_mode(tmp_path):
    db = tmp_path / "audit.db"
    AuditStore(f"sqlite:///{db}").close()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


@pytest.mark.parametrize(
    "url",
    ["not a url", "nosuchdb://host/db", "postgresql+nosuchdriver://u@localhost/db"],
)
def test_audit_store__bad_url_raises_store_error_naming_it(url):
    with pytest.raises(StoreError, match=re.escape(url)):
        AuditStore(url)


def test_audit_store__unopenable_sqlite_file_raises_store_error(tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    urls = [f"sqlite:///{not_a_folder}/audit.db", f"sqlite:///{tmp_path}"]
    for url in urls:
        with pytest.raises(StoreError, match=re.escape(f"cannot open the audit store {url}: ")):
            AuditStore(url)


def test_audit_store__a_file_that_is_not_a_database_is_an_integrity_failure(tmp_path):
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    before = garbage.read_bytes()
    url = f"sqlite:///{garbage}"
    for opened in (dict(), dict(create=False), dict(read_only=True)):
        with pytest.raises(IntegrityError, match=re.escape(f"the audit store {url} is damaged: file is not a database")):
            AuditStore(url, **opened)
    assert garbage.read_bytes() == before


def test_audit_store__error_message_hides_the_password():
    with pytest.raises(StoreError) as error:
        AuditStore("postgresql+nosuchdriver://auditor:s3cret@localhost/audit")
    assert "s3cret" not in str(error.value) and "auditor:***@localhost" in str(error.value)


def test_default_url__environment_then_working_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("GOVSSL_DB_URL", raising=False)
    assert default_url() == "sqlite:///.govssl/audit.db"
    monkeypatch.chdir(tmp_path)
    AuditStore().save(make_run(tmp_path))
    assert (tmp_path / ".govssl" / "audit.db").is_file()
    monkeypatch.setenv("GOVSSL_DB_URL", f"sqlite:///{tmp_path}/team.db")
    assert default_url() == f"sqlite:///{tmp_path}/team.db"
    assert AuditStore().list_runs() == []


def _monitoring_result(run, drift_p=0.2):
    """A monitoring result of ``run`` as `govssl monitor` makes it (one drift measurement, one rule)."""
    from govssl.monitor._run import MonitoringResult

    m = Measurement("embedding_drift", "drift_p_value", drift_p, "", n=1000, details={"p_value": 0.01, "correction": "holm"})
    outcome = RuleOutcome("drift-embeddings", "embedding_drift", "drift_p_value", "block",
                          "pass" if drift_p >= 0.05 else "fail", drift_p, "", ">= 0.05", "", ("MEASURE 2.4",))
    return MonitoringResult(
        monitor_id="20240502T120000Z-abcdef", run_id=run.run_id, model_sha256=run.training.model_sha256,
        created_at="2024-05-02T12:00:00+00:00", govssl_version="0.1.0", batch_path="/data/batch.csv",
        batch_sha256="b" * 64, n_rows=1000, labels="", policy_name="monitoring", policy_version=1,
        policy_path="/p/monitoring.yaml", policy_sha256="c" * 64, profile_sha256="d" * 64,
        results=[CheckResult("embedding_drift", "measured", (m,))], decision=Decision((outcome,)), seconds=1.5,
    )


def test_monitoring__round_trips_verified_and_in_the_chain(store, tmp_path):
    run = make_run(tmp_path, "r1")
    store.save(run)
    assert store.add_monitoring(_monitoring_result(run)) == 0
    assert store.add_monitoring(_monitoring_result(run, drift_p=0.001)) == 1
    first, second = store.monitoring(run_ids=["r1"])
    assert first.results == _monitoring_result(run).results and first.decision.passed
    assert not second.decision.passed and second.position == 1
    assert store.monitoring(model_sha256=run.training.model_sha256) == [first, second]
    assert store.monitoring(model_sha256="0" * 64) == []
    assert store.verify() == VerifyReport(ok=True, entries=RECORDS_PER_RUN + 2, head_seq=RECORDS_PER_RUN + 2,
                                          head_hash=store.head().entry_hash)


def test_monitoring__refuses_a_result_naming_another_model(store, tmp_path):
    run = make_run(tmp_path, "r1")
    store.save(run)
    with pytest.raises(StoreError, match="it names model"):
        store.add_monitoring(dataclasses.replace(_monitoring_result(run), model_sha256="e" * 64))
    assert store.monitoring() == []


@pytest.mark.parametrize("sql, problem", [
    ("UPDATE monitoring SET outcomes_json = replace(outcomes_json, '\"fail\"', '\"pass\"') WHERE id = 'r1/w0'",
     _ledger.CHANGED.format(seq=RECORDS_PER_RUN + 1, table="monitoring", record_id="r1/w0")),
    ("DELETE FROM monitoring WHERE id = 'r1/w0'",
     _ledger.REMOVED.format(seq=RECORDS_PER_RUN + 1, table="monitoring", record_id="r1/w0")),
    ("INSERT INTO monitoring SELECT 'r1/w9', run_id, 9, monitor_id, model_sha256, created_at, govssl_version,"
     " batch_path, batch_sha256, n_rows, labels, policy_name, policy_version, policy_path, policy_sha256,"
     " profile_sha256, verdict, n_blocking, results_json, outcomes_json, seconds FROM monitoring WHERE id = 'r1/w0'",
     _ledger.INSERTED.format(table="monitoring", record_id="r1/w9")),
])
def test_monitoring__changed_removed_or_inserted_row_fails_verify_and_reads(store, backend, tmp_path, sql, problem):
    run = make_run(tmp_path, "r1")
    store.save(run)
    store.add_monitoring(_monitoring_result(run, drift_p=0.001))
    backend.raw_sql(sql)
    assert store.verify().first_problem == problem
    with pytest.raises(IntegrityError, match="does not verify"):
        store.monitoring(run_ids=["r1"])
