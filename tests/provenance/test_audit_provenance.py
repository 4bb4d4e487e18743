"""Provenance inside an audit: the manifest is verified before training, the run's evidence is
signed, and the checks and the datasheet see what was verified."""

from __future__ import annotations

import base64
import json
import re

import pytest
import yaml

from govssl.cli import main
from govssl.provenance import build_manifest, generate_keys, load_signing_key, sign_manifest, write_manifest
from tests.conftest import fast_plan_data
from tests.test_cli import run_cli


def _plan(folder, train_csv, test_csv, **extra) -> dict:
    data = fast_plan_data(train_csv, test_csv)
    data["dataset"]["manifest"] = str(folder / "manifest.json")
    data["checks"].update({"provenance": {}, "data_quality": {}})
    data["provenance"] = {"signing_key": str(folder / "auditor.key"), "trusted_keys": [str(folder / "supplier.pub")]}
    data.update(extra)
    return data


@pytest.fixture(scope="module")
def supplied(tmp_path_factory, adult_csvs):
    """Copies of the small Adult CSVs with a manifest signed by a supplier, and an auditor's key."""
    folder = tmp_path_factory.mktemp("supplied")
    train, test = (folder / "train.csv", folder / "test.csv")
    train.write_bytes(adult_csvs[0].read_bytes())
    test.write_bytes(adult_csvs[1].read_bytes())
    generate_keys(folder / "supplier")
    generate_keys(folder / "auditor")
    manifest = build_manifest([train, test], base=folder, source="UCI Adult, doi:10.24432/C5XW20",
                              license="CC-BY-4.0", creator="Becker and Kohavi")
    write_manifest(sign_manifest(manifest, load_signing_key(folder / "supplier.key")), folder / "manifest.json")
    (folder / "answers.yaml").write_text("motivation.01: A benchmark for income prediction.\n"
                                         "composition.02: Also stated by the authors.\n")
    return folder


@pytest.fixture(scope="module")
def audited(supplied):
    data = _plan(supplied, supplied / "train.csv", supplied / "test.csv")
    data["dataset"]["datasheet"] = "answers.yaml"
    plan = supplied / "plan.yaml"
    plan.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(SystemExit) as info:
        main(["audit", str(plan), "--db", f"sqlite:///{supplied / 'audit.db'}", "--out", str(supplied / "out"), "--quiet"])
    return {"code": info.value.code, "run_dir": next((supplied / "out").iterdir()), "folder": supplied}


