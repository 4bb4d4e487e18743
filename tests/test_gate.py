"""The release gate, waivers, attestations and re-rendering, through the command line."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
import yaml

from govssl.cli import main
from tests.conftest import fast_plan_data
from tests.conftest import run_cli as cli

BLOCKING_POLICY = {
    "policy": "demo-gate", "version": 1,
    "rules": [
        {"id": "auc", "check": "performance", "metric": "roc_auc", "min": 0.6, "severity": "block", "rmf": ["MEASURE 2.5"]},
        {"id": "near-perfect", "check": "performance", "metric": "accuracy", "min": 0.99, "severity": "block",
         "rmf": ["MEASURE 2.3"], "rationale": "deliberately out of reach"},
    ],
}


def copy_store(audited, tmp_path) -> str:
    """A private copy of the shared store (SQLite's backup API: the WAL file holds recent writes)."""
    import sqlite3

    source = sqlite3.connect(audited["folder"] / "audit.db")
    target = sqlite3.connect(tmp_path / "copy.db")
    source.backup(target)
    source.close()
    target.close()
    return f"sqlite:///{tmp_path / 'copy.db'}"



@pytest.fixture(scope="module")
def audited(tmp_path_factory, adult_csvs):
    """One blocked audit (accuracy below 0.99) and one passing audit, in one store."""
    folder = tmp_path_factory.mktemp("gate")
    blocking = folder / "blocking.yaml"
    blocking.write_text(yaml.safe_dump(BLOCKING_POLICY))
    passing = folder / "passing.yaml"
    passing.write_text(yaml.safe_dump({**BLOCKING_POLICY, "policy": "lenient", "rules": BLOCKING_POLICY["rules"][:1]}))
    plan_data = fast_plan_data(*adult_csvs)
    plan_data["model_card"]["intended_use"] = "gate tests {{ 7*7 }}"
    (folder / "attest.yaml").write_text(yaml.safe_dump([
        {"subcategory": "GOVERN 1.1", "by": "Legal team", "date": "2026-11-01", "statement": "Applicable law reviewed."}
    ]))
    plan_data["attestations"] = "attest.yaml"
    plan = folder / "plan.yaml"
    plan.write_text(yaml.safe_dump(plan_data))
    db = f"sqlite:///{folder / 'audit.db'}"
    runs = {}
    for name, pol in (("blocked", blocking), ("passed", passing)):
        with pytest.raises(SystemExit) as exit_info:
            main(["audit", str(plan), "--policy", str(pol), "--db", db, "--out", str(folder / "out"), "--quiet", "--json"])
        runs[name] = exit_info.value.code
    from govssl.store import AuditStore

    listed = {r["policy_name"]: r for r in AuditStore(db).list_runs()}
    model = next((folder / "out").iterdir()) / "model.safetensors"
    return {"db": db, "codes": runs, "blocked": listed["demo-gate"]["run_id"], "passed": listed["lenient"]["run_id"],
            "blocking_policy": blocking, "passing_policy": passing, "model": model, "folder": folder}


def test_audit__exit_codes_follow_the_two_policies(audited):
    assert audited["codes"] == {"blocked": 1, "passed": 0}


def test_gate__passing_audit_of_this_model_and_policy_exits_0(capsys, audited):
    code, out, _ = cli(capsys, "gate", "--model", str(audited["model"]), "--policy", str(audited["passing_policy"]),
                       "--db", audited["db"])
    assert code == 0 and audited["passed"] in out


def test_gate__blocked_audit_exits_1_naming_the_rule(capsys, audited):
    code, out, _ = cli(capsys, "gate", "--model", str(audited["model"]), "--policy", str(audited["blocking_policy"]),
                       "--db", audited["db"])
    assert code == 1 and "near-perfect" in out


def test_gate__model_differing_by_one_byte_exits_1(capsys, audited, tmp_path):
    changed = tmp_path / "model.safetensors"
    data = bytearray(audited["model"].read_bytes())
    data[-1] ^= 0x01
    changed.write_bytes(bytes(data))
    code, out, _ = cli(capsys, "gate", "--model", str(changed), "--policy", str(audited["passing_policy"]),
                       "--db", audited["db"])
    assert code == 1 and "no audit of a model" in out


def test_gate__policy_differing_from_the_audited_one_exits_1(capsys, audited, tmp_path):
    edited = tmp_path / "passing.yaml"
    edited.write_text(audited["passing_policy"].read_text() + "\n# edited\n")
    code, out, _ = cli(capsys, "gate", "--model", str(audited["model"]), "--policy", str(edited), "--db", audited["db"])
    assert code == 1 and "never under policy" in out


def test_gate__missing_model_file_exits_2(capsys, audited, tmp_path):
    code, _, err = cli(capsys, "gate", "--model", str(tmp_path / "none.safetensors"), "--db", audited["db"])
    assert code == 2 and "none.safetensors" in err


def test_waive__waived_failure_passes_the_gate_and_shows_in_documents(capsys, tmp_path, audited):
    db = copy_store(audited, tmp_path)
    expires = (datetime.now(timezone.utc) + timedelta(days=30)).date().isoformat()
    code, out, _ = cli(capsys, "waive", "--run", audited["blocked"], "--rule", "near-perfect", "--approver", "Dana Reviewer",
                       "--reason", "accuracy target is aspirational", "--expires", expires, "--db", db)
    assert code == 0 and "PASS" in out
    code, out, _ = cli(capsys, "gate", "--model", str(audited["model"]), "--policy", str(audited["blocking_policy"]), "--db", db)
    assert code == 0 and "near-perfect" in out
    code, _, _ = cli(capsys, "report", audited["blocked"], "--out", str(tmp_path / "docs"), "--db", db)
    assert code == 0
    for name in ("model_card.md", "rmf_report.md"):
        text = (tmp_path / "docs" / name).read_text()
        assert "Dana Reviewer" in text and "accuracy target is aspirational" in text and expires in text, name


def test_waive__expired_waiver_blocks_again(capsys, tmp_path, audited):
    from govssl.records import Waiver
    from govssl.store import AuditStore

    db = copy_store(audited, tmp_path)
    yesterday = (datetime.now(timezone.utc) - timedelta(days=1)).date().isoformat()
    AuditStore(db).add_waiver(Waiver("w-old", "near-perfect", "Dana Reviewer", "was fine last month", yesterday,
                                     "2026-01-01T00:00:00+00:00", run_id=audited["blocked"]))
    code, out, _ = cli(capsys, "gate", "--model", str(audited["model"]), "--policy", str(audited["blocking_policy"]), "--db", db)
    assert code == 1 and "near-perfect" in out


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--rule", "auc"], "did not block"),
        (["--rule", "nonexistent"], "has no rule 'nonexistent'"),
        (["--rule", "near-perfect", "--expires", "2001-01-01"], "in the past"),
    ],
)
def test_waive__bad_requests_exit_2(capsys, audited, args, fragment):
    argv = ["waive", "--run", audited["blocked"], "--approver", "A", "--reason", "R", "--expires", "2099-01-01", "--db", audited["db"]]
    code, _, err = cli(capsys, *argv, *args)
    assert code == 2 and fragment in err


