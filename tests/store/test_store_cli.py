"""The store's commands end to end: verify (and its exit 3 for each kind of tampering), runs
filters, diff and export; on SQLite and PostgreSQL, with hand-made runs (no training)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import zipfile

import pytest

from govssl.policy.model import Decision
from govssl.store import AuditStore

from tests.conftest import run_cli

from .test_store import RECORDS_PER_RUN, make_run

R1, R2 = "20240501T090000Z-0000a1", "20240503T090000Z-0000b2"  # run ids as govssl makes them



@pytest.fixture
def saved(backend, tmp_path):
    """Two runs of different models in the backend's store; returns (r1, r2)."""
    r1 = make_run(tmp_path, R1, "2024-05-01T09:00:00+00:00", non_finite=False)
    r2 = make_run(tmp_path, R2, "2024-05-03T09:00:00+00:00", non_finite=False)
    r2.training = dataclasses.replace(r2.training, model_sha256="aa" * 32)
    better = dataclasses.replace(r2.results[1].measurements[0], value=0.05)
    r2.results[1] = dataclasses.replace(r2.results[1], measurements=(better, *r2.results[1].measurements[1:]))
    fixed = dataclasses.replace(r2.decision.outcomes[1], status="pass", observed=0.08)
    r2.decision = Decision((r2.decision.outcomes[0], fixed, r2.decision.outcomes[2]))
    store = AuditStore(backend.url)
    store.save(r1)
    store.save(r2)
    store.close()
    return r1, r2


