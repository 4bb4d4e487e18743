"""in-toto Statement v1 in a DSSE envelope: written for a run, verified, and broken by any change."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest

from govssl.errors import ConfigError, IntegrityError
from govssl.provenance import (
    PAYLOAD_TYPE, STATEMENT_TYPE, generate_keys, ledger_anchor, load_public_key, load_signing_key,
    statement, verify_envelope, write_attestation,
)
from govssl.records import Artifact
from tests.conftest import run_cli
from tests.reports.test_render import make_run


@pytest.fixture
def run_with_envelope(tmp_path):
    run = make_run(tmp_path)
    for artifact in run.artifacts:  # a real run keeps its model and predictions beside the envelope
        shutil.copy(artifact.path, tmp_path / "out" / Path(artifact.path).name)
    doc = tmp_path / "out" / "model_card.md"
    doc.write_text("# card\n")
    run.artifacts.append(Artifact.of("model_card", doc))
    private, public = generate_keys(tmp_path / "signer")
    artifact = write_attestation(run, load_signing_key(private))
    return run, artifact, load_public_key(public), tmp_path


def test_write_attestation__statement_v1_with_hashed_subjects_and_the_decision(run_with_envelope):
    run, artifact, key, _ = run_with_envelope
    envelope = json.loads(open(artifact.path).read())
    assert envelope["payloadType"] == PAYLOAD_TYPE and len(envelope["signatures"]) == 1
    assert envelope["signatures"][0]["keyid"] == key.keyid
    stmt = json.loads(base64.b64decode(envelope["payload"]))
    assert stmt["_type"] == STATEMENT_TYPE
    subjects = {s["name"]: s["digest"]["sha256"] for s in stmt["subject"]}
    for a in run.artifacts:
        assert a.sha256 in subjects.values(), a.kind
    for f in run.dataset.files:
        assert subjects["data/" + f["path"].split("/")[-1]] == f["sha256"]
    assert stmt["predicate"]["decision"]["verdict"] == run.decision.verdict
    assert stmt["predicate"]["policy"]["sha256"] == run.policy_sha256
    assert stmt["predicate"]["measurements"]
    assert verify_envelope(artifact.path, key) == stmt


def test_verify_envelope__one_flipped_payload_byte_fails(run_with_envelope):
    _, artifact, key, _ = run_with_envelope
    envelope = json.loads(open(artifact.path).read())
    body = bytearray(base64.b64decode(envelope["payload"]))
    body[body.index(b'"verdict":"') + 11] ^= 0x01
    envelope["payload"] = base64.b64encode(bytes(body)).decode()
    with open(artifact.path, "w") as fh:
        json.dump(envelope, fh)
    with pytest.raises(IntegrityError, match="no valid signature"):
        verify_envelope(artifact.path, key)


def test_verify_envelope__wrong_key_and_unsigned_envelopes_fail(run_with_envelope, tmp_path):
    run, artifact, _, _ = run_with_envelope
    _, other = generate_keys(tmp_path / "other")
    with pytest.raises(IntegrityError, match="other.pub"):
        verify_envelope(artifact.path, load_public_key(other))
    unsigned = write_attestation(run, None)
    assert json.loads(open(unsigned.path).read())["signatures"] == []
    with pytest.raises(IntegrityError):
        verify_envelope(unsigned.path, load_public_key(other))


def test_verify_envelope__a_document_changed_after_signing_fails_naming_it(run_with_envelope):
    _, artifact, key, tmp_path = run_with_envelope
    doc = tmp_path / "out" / "model_card.md"
    doc.write_text("# card, edited\n")
    with pytest.raises(IntegrityError) as info:
        verify_envelope(artifact.path, key)
    assert str(info.value).startswith(str(doc))


ANCHOR = {"store": "sqlite:///audit.db", "seq": 23, "hash": "ab" * 32}


def test_statement__records_the_ledger_anchor_given(tmp_path):
    run = make_run(tmp_path)
    assert "ledger_anchor" not in statement(run)["predicate"]
    stmt = statement(run, ANCHOR)
    assert stmt["predicate"]["ledger_anchor"] == ANCHOR
    assert ledger_anchor(stmt, "e.json") == ANCHOR


@pytest.mark.parametrize("anchor", [
    {"store": "s", "seq": -1, "hash": "ab" * 32}, {"store": "s", "seq": "23", "hash": "ab" * 32},
    {"store": "s", "seq": True, "hash": "ab" * 32}, {"store": "s", "seq": 23, "hash": "AB" * 32},
    {"store": "s", "seq": 23, "hash": "ab"}, {"store": "s", "seq": 23}, "23:abab", [23, "ab" * 32],
])
def test_ledger_anchor__malformed_anchor_is_a_config_error_naming_the_envelope(anchor):
    with pytest.raises(ConfigError, match=r"^e\.json: the signed statement's ledger_anchor is not"):
        ledger_anchor({"predicate": {"ledger_anchor": anchor}}, "e.json")


def test_attest_verify__db_checks_need_an_anchor_and_an_existing_store(capsys, run_with_envelope):
    run, artifact, key, tmp_path = run_with_envelope
    pub = str(tmp_path / "signer.pub")
    db = tmp_path / "nowhere" / "audit.db"
    code, _, err = run_cli(capsys, "attest", "verify", str(artifact.path), "--key", pub, "--db", f"sqlite:///{db}")
    err = " ".join(err.split())
    assert code == 2 and str(artifact.path) in err and "records no ledger anchor" in err  # an envelope of before

    anchored = write_attestation(run, load_signing_key(tmp_path / "signer.key"), anchor=ANCHOR)
    code, _, err = run_cli(capsys, "attest", "verify", str(anchored.path), "--key", pub, "--db", f"sqlite:///{db}")
    err = " ".join(err.split())
    assert code == 2 and "there is no audit store at" in err and str(db) in err and "Traceback" not in err
    assert not db.exists() and not db.parent.exists()  # nothing was created
    code, out, _ = run_cli(capsys, "attest", "verify", str(anchored.path), "--key", pub)
    assert code == 0 and "signature valid" in out  # without --db the store is not consulted


@pytest.mark.parametrize("payload", [[1, 2], "text", 3])
def test_verify_envelope__a_signed_payload_that_is_not_a_statement_fails_as_integrity(tmp_path, payload):
    from govssl.provenance._intoto import envelope

    private, public = generate_keys(tmp_path / "signer")
    path = tmp_path / "attestation.intoto.json"
    path.write_text(json.dumps(envelope(payload, load_signing_key(private))))
    with pytest.raises(IntegrityError, match="not an in-toto Statement v1"):
        verify_envelope(path, load_public_key(public))


def test_statement__every_file_of_the_run_folder_but_the_envelope_is_a_subject(tmp_path):
    from govssl.reports import render
    from govssl.records import sha256_file

    run = make_run(tmp_path)
    out = Path(run.out_dir)
    for artifact in list(run.artifacts):  # a real run keeps its model and predictions in its folder
        moved = out / Path(artifact.path).name
        shutil.copy(artifact.path, moved)
        run.artifacts[run.artifacts.index(artifact)] = Artifact.of(artifact.kind, moved)
    (out / "robustness.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>\n")
    run.artifacts.extend(render(run, out))
    write_attestation(run, None)
    stmt = statement(run)
    subjects = {s["name"]: s["digest"]["sha256"] for s in stmt["subject"]}
    files = {p.name for p in out.iterdir() if p.name != "attestation.intoto.json"}
    assert {"model_card.json", "model_card.html", "rmf_report.html", "datasheet.html", "robustness.svg"} <= files
    assert {name for name in subjects if not name.startswith("data/")} == files
    for name in files:
        assert subjects[name] == sha256_file(out / name), name
    assert "attestation.intoto.json" not in subjects
