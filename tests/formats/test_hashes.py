"""Every format names the model and the data by the sha256 that `govssl gate` and `govssl attest
verify` check: the model file's (gate hashes the file it is given) and each data file's (attest
verify checks the files it finds as data/<name> beside an envelope)."""

from __future__ import annotations

import base64
import json
import shutil

import mlflow

from govssl.provenance import TEST_RESULT_FILE
from govssl.records import sha256_file
from tests.conftest import REPO, run_cli


def _payload(path) -> dict:
    return json.loads(base64.b64decode(json.loads(path.read_text())["payload"]))


def test_every_format_carries_the_sha256_that_gate_and_attest_verify_use(capsys, formats_run, tmp_path):
    run_id, db, run_dir = formats_run["run_id"], formats_run["db"], formats_run["run_dir"]
    model = run_dir / "model.safetensors"
    data = {f.name: f for f in (formats_run["folder"] / "train.csv", formats_run["folder"] / "test.csv")}
    model_sha = sha256_file(model)
    data_sha = {name: sha256_file(path) for name, path in data.items()}

    # gate finds this run by the model file's sha256 under the audited policy
    code, out, _ = run_cli(capsys, "gate", "--model", str(model), "--policy", str(REPO / "policies" / "default.yaml"),
                           "--db", db, "--json")
    verdict = json.loads(out)
    assert verdict["model_sha256"] == model_sha
    assert (verdict["run_id"] == run_id) if code == 0 else (code == 1 and run_id in verdict["reason"])

    # attest verify: both envelopes, with the data files beside them, hold; a changed data file fails
    folder = tmp_path / "release"
    shutil.copytree(run_dir, folder)
    (folder / "data").mkdir()
    for name, path in data.items():
        shutil.copy(path, folder / "data" / name)
    for envelope in ("attestation.intoto.json", TEST_RESULT_FILE):
        code, _, err = run_cli(capsys, "attest", "verify", str(folder / envelope), "--key", str(formats_run["key"]))
        assert code == 0, err
    with open(folder / "data" / "test.csv", "a") as fh:
        fh.write("\n")
    code, _, err = run_cli(capsys, "attest", "verify", str(folder / TEST_RESULT_FILE), "--key", str(formats_run["key"]))
    assert code == 3 and "test.csv" in err

    # the formats
    for name in ("cyclonedx", "croissant"):
        code, _, err = run_cli(capsys, "export", run_id, "--format", name, "--out", str(tmp_path / name), "--db", db)
        assert code == 0, err
    bom = json.loads((tmp_path / "cyclonedx").read_text())
    components = bom["components"]
    assert components[0]["hashes"] == [{"alg": "SHA-256", "content": model_sha}]
    assert {c["name"]: c["hashes"][0]["content"] for c in components if c["bom-ref"].startswith("data-")} == data_sha

    croissant = json.loads((tmp_path / "croissant").read_text())
    assert {d["name"]: d["sha256"] for d in croissant["distribution"]} == data_sha

    for envelope in ("attestation.intoto.json", TEST_RESULT_FILE):
        subjects = {s["name"]: s["digest"]["sha256"] for s in _payload(run_dir / envelope)["subject"]}
        assert subjects["model.safetensors"] == model_sha
        assert {n: subjects[f"data/{n}"] for n in data} == data_sha

    mlflow.set_tracking_uri(formats_run["mlflow"])
    logged = mlflow.search_runs(experiment_names=["adult-formats"]).iloc[0]
    assert logged["tags.govssl.model_sha256"] == model_sha
    assert {n: logged[f"tags.govssl.data.{n}.sha256"] for n in data} == data_sha
