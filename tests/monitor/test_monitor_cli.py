"""`govssl monitor` end to end: a real (small) Adult audit, then production batches through the CLI."""

from __future__ import annotations

import dataclasses
import json
import sqlite3

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import fast_plan_data, run_cli

LENIENT = {"policy": "lenient", "version": 1, "rules": [
    {"id": "auc", "check": "performance", "metric": "roc_auc", "min": 0.5, "severity": "block"}]}


@pytest.fixture(scope="module")
def monitored(tmp_path_factory, adult_csvs, adult_frames):
    """One passing audit of a small Adult model, and batches drawn from the real Adult test rows."""
    from govssl.cli import main

    folder = tmp_path_factory.mktemp("monitor")
    policy = folder / "lenient.yaml"
    policy.write_text(yaml.safe_dump(LENIENT))
    plan = folder / "plan.yaml"
    plan.write_text(yaml.safe_dump(fast_plan_data(*adult_csvs)))
    db = f"sqlite:///{folder / 'audit.db'}"
    with pytest.raises(SystemExit) as exit_info:
        main(["audit", str(plan), "--policy", str(policy), "--db", db, "--out", str(folder / "out"), "--quiet"])
    assert exit_info.value.code == 0
    run_dir = next((folder / "out").iterdir())
    _, test = adult_frames
    held_out = test.drop(pd.read_csv(adult_csvs[1]).index, errors="ignore")  # any rows; the same population
    same = held_out.sample(1500, random_state=1).reset_index(drop=True)
    same.to_csv(folder / "same.csv", index=False)
    older = test[test["age"] >= 50].sample(1500, random_state=2, replace=True).reset_index(drop=True)
    older.to_csv(folder / "older.csv", index=False)
    return {"db": db, "run": run_dir.name, "run_dir": run_dir, "folder": folder, "same": same,
            "model": run_dir / "model.safetensors", "policy": policy}


def _monitor(capsys, monitored, batch, *extra):
    return run_cli(capsys, "monitor", monitored["run"], "--data", str(batch), "--db", monitored["db"], *extra)


def test_audit__stores_the_reference_profile_as_a_chained_artifact(monitored):
    from govssl.monitor._profile import load_profile
    from govssl.store import AuditStore

    run = AuditStore(monitored["db"], read_only=True).load_run(monitored["run"])
    (profile,) = [a for a in run.artifacts if a.kind == "reference_profile"]
    meta = load_profile(profile.path, profile.sha256).meta
    assert meta["source"] == "test split" and meta["n_rows"] == run.dataset.n_test == 3000
    assert meta["features"]["age"]["n"] == 3000 and sum(meta["features"]["sex"]["counts"]) == 3000
    assert meta["embedding"]["n_reference"] == 1000 and meta["embedding"]["bandwidth"] > 0


