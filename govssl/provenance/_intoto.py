"""Signed evidence of an audit: an in-toto Statement v1 in a DSSE envelope.

Subjects are the files the decision is about by sha256: every file of the run folder (model,
predictions, documents, charts) but the envelope, and the audited data files; the predicate
carries the decision, the policy's hash, a summary of the measurements and the audit store's
ledger head before the run was saved (``ledger_anchor``: store, seq, hash). Signed with a key
kept outside the database, that anchor is what makes a consistent rewrite of the store's whole
chain detectable. Formats: in-toto Attestation Framework, Statement v1; DSSE (Dead Simple
Signing Envelope) v1.

Beside it, the decision is also stated in the standard in-toto test-result predicate
(``https://in-toto.io/attestation/test-result/v0.1``; source: the in-toto Attestation Framework,
``spec/predicates/test-result.md``, predicate version 0.1.0), signed the same way, so that a
generic in-toto verifier reads pass or fail without knowing govssl: its subjects are the model
file and the audited data files, ``result`` is PASSED, WARNED or FAILED, ``configuration`` the
policy and the plan by sha256, and the policy's rules are the tests.
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path

from govssl.errors import ConfigError, IntegrityError
from govssl.provenance._keys import PublicKey, SigningKey, canonical_json
from govssl.records import Artifact, AuditRun, sha256_file

__all__ = [
    "STATEMENT_TYPE", "PAYLOAD_TYPE", "PREDICATE_TYPE", "ATTESTATION_FILE",
    "statement", "envelope", "write_attestation", "verify_envelope", "ledger_anchor",
    "TEST_RESULT_TYPE", "TEST_RESULT_FILE", "decision_statement", "write_decision_attestation",
]

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
PREDICATE_TYPE = "urn:govssl:predicate:audit-decision:v1"
ATTESTATION_FILE = "attestation.intoto.json"
TEST_RESULT_TYPE = "https://in-toto.io/attestation/test-result/v0.1"
TEST_RESULT_FILE = "test-result.intoto.json"


def _subjects(run: AuditRun) -> list[dict]:
    """Every file of the run folder (documents, model, predictions, charts: all but the envelope
    itself), by path relative to the folder; a run artifact kept outside the folder by its name;
    the audited data files as ``data/<name>``."""
    out_dir = Path(run.out_dir)
    subjects, seen = [], set()
    for path in sorted(p for p in out_dir.rglob("*") if p.is_file()):
        name = path.relative_to(out_dir).as_posix()
        if name == ATTESTATION_FILE or path.name.startswith("."):  # "." files: a write in progress
            continue
        subjects.append({"name": name, "digest": {"sha256": sha256_file(path)}})
        seen.add(path.resolve())
    for artifact in run.artifacts:
        path = Path(artifact.path)
        if artifact.kind != "attestation" and path.resolve() not in seen and not path.is_relative_to(out_dir):
            subjects.append({"name": path.name, "digest": {"sha256": artifact.sha256}})
    for f in run.dataset.files:
        subjects.append({"name": f"data/{Path(f['path']).name}", "digest": {"sha256": f["sha256"]}})
    return subjects


def _measurement_summary(run: AuditRun) -> list[dict]:
    # Model-wide figures and gaps; per-group rows ("sex=Female") stay in evidence.json.
    return [
        {"check": m.check, "metric": m.metric, "subject": m.subject, "value": m.value,
         **({"ci": [m.ci_low, m.ci_high]} if m.ci_low is not None else {})}
        for m in run.measurements if "=" not in m.subject
    ]


def statement(run: AuditRun, anchor: dict | None = None) -> dict:
    """The in-toto Statement v1 of an audit run; ``anchor`` (``{"store", "seq", "hash"}``, the
    store's ledger head before the run is saved) goes into the predicate as ``ledger_anchor``."""
    stmt = {
        "_type": STATEMENT_TYPE,
        "subject": _subjects(run),
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "run_id": run.run_id,
            "created_at": run.created_at,
            "tool": f"govssl {run.govssl_version}",
            "decision": {"verdict": run.decision.verdict, "exit_code": run.decision.exit_code,
                         "blocking_rules": [o.rule_id for o in run.decision.blockers]},
            "policy": {"name": run.policy_name, "version": run.policy_version, "sha256": run.policy_sha256},
            "plan": {"name": run.plan_name, "sha256": run.plan_sha256},
            "checks": {r.check: r.status for r in run.results},
            "measurements": _finite(_measurement_summary(run)),
        },
    }
    if anchor is not None:
        stmt["predicate"]["ledger_anchor"] = {
            "store": str(anchor["store"]), "seq": int(anchor["seq"]), "hash": str(anchor["hash"])
        }
    return stmt