def test_verify__ok_exits_0_with_the_count(capsys, backend, saved):
    code, out, _ = run_cli(capsys, "verify", "--db", backend.url)
    out = " ".join(out.split())  # the console wraps long lines
    assert code == 0
    assert f"ok: {2 * RECORDS_PER_RUN} ledger entries verified" in out
    assert "4 artifact file(s) match their sha256" in out
    code, out, _ = run_cli(capsys, "verify", "--db", backend.url, "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] and report["entries"] == 2 * RECORDS_PER_RUN


TAMPERING = {
    "measurement value updated": (
        [f"UPDATE measurements SET value_json = '0.01' WHERE id = '{R2}/m8'"],
        f"ledger entry {RECORDS_PER_RUN + 13} (measurements '{R2}/m8'): the row was changed after it was recorded",
    ),
    "rule outcome deleted": (
        [f"DELETE FROM rule_outcomes WHERE id = '{R1}/o1'"],
        f"ledger entry 18 (rule_outcomes '{R1}/o1'): the row was removed",
    ),
    "fake run inserted": (
        ["INSERT INTO runs SELECT 'fake', created_at, govssl_version, plan_name, plan_path, plan_sha256,"
         " plan_json, policy_name, policy_version, policy_path, policy_sha256, dataset_name, dataset_json,"
         f" model_sha256, training_json, 'pass', n_measurements, 0, out_dir, seconds FROM runs WHERE run_id = '{R1}'"],
        "runs 'fake' has no ledger entry: the row was inserted outside govssl",
    ),
    "two entries swapped": (
        ["UPDATE ledger SET seq = -1 WHERE seq = 30",
         "UPDATE ledger SET seq = 30 WHERE seq = 31",
         "UPDATE ledger SET seq = 31 WHERE seq = -1"],
        "ledger entry 30: its prev_hash is the hash of entry 31, not of entry 29: ledger entries were reordered",
    ),
}


@pytest.mark.parametrize("tampering", list(TAMPERING))
def test_verify__tampering_exits_3_naming_the_entry(capsys, backend, saved, tampering):
    statements, problem = TAMPERING[tampering]
    backend.raw_sql(*statements)
    code, _, err = run_cli(capsys, "verify", "--db", backend.url)
    assert code == 3
    assert problem in " ".join(err.split())
    code, out, _ = run_cli(capsys, "verify", "--db", backend.url, "--json")
    assert code == 3 and json.loads(out)["first_problem"] == problem


def test_verify__artifact_file_changed_on_disk_exits_3(capsys, backend, saved):
    card = saved[0].artifacts[1]
    with open(card.path, "w", encoding="utf-8") as fh:
        fh.write("# A nicer model card\n")
    actual = hashlib.sha256(b"# A nicer model card\n").hexdigest()
    code, out, _ = run_cli(capsys, "verify", "--db", backend.url, "--json")
    assert code == 3
    assert json.loads(out)["first_problem"] == (
        f"ledger entry 21 (artifacts '{R1}/a1'): the file {card.path} changed on disk: "
        f"its sha256 is {actual}, the store records {card.sha256}"
    )


def test_runs__filters(capsys, backend, saved):
    def listed(*options):
        code, out, _ = run_cli(capsys, "runs", "--db", backend.url, "--json", *options)
        assert code == 0
        return [r["run_id"] for r in json.loads(out)]

    assert listed() == [R2, R1]
    assert listed("--model", "aa" * 32) == [R2]
    assert listed("--decision", "blocked") == [R1] and listed("--decision", "pass") == [R2]
    assert listed("--since", "2024-05-02") == [R2]
    assert listed("--plan", "adult-income", "--since", "2024-04-30") == [R2, R1]
    assert listed("--plan", "nothing") == []
    code, _, err = run_cli(capsys, "runs", "--db", backend.url, "--since", "yesterday")
    assert code == 2 and "--since" in err


def test_diff__measurement_deltas_and_changed_rules(capsys, backend, saved):
    code, out, _ = run_cli(capsys, "diff", R1, R2, "--db", backend.url, "--json")
    assert code == 0
    result = json.loads(out)
    assert result["model_changed"] and not result["policy_changed"]
    eod = next(m for m in result["measurements"] if m["metric"] == "equalized_odds_difference"
               and m["subject"] == "sex")
    assert (eod["a"], eod["b"]) == (0.0734, 0.05)
    assert eod["delta"] == pytest.approx(0.05 - 0.0734, abs=1e-15)
    same = next(m for m in result["measurements"] if m["metric"] == "accuracy")
    assert same["delta"] == 0.0
    text_value = next(m for m in result["measurements"] if m["metric"] == "threshold_source")
    assert text_value["delta"] is None
    assert result["rules_changed"] == [{
        "rule_id": "fairness-equalized-odds", "status_a": "fail", "status_b": "pass",
        "subject_a": "sex", "subject_b": "sex", "observed_a": 0.112, "observed_b": 0.08,
    }]
    code, table, _ = run_cli(capsys, "diff", R1, R2, "--db", backend.url)
    assert code == 0 and "-0.0234" in table and "fairness-equalized-odds" in table


def test_export__zip_with_checksums_that_hold(capsys, backend, saved, tmp_path):
    store = AuditStore(backend.url)
    store.add_attestations(R1, [saved[0].attestations[0]])
    store.close()
    target = tmp_path / "r1.zip"
    code, out, _ = run_cli(capsys, "export", R1, "--out", str(target), "--db", backend.url)
    assert code == 0 and f"exported run {R1}" in out
    with zipfile.ZipFile(target) as archive:
        names = archive.namelist()
        assert sorted(names) == sorted([
            f"{R1}/run.json", f"{R1}/attestations.json", f"{R1}/documents/{R1}-model_card.md", f"{R1}/SHA256SUMS",
        ])
        sums = archive.read(f"{R1}/SHA256SUMS").decode().splitlines()
        assert len(sums) == 3
        for line in sums:
            digest, name = line.split("  ")
            assert hashlib.sha256(archive.read(f"{R1}/{name}")).hexdigest() == digest
        record = json.loads(archive.read(f"{R1}/run.json"))
        assert len(record["attestations"]) == 3
        card = archive.read(f"{R1}/documents/{R1}-model_card.md")
    assert hashlib.sha256(card).hexdigest() == saved[0].artifacts[1].sha256


def test_export__changed_file_exits_3_and_writes_nothing(capsys, backend, saved, tmp_path):
    with open(saved[0].artifacts[1].path, "a", encoding="utf-8") as fh:
        fh.write("edited\n")
    target = tmp_path / "r1.zip"
    code, _, err = run_cli(capsys, "export", R1, "--out", str(target), "--db", backend.url)
    err = " ".join(err.split())
    assert code == 3 and "model_card file" in err and "changed on disk" in err
    assert not target.exists()


def test_verify__no_store_at_that_path_exits_2(capsys, tmp_path):
    url = f"sqlite:///{tmp_path / 'typo.db'}"
    code, _, err = run_cli(capsys, "verify", "--db", url)
    assert code == 2 and "there is no audit store at" in err and "typo.db" in " ".join(err.split())
    assert not (tmp_path / "typo.db").exists()