def test_audit__envelope_verifies_with_the_auditors_key_and_a_flipped_byte_fails(capsys, audited):
    envelope = audited["run_dir"] / "attestation.intoto.json"
    pub = str(audited["folder"] / "auditor.pub")
    code, out, _ = run_cli(capsys, "attest", "verify", str(envelope), "--key", pub)
    assert audited["code"] in (0, 1)
    assert code == 0 and "signature valid" in out
    stmt = json.loads(base64.b64decode(json.loads(envelope.read_text())["payload"]))
    names = {s["name"] for s in stmt["subject"]}
    assert {"model.safetensors", "model_card.md", "rmf_report.md", "datasheet.md", "evidence.json",
            "data/train.csv", "data/test.csv"} <= names
    evidence = json.loads((audited["run_dir"] / "evidence.json").read_text())
    assert stmt["predicate"]["decision"]["verdict"] == evidence["decision"]["verdict"]

    tampered = audited["folder"] / "tampered.json"
    env = json.loads(envelope.read_text())
    payload = bytearray(base64.b64decode(env["payload"]))
    payload[len(payload) // 2] ^= 0x01
    env["payload"] = base64.b64encode(bytes(payload)).decode()
    tampered.write_text(json.dumps(env))
    code, _, err = run_cli(capsys, "attest", "verify", str(tampered), "--key", pub)
    assert code == 3 and "tampered.json" in err


def test_attest_verify__a_removed_run_file_exits_3_naming_it(capsys, audited, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(audited["run_dir"], copy)
    (copy / "model.safetensors").unlink()
    code, _, err = run_cli(capsys, "attest", "verify", str(copy / "attestation.intoto.json"),
                           "--key", str(audited["folder"] / "auditor.pub"))
    assert code == 3 and "model.safetensors" in err and "missing" in err


def test_audit__provenance_check_sees_the_verified_signed_manifest(audited):
    evidence = json.loads((audited["run_dir"] / "evidence.json").read_text())
    prov = {m["metric"]: m["value"] for c in evidence["checks"] if c["check"] == "provenance" for m in c["measurements"]}
    assert prov == {"manifest_verified": True, "signature_valid": True, "signer_trusted": True,
                    "license_allowed": True, "source_declared": True}
    quality = next(c for c in evidence["checks"] if c["check"] == "data_quality")
    assert quality["status"] == "measured"
    pii = next(m for m in quality["measurements"] if m["metric"] == "undeclared_pii_columns")
    assert pii["value"] == 0


def test_audit__datasheet_counts_derived_supplied_and_unanswered(audited):
    text = (audited["run_dir"] / "datasheet.md").read_text()
    head = text.split("\n## ")[0]
    derived, supplied, unanswered = map(int, re.search(
        r"\*\*(\d+) derived\*\*.*\*\*(\d+) supplied\*\*.*\*\*(\d+) unanswered\*\*", head).groups())
    assert derived + supplied + unanswered == 57 and supplied == 2 and derived >= 10
    assert "A benchmark for income prediction." in text
    # a supplied answer is never replaced; what the audit derives for the question goes beside it
    block = text.split("(`composition.02`, supplied)", 1)[1].split("**", 1)[0]
    assert "Also stated by the authors." in block
    assert "From the audited data: 7000 rows as audited: 4000 for training and 3000 for testing." in block
    # the plan names no owners, so the answers are the plan's authors'
    assert "supplied** by the plan's authors (`answers.yaml`)" in head and "dataset's authors" not in text


def test_audit__source_licence_and_creator_come_from_the_verified_manifest(audited):
    """The plan states no source, licence or creator; the signed manifest does."""
    run_dir = audited["run_dir"]
    card = (run_dir / "model_card.md").read_text()
    evaluation = card.split("## Evaluation data", 1)[1].split("\n## ", 1)[0]
    assert "- Source: UCI Adult, doi:10.24432/C5XW20\n" in evaluation
    assert "- License: CC-BY-4.0\n" in evaluation and "- Creator: Becker and Kohavi\n" in evaluation
    assert "From the verified data manifest `manifest.json`: source, license, creator" in evaluation
    assert "not declared" not in evaluation
    html = (run_dir / "model_card.html").read_text()
    assert "<li>Source: UCI Adult, doi:10.24432/C5XW20</li>" in html and "<li>Creator: Becker and Kohavi</li>" in html
    sheet = (run_dir / "datasheet.md").read_text()
    assert "- Source: UCI Adult, doi:10.24432/C5XW20\n- Licence: CC-BY-4.0\n- Creator: Becker and Kohavi\n" in sheet
    assert "Licence: CC-BY-4.0 (from the verified data manifest manifest.json)." in sheet
    assert "Becker and Kohavi (from the verified data manifest manifest.json)." in sheet
    description = json.loads((run_dir / "model_card.json").read_text())["model_parameters"]["data"][0]["description"]
    assert "Source: UCI Adult, doi:10.24432/C5XW20." in description and "Creator: Becker and Kohavi." in description


def test_audit__private_keys_stay_out_of_the_run_folder_and_the_store(audited):
    folder = audited["folder"]
    secrets = [(folder / n).read_text().splitlines()[1] for n in ("auditor.key", "supplier.key")]
    for path in list(audited["run_dir"].iterdir()) + [folder / "audit.db"]:
        data = path.read_bytes()
        assert not any(s.encode() in data for s in secrets), path


def test_audit__data_that_differs_from_its_manifest_exits_3_before_training(capsys, supplied, tmp_path):
    folder = tmp_path
    for name in ("train.csv", "test.csv", "manifest.json", "auditor.key", "supplier.pub"):
        (folder / name).write_bytes((supplied / name).read_bytes())
    lines = (folder / "train.csv").read_text().splitlines(keepends=True)
    (folder / "train.csv").write_text("".join(lines[:-1]))  # one row deleted
    plan = folder / "plan.yaml"
    plan.write_text(yaml.safe_dump(_plan(folder, folder / "train.csv", folder / "test.csv")))
    db = folder / "audit.db"
    code, _, err = run_cli(capsys, "audit", str(plan), "--db", f"sqlite:///{db}", "--out", str(folder / "out"), "-q")
    assert code == 3
    assert str((folder / "train.csv").resolve()) in " ".join(err.split()) and "row(s) fewer" in err
    assert not (folder / "out").exists() or not any((folder / "out").iterdir())
    assert not db.exists()  # verification runs before the store is even opened


def test_audit__a_plan_file_outside_its_manifest_exits_3(capsys, supplied, tmp_path):
    other = tmp_path / "other.csv"
    other.write_bytes((supplied / "train.csv").read_bytes())
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(_plan(supplied, other, supplied / "test.csv")))
    code, _, err = run_cli(capsys, "audit", str(plan), "--db", f"sqlite:///{tmp_path / 'a.db'}", "--out", str(tmp_path / "out"), "-q")
    assert code == 3 and "other.csv" in err and "not listed in the manifest" in " ".join(err.split())


def test_audit__unknown_datasheet_question_id_exits_2_naming_file_and_key(capsys, supplied, tmp_path):
    answers = tmp_path / "answers.yaml"
    answers.write_text("motivation.01: fine\nmotivation.99: no such question\n")
    data = _plan(supplied, supplied / "train.csv", supplied / "test.csv")
    data["dataset"]["datasheet"] = str(answers)
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(data))
    code, _, err = run_cli(capsys, "audit", str(plan), "--db", f"sqlite:///{tmp_path / 'a.db'}", "--out", str(tmp_path / "out"), "-q")
    assert code == 2 and "answers.yaml: motivation.99: unknown question id" in " ".join(err.split())
    assert not (tmp_path / "out").exists()


def test_audit__image_folder_with_a_manifest_exits_2_saying_folders_are_not_supported(capsys, tmp_path):
    import numpy as np
    import yaml
    from PIL import Image

    for name in ("a", "b"):
        (tmp_path / "imgs" / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((4, 4), 50 * i, dtype=np.uint8)).save(tmp_path / "imgs" / name / f"{i}.png")
    (tmp_path / "m.json").write_text("{}")
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump({"name": "imgs", "dataset": {"path": "imgs", "manifest": "m.json"},
                                    "training": {"pretrain": {"method": "rotation"}}, "checks": {}}))
    code, _, err = run_cli(capsys, "audit", str(plan), "--db", f"sqlite:///{tmp_path / 'a.db'}")
    assert code == 2 and "dataset.manifest" in err and "folder" in err
