"""Each audit also states its decision as an in-toto test-result v0.1 predicate, signed like the
govssl statement: it validates against the predicate's schema (written from the specification,
see the schema file's $comment) and `govssl attest verify` checks its signature and subjects."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest

from govssl.policy.model import Decision
from govssl.provenance import TEST_RESULT_FILE, TEST_RESULT_TYPE, decision_statement
from tests.conftest import run_cli
from tests.reports.test_render import make_run

SCHEMA = json.loads((Path(__file__).parent / "in_toto_test_result_v0.1.schema.json").read_text(encoding="utf-8"))


def _validate(statement: dict) -> None:
    jsonschema.validate(statement, SCHEMA, cls=jsonschema.Draft202012Validator,
                        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def _statement(formats_run) -> tuple[dict, dict]:
    envelope = json.loads((formats_run["run_dir"] / TEST_RESULT_FILE).read_text(encoding="utf-8"))
    return envelope, json.loads(base64.b64decode(envelope["payload"]))


def test_test_result__the_audits_statement_validates_against_the_predicate_schema(formats_run):
    envelope, statement = _statement(formats_run)
    assert envelope["payloadType"] == "application/vnd.in-toto+json" and len(envelope["signatures"]) == 1
    assert statement["predicateType"] == TEST_RESULT_TYPE == "https://in-toto.io/attestation/test-result/v0.1"
    _validate(statement)


@pytest.mark.parametrize("break_it", [
    lambda s: s["predicate"].update(result="PASS"),
    lambda s: s["predicate"].pop("configuration"),
    lambda s: s["predicate"]["configuration"][0].pop("digest"),
    lambda s: s["subject"][0]["digest"].update(sha256="ABC"),
    lambda s: s.update(predicateType="https://in-toto.io/attestation/test-result/v1"),
], ids=["result", "no-configuration", "descriptor-without-uri-digest-content", "digest", "type"])
def test_test_result__the_schema_rejects_a_broken_statement(formats_run, break_it):
    _, statement = _statement(formats_run)
    break_it(statement)
    with pytest.raises(jsonschema.ValidationError):
        _validate(statement)


def test_test_result__result_rules_policy_and_subjects_follow_the_run(formats_run):
    _, statement = _statement(formats_run)
    evidence = formats_run["evidence"]
    predicate = statement["predicate"]
    outcomes = evidence["decision"]["outcomes"]
    blocking = [o["rule_id"] for o in outcomes if o["severity"] == "block" and o["status"] in ("fail", "missing",
                                                                                             "inconclusive")]
    assert predicate["result"] == ("FAILED" if blocking else "WARNED" if predicate["warnedTests"] else "PASSED")
    assert predicate["failedTests"] == blocking
    assert predicate["passedTests"] == [o["rule_id"] for o in outcomes if o["status"] == "pass"]
    listed = predicate["passedTests"] + predicate["warnedTests"] + predicate["failedTests"]
    assert sorted(listed) == sorted(o["rule_id"] for o in outcomes if o["status"] != "skipped")
    policy, plan = predicate["configuration"]
    assert policy["digest"] == {"sha256": evidence["policy"]["sha256"]} and policy["name"] == "default.yaml"
    assert plan["digest"] == {"sha256": evidence["plan"]["sha256"]}
    model = formats_run["run_dir"] / "model.safetensors"
    subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    assert subjects == {"model.safetensors": evidence["training"]["model_sha256"],
                        **{"data/" + f["path"].rsplit("/", 1)[-1]: f["sha256"] for f in evidence["dataset"]["files"]}}
    from govssl.records import sha256_file

    assert subjects["model.safetensors"] == sha256_file(model)


def test_test_result__the_govssl_statement_lists_it_among_its_subjects(formats_run):
    attestation = json.loads((formats_run["run_dir"] / "attestation.intoto.json").read_text())
    statement = json.loads(base64.b64decode(attestation["payload"]))
    from govssl.records import sha256_file

    subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    assert subjects[TEST_RESULT_FILE] == sha256_file(formats_run["run_dir"] / TEST_RESULT_FILE)


def test_attest_verify__reads_the_test_result_and_refuses_db_for_it(capsys, formats_run):
    envelope = formats_run["run_dir"] / TEST_RESULT_FILE
    code, out, err = run_cli(capsys, "attest", "verify", str(envelope), "--key", str(formats_run["key"]))
    _, statement = _statement(formats_run)
    predicate = statement["predicate"]
    assert code == 0, err
    assert f"test result {predicate['result']} ({len(predicate['passedTests'])} passed" in " ".join(out.split())
    code, out, err = run_cli(capsys, "attest", "verify", str(envelope), "--key", str(formats_run["key"]),
                             "--db", formats_run["db"])
    assert code == 2 and "records no ledger anchor" in err and "attestation.intoto.json" in err


@pytest.mark.parametrize("case,result", [("pass", "PASSED"), ("warn", "WARNED"), ("waived", "WARNED"),
                                         ("blocked", "FAILED"), ("nothing", "FAILED")])
def test_decision_statement__result_for_each_kind_of_decision(tmp_path, case, result):
    run = make_run(tmp_path)
    outcomes = list(run.decision.outcomes)
    base = replace(outcomes[0], status="pass", severity="block")
    if case == "pass":
        outcomes = [base]
    elif case == "warn":
        outcomes = [base, replace(base, rule_id="w", status="fail", severity="warn")]
    elif case == "waived":
        outcomes = [base, replace(base, rule_id="x", status="waived", waiver={"approver": "a"})]
    elif case == "blocked":
        outcomes = [base, replace(base, rule_id="b", status="missing")]
    else:
        outcomes = [replace(base, status="skipped")]
    run.decision = Decision(tuple(outcomes))
    statement = decision_statement(run)
    _validate(statement)
    assert statement["predicate"]["result"] == result
    if case == "waived":
        assert statement["predicate"]["warnedTests"] == ["x"]
    if case == "blocked":
        assert statement["predicate"]["failedTests"] == ["b"]
    if case == "nothing":
        assert statement["predicate"]["passedTests"] == statement["predicate"]["failedTests"] == []