def test_attestations__from_the_plan_and_the_command_reach_the_rmf_report(capsys, tmp_path, audited):
    db = copy_store(audited, tmp_path)
    code, _, _ = cli(capsys, "attest-rmf", "--run", audited["passed"], "--subcategory", "GOVERN 2.1", "--by", "CISO",
                     "--statement", "Roles are documented.", "--db", db)
    assert code == 0
    cli(capsys, "report", audited["passed"], "--out", str(tmp_path / "docs"), "--db", db, "--format", "md")
    report = (tmp_path / "docs" / "rmf_report.md").read_text()
    assert "Applicable law reviewed." in report and "Roles are documented." in report
    code, _, err = cli(capsys, "attest-rmf", "--run", audited["passed"], "--subcategory", "GOVERN 9.9", "--by", "x",
                       "--statement", "y", "--db", db)
    assert code == 2 and "GOVERN 9.9" in err


def test_plan__attestations_file_with_an_unknown_subcategory_exits_2(capsys, tmp_path, adult_csvs):
    (tmp_path / "attest.yaml").write_text(yaml.safe_dump([{"subcategory": "GOVERN 7.7", "by": "x", "date": "2026-01-01", "statement": "s"}]))
    data = fast_plan_data(*adult_csvs)
    data["attestations"] = "attest.yaml"
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(data))
    code, _, err = cli(capsys, "audit", str(plan), "--db", f"sqlite:///{tmp_path / 'a.db'}")
    assert code == 2 and "attest.yaml" in err and "GOVERN 7.7" in err
    assert not (tmp_path / "a.db").exists()