def test_monitor__batch_from_the_audited_population_passes_and_is_stored(capsys, monitored):
    code, out, err = _monitor(capsys, monitored, monitored["folder"] / "same.csv", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["run_id"] == monitored["run"] and result["decision"]["verdict"] == "pass"
    checks = {c["check"]: c for c in result["checks"]}
    assert set(checks) == {"feature_drift", "prediction_drift", "embedding_drift", "ood", "performance_estimate",
                           "group_mix"}
    p_values = [m for c in checks.values() for m in c["measurements"] if m["metric"] == "drift_p_value"]
    assert {m["details"]["correction"] for m in p_values} == {"holm"}
    assert all(m["value"] >= m["details"]["p_value"] for m in p_values)  # adjusted never below raw
    est = next(m for m in checks["performance_estimate"]["measurements"] if m["metric"] == "estimated_accuracy")
    assert est["ci_low"] < est["value"] < est["ci_high"]
    code, out, _ = run_cli(capsys, "show", monitored["run"], "--db", monitored["db"], "--json")
    assert result["monitor_id"] in [m["monitor_id"] for m in json.loads(out)["monitoring"]]
    code, out, _ = run_cli(capsys, "runs", "--db", monitored["db"], "--json")
    assert json.loads(out)[0]["monitoring"]["count"] >= 1
    assert run_cli(capsys, "verify", "--db", monitored["db"])[0] == 0


def test_monitor__older_people_with_labels_block_naming_the_rules(capsys, monitored):
    code, out, err = _monitor(capsys, monitored, monitored["folder"] / "older.csv", "--labels", "income")
    assert code == 1, err
    assert "drift-features" in out and "BLOCKED" in out
    code, out, _ = _monitor(capsys, monitored, monitored["folder"] / "older.csv", "--labels", "income", "--json")
    checks = {c["check"]: c for c in json.loads(out)["checks"]}
    assert checks["performance"]["status"] == "measured" and checks["fairness"]["status"] == "measured"
    age = next(m for m in checks["feature_drift"]["measurements"] if m["metric"] == "drift_p_value"
               and m["subject"] == "age")
    assert age["value"] < 1e-6


def _write(monitored, name, frame):
    path = monitored["folder"] / name
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("case, fragment", [
    ("missing", "missing column(s): age"),
    ("extra", "extra column(s) not in the audited data: favourite_colour"),
    ("retyped", "column 'hours-per-week' is retyped: numbers in the audited data, text here"),
    ("all_nan", "column 'occupation' holds only missing values"),
    ("bad_labels", "--labels: no column 'label'"),
])
def test_monitor__mismatched_batch_exits_2_naming_the_column(capsys, monitored, case, fragment):
    batch = monitored["same"].head(200).copy()
    if case == "missing":
        batch = batch.drop(columns=["age"])
    elif case == "extra":
        batch["favourite_colour"] = "blue"
    elif case == "retyped":
        batch["hours-per-week"] = batch["hours-per-week"].astype(str) + " h"
    elif case == "all_nan":
        batch["occupation"] = np.nan
    path = _write(monitored, f"{case}.csv", batch)
    extra = ("--labels", "label") if case == "bad_labels" else ()
    code, out, err = _monitor(capsys, monitored, path, *extra)
    assert code == 2, err
    assert str(path) in err and fragment in err
    assert "Traceback" not in err


def test_monitor__empty_batch_exits_2(capsys, monitored):
    path = monitored["folder"] / "empty.csv"
    path.write_text(",".join(monitored["same"].columns) + "\n")
    code, _, err = _monitor(capsys, monitored, path)
    assert code == 2 and str(path) in err and "no data rows" in err


def test_monitor__unseen_category_levels_are_counted_not_fatal(capsys, monitored):
    batch = monitored["same"].head(300).copy()
    batch.loc[:29, "workclass"] = "Space-agency"
    path = _write(monitored, "unseen.csv", batch)
    code, out, err = _monitor(capsys, monitored, path, "--json")
    assert code in (0, 1), err
    unseen = next(m for c in json.loads(out)["checks"] for m in c["measurements"]
                  if m["metric"] == "unseen_share" and m["subject"] == "workclass")
    reference = unseen["details"]["reference_share"]
    assert 0 <= reference < 0.01
    assert unseen["value"] == pytest.approx(30 / 300 - reference) and unseen["details"]["levels"] >= 1
    # the value is counted, never stored: the result names no value outside the model's levels
    assert "Space-agency" not in out


def test_profile__names_no_value_outside_the_models_levels(monitored):
    """A value of the test split that is not a level of the model (held by fewer than 10 training
    rows, or not declared) is counted under OTHER in the reference profile, never named."""
    from govssl.monitor._profile import _categorical_reference

    series = pd.Series(["a"] * 50 + ["b"] * 20 + ["Jane Q. Doe", "13011352CF10A"])
    ref = _categorical_reference(series, ("(missing)", "(other)", "a", "b"))
    assert ref["levels"] == ["(missing)", "a", "b", "(other)"] and ref["counts"] == [0, 50, 20, 2]
    assert not {"Jane Q. Doe", "13011352CF10A"} & set(ref["levels"])


def test_monitor__image_batch_and_image_run_exit_2(capsys, monitored, tmp_path):
    path = tmp_path / "digits.npz"
    np.savez(path, X=np.zeros((4, 1, 8, 8)), y=np.zeros(4))
    code, _, err = _monitor(capsys, monitored, path)
    assert code == 2 and str(path) in err and "CSV or Parquet" in err
    # a stored run of an image model (written through the store like any run)
    from govssl.audit import new_run_id
    from govssl.store import AuditStore

    store = AuditStore(monitored["db"])
    run = store.load_run(monitored["run"])
    image_id = new_run_id()
    image = dataclasses.replace(run, run_id=image_id, out_dir=str(tmp_path / image_id), artifacts=[],
                                dataset=dataclasses.replace(run.dataset, task="image-classification"))
    store.save(image)
    code, _, err = run_cli(capsys, "monitor", image_id, "--data", str(monitored["folder"] / "same.csv"),
                           "--db", monitored["db"])
    assert code == 2 and "image model" in err


def test_monitor__changed_profile_file_exits_3(capsys, monitored, tmp_path):
    profile = monitored["run_dir"] / "reference_profile.npz"
    original = profile.read_bytes()
    try:
        profile.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        code, _, err = _monitor(capsys, monitored, monitored["folder"] / "same.csv")
        assert code == 3 and "reference profile changed" in err
    finally:
        profile.write_bytes(original)


def test_monitor__tampered_result_is_caught_by_verify_show_and_gate(capsys, monitored, tmp_path):
    import shutil

    assert _monitor(capsys, monitored, monitored["folder"] / "same.csv")[0] == 0
    source = monitored["db"].removeprefix("sqlite:///")
    conn = sqlite3.connect(source)
    conn.execute("PRAGMA wal_checkpoint(FULL)")
    conn.close()
    copy = tmp_path / "tampered.db"
    shutil.copy(source, copy)
    conn = sqlite3.connect(copy)
    conn.execute("UPDATE monitoring SET outcomes_json = replace(outcomes_json, '\"fail\"', '\"pass\"'), "
                 "verdict = 'pass'")
    conn.execute("UPDATE monitoring SET n_rows = n_rows + 1 WHERE position = 0")
    conn.commit()
    conn.close()
    db = f"sqlite:///{copy}"
    code, _, err = run_cli(capsys, "verify", "--db", db)
    assert code == 3 and "monitoring '" in err and "was changed" in err
    assert run_cli(capsys, "show", monitored["run"], "--db", db)[0] == 3
    code, _, err = run_cli(capsys, "gate", "--model", str(monitored["model"]), "--policy", str(monitored["policy"]),
                           "--max-drift-age", "1", "--db", db)
    assert code == 3


def test_gate__max_drift_age_requires_recent_clean_monitoring(capsys, monitored, tmp_path):
    import shutil

    source = monitored["db"].removeprefix("sqlite:///")
    conn = sqlite3.connect(source)
    conn.execute("PRAGMA wal_checkpoint(FULL)")
    conn.close()
    fresh = tmp_path / "fresh.db"
    shutil.copy(source, fresh)
    db = f"sqlite:///{fresh}"
    gate = ("gate", "--model", str(monitored["model"]), "--policy", str(monitored["policy"]), "--db", db)
    # drop the monitoring results already there: a copy with none (through SQL, then re-verified below)
    assert run_cli(capsys, *gate)[0] == 0  # the audit alone passes
    code, out, _ = run_cli(capsys, *gate, "--max-drift-age", "1", "--json")
    verdict = json.loads(out)
    newest = verdict["monitoring"]
    # every earlier test's newest result of this model is the last stored one; its decision rules
    assert code == (0 if newest["passed"] else 1)
    assert run_cli(capsys, "monitor", monitored["run"], "--data", str(monitored["folder"] / "older.csv"),
                   "--db", db)[0] == 1
    code, out, _ = run_cli(capsys, *gate, "--max-drift-age", "1")
    assert code == 1 and "blocked by: drift-features" in out
    assert run_cli(capsys, "monitor", monitored["run"], "--data", str(monitored["folder"] / "same.csv"),
                   "--db", db)[0] == 0
    code, out, _ = run_cli(capsys, *gate, "--max-drift-age", "1")
    assert code == 0 and "and monitoring pack monitoring" in out
    code, out, _ = run_cli(capsys, *gate, "--max-drift-age", "1", "--monitoring-policy", str(monitored["policy"]))
    assert code == 1 and "no monitoring result of this model under monitoring pack 'lenient'" in out
    code, _, err = run_cli(capsys, *gate, "--monitoring-policy", "monitoring")
    assert code == 2 and "--monitoring-policy" in err


def test_monitor_report__markdown_html_and_charts_with_user_text_escaped(capsys, monitored, tmp_path):
    odd = monitored["folder"] / "<b>odd.csv"
    monitored["same"].head(400).to_csv(odd, index=False)
    assert _monitor(capsys, monitored, odd)[0] == 0
    code, out, err = run_cli(capsys, "monitor-report", monitored["run"], "--db", monitored["db"],
                             "--out", str(tmp_path / "report"))
    assert code == 0, err
    files = {p.name for p in (tmp_path / "report").iterdir()}
    assert files == {"monitoring_report.md", "monitoring_report.html", "drift.svg", "accuracy.svg", "groups.svg"}
    html = (tmp_path / "report" / "monitoring_report.html").read_text()
    assert "&lt;b&gt;odd.csv" in html and "<b>odd" not in html
    md = (tmp_path / "report" / "monitoring_report.md").read_text()
    assert "&lt;b>odd.csv" in md or "&lt;b&gt;odd.csv" in md and md.count("| blocked |") + md.count("| pass |") >= 2
    assert (tmp_path / "report" / "drift.svg").read_text().lstrip().startswith("<?xml")
    # by model sha256: the same results; a model without any: exit 2; an existing folder is never reused
    from govssl.records import sha256_file

    code, _, _ = run_cli(capsys, "monitor-report", sha256_file(monitored["model"]), "--db", monitored["db"],
                         "--out", str(tmp_path / "by-model"))
    assert code == 0
    code, _, err = run_cli(capsys, "monitor-report", "0" * 64, "--db", monitored["db"], "--out", str(tmp_path / "x"))
    assert code == 2 and "no monitoring results" in err
    code, _, err = run_cli(capsys, "monitor-report", monitored["run"], "--db", monitored["db"],
                           "--out", str(tmp_path / "report"))
    assert code == 2 and "not empty" in err