def _tests(run: AuditRun) -> tuple[list[str], list[str], list[str]]:
    """The policy's rules as tests: (passed, warned, failed) rule ids. A failing rule of severity
    warn, and a blocking failure accepted by a waiver, passed with a warning; a rule that blocks
    the release failed; a skipped rule (its check did not run) is in none of the lists."""
    passed, warned, failed = [], [], []
    for o in run.decision.outcomes:
        if o.status == "pass":
            passed.append(o.rule_id)
        elif o.blocking:
            failed.append(o.rule_id)
        elif o.status != "skipped":
            warned.append(o.rule_id)
    return passed, warned, failed


def decision_statement(run: AuditRun) -> dict:
    """The run's decision as an in-toto Statement v1 with the test-result v0.1 predicate.

    Subjects (the artifacts tested): the model file by its name in the run folder, and the
    audited data files as ``data/<name>``, each by sha256. ``result``: FAILED when the release is
    blocked, WARNED when it passes with warnings or waived failures, PASSED otherwise."""
    subjects = []
    model = next((a for a in run.artifacts if a.kind == "model"), None)
    if model is not None:
        path, out_dir = Path(model.path), Path(run.out_dir)
        name = path.relative_to(out_dir).as_posix() if path.is_relative_to(out_dir) else path.name
        subjects.append({"name": name, "digest": {"sha256": model.sha256}})
    for f in run.dataset.files:
        subjects.append({"name": f"data/{Path(f['path']).name}", "digest": {"sha256": f["sha256"]}})
    passed, warned, failed = _tests(run)
    result = "FAILED" if not run.decision.passed else "WARNED" if warned else "PASSED"
    configuration = [
        {"name": Path(run.policy_path).name or run.policy_name, "digest": {"sha256": run.policy_sha256},
         "mediaType": "application/yaml",
         "annotations": {"kind": "govssl policy", "policy": run.policy_name, "version": run.policy_version}},
    ]
    if run.plan_sha256:
        configuration.append(
            {"name": Path(run.plan_path).name or run.plan_name, "digest": {"sha256": run.plan_sha256},
             "mediaType": "application/yaml", "annotations": {"kind": "govssl audit plan", "plan": run.plan_name,
                                                              "run_id": run.run_id}})
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": TEST_RESULT_TYPE,
        "predicate": {
            "result": result,
            "configuration": configuration,
            "passedTests": passed,
            "warnedTests": warned,
            "failedTests": failed,
        },
    }


def write_decision_attestation(run: AuditRun, key: SigningKey | None) -> Artifact:
    """Write the run's test-result envelope into its folder, signed like the govssl one (before
    it, so that the govssl statement lists this file among its subjects)."""
    path = Path(run.out_dir) / TEST_RESULT_FILE
    path.write_text(json.dumps(envelope(decision_statement(run), key), indent=2) + "\n", encoding="utf-8")
    return Artifact.of("attestation", path)