def test_documents__user_text_stays_literal(audited):
    run_dir = next((audited["folder"] / "out").iterdir())
    for name in ("model_card.md", "rmf_report.md"):
        text = (run_dir / name).read_text()
        if "gate tests" in text:
            assert "{{ 7*7 }}" in text and "gate tests 49" not in text


def test_gate__builtin_policy_name_is_the_builtin_pack_file(capsys, audited, tmp_path):
    from govssl.policy import builtin_policy_path

    by_name = cli(capsys, "gate", "--model", str(audited["model"]), "--policy", "default", "--db", audited["db"], "--json")
    by_file = cli(capsys, "gate", "--model", str(audited["model"]), "--policy", str(builtin_policy_path("default")),
                  "--db", audited["db"], "--json")
    assert by_name[0] == by_file[0] == 1  # neither audit ran under the default pack
    assert json.loads(by_name[1]) == json.loads(by_file[1])
    assert json.loads(by_name[1])["policy"] == "default"
    code, _, err = cli(capsys, "gate", "--model", str(audited["model"]), "--policy", "no-such-pack", "--db", audited["db"])
    assert code == 2 and "--policy" in err and "no built-in policy 'no-such-pack'" in err and "default" in err
    code, _, err = cli(capsys, "gate", "--model", str(audited["model"]), "--policy", str(tmp_path / "missing.yaml"),
                       "--db", audited["db"])
    assert code == 2 and "missing.yaml" in err


def test_report__after_a_waiver_on_a_real_audit_keeps_verify_at_0(capsys, tmp_path, audited):
    import hashlib
    import shutil
    import zipfile
    from pathlib import Path

    db = copy_store(audited, tmp_path)
    run_dir = next(p for p in (audited["folder"] / "out").iterdir() if p.name == audited["blocked"])
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in run_dir.iterdir() if p.is_file()}
    cli(capsys, "waive", "--run", audited["blocked"], "--rule", "near-perfect", "--approver", "Dana Reviewer",
        "--reason", "accuracy target is aspirational", "--expires", "2999-01-01", "--db", db)
    try:
        code, out, err = cli(capsys, "report", audited["blocked"], "--db", db)
        assert code == 0, (out, err)
        (new,) = (run_dir / "reports").iterdir()
        assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in run_dir.iterdir() if p.is_file()} == before
        assert "accuracy target is aspirational" in (new / "model_card.md").read_text()
        assert "accuracy target is aspirational" not in (run_dir / "model_card.md").read_text()
        code, out, err = cli(capsys, "verify", "--db", db)
        assert code == 0, (out, err)
        code, out, _ = cli(capsys, "show", audited["blocked"], "--db", db, "--json")
        paths = {a["path"] for a in json.loads(out)["artifacts"]}
        assert str(new / "model_card.md") in paths and str(run_dir / "model_card.md") in paths
        code, _, _ = cli(capsys, "export", audited["blocked"], "--out", str(tmp_path / "x.zip"), "--db", db)
        with zipfile.ZipFile(tmp_path / "x.zip") as archive:
            names = archive.namelist()
        run = audited["blocked"]
        assert code == 0 and f"{run}/documents/reports/{new.name}/model_card.md" in names
        assert f"{run}/documents/predictions.csv" in names and f"{run}/documents/model.safetensors" not in names
    finally:
        shutil.rmtree(run_dir / "reports", ignore_errors=True)  # the run folder is shared by this module's tests