def _finite(value):
    """JSON has no NaN or infinity: such floats travel as the strings "nan", "inf", "-inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def envelope(stmt: dict, key: SigningKey | None) -> dict:
    """A DSSE envelope around the statement; ``signatures`` is empty when no key is configured."""
    body = canonical_json(stmt)
    return {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(body).decode("ascii"),
        "signatures": [key.sign(PAYLOAD_TYPE, body)] if key is not None else [],
    }


def write_attestation(run: AuditRun, key: SigningKey | None, anchor: dict | None = None) -> Artifact:
    """Write the run's envelope into its folder (after the documents, whose hashes it lists);
    ``anchor`` as for :func:`statement`."""
    path = Path(run.out_dir) / ATTESTATION_FILE
    path.write_text(json.dumps(envelope(statement(run, anchor), key), indent=2) + "\n", encoding="utf-8")
    return Artifact.of("attestation", path)


def verify_envelope(path: str | Path, key: PublicKey) -> dict:
    """Verify an envelope's signature by ``key`` and the subjects found beside it; return the statement.

    Raises IntegrityError on a bad signature, a payload that is not a Statement v1, or a subject
    file in the envelope's folder whose sha256 differs.
    """
    path = Path(path)
    try:
        env = json.loads(path.read_text(encoding="utf-8"))
        body = base64.b64decode(env["payload"], validate=True)
        payload_type, signatures = env["payloadType"], env["signatures"]
    except FileNotFoundError:
        raise ConfigError(f"{path}: envelope file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise IntegrityError(f"{path}: not a readable DSSE envelope: {type(exc).__name__}: {exc}") from None
    if not any(isinstance(s, dict) and s.get("keyid") == key.keyid and key.verifies(payload_type, body, str(s.get("sig", "")))
               for s in signatures):
        raise IntegrityError(
            f"{path}: no valid signature by the key in {key.name or 'the given key'} (key {key.keyid[:16]}...); "
            f"the envelope is unsigned, signed by another key, or was changed after signing"
        )
    try:
        stmt = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IntegrityError(f"{path}: the payload is not JSON: {exc}") from None
    if payload_type != PAYLOAD_TYPE or not isinstance(stmt, dict) or stmt.get("_type") != STATEMENT_TYPE:
        kind = stmt.get("_type") if isinstance(stmt, dict) else type(stmt).__name__
        raise IntegrityError(f"{path}: not an in-toto Statement v1 ({payload_type}, {kind})")
    problems = []
    for subject in stmt.get("subject", []):
        file = path.parent / subject["name"]
        if not file.is_file():
            # the run's own files live beside the envelope and must be there; the data files
            # ("data/...") are checked when someone puts them there
            if not subject["name"].startswith("data/"):
                problems.append(f"{file}: missing; the signed statement lists it")
        elif sha256_file(file) != subject["digest"]["sha256"]:
            problems.append(f"{file}: sha256 differs from the signed statement")
    if problems:
        raise IntegrityError(f"{problems[0].split(':')[0]}: changed or removed since the audit signed it", problems)
    return stmt


def ledger_anchor(stmt: dict, path: str | Path) -> dict:
    """The ledger anchor ``{"store", "seq", "hash"}`` a verified statement records.

    Raises ConfigError naming the envelope when it records none (written before govssl
    recorded anchors, or not by govssl) or one that is not a seq and a 64-hex-digit hash.
    """
    predicate = stmt.get("predicate")
    anchor = predicate.get("ledger_anchor") if isinstance(predicate, dict) else None
    if anchor is None:
        raise ConfigError(f"{path}: the signed statement records no ledger anchor, so it cannot be checked "
                          f"against a store (--db); it was written before govssl recorded one, or not by govssl")
    seq = anchor.get("seq") if isinstance(anchor, dict) else None
    digest = anchor.get("hash") if isinstance(anchor, dict) else None
    if not (isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0 and isinstance(digest, str)
            and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
        raise ConfigError(f"{path}: the signed statement's ledger_anchor is not a seq (0 or more) and a "
                          f"64-hex-digit hash: {anchor!r}")
    return {"store": str(anchor.get("store", "")), "seq": seq, "hash": digest}
