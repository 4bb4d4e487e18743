"""The README's demo audit in every format (slow: the full Adult data and training budget)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import mlcroissant as mlc
import mlflow
import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from govssl.provenance import TEST_RESULT_FILE
from tests.conftest import REPO

pytestmark = pytest.mark.slow


def _govssl(*argv: str) -> subprocess.CompletedProcess:
    """The command line in a process of its own, as CI runs it."""
    return subprocess.run([sys.executable, "-m", "govssl.cli", *argv], capture_output=True, text=True, timeout=3600)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo-formats")
    db, uri = f"sqlite:///{folder / 'audit.db'}", f"sqlite:///{folder / 'mlflow.db'}"
    done = _govssl("audit", str(REPO / "audits" / "adult-income.yaml"), "--db", db, "--out", str(folder / "out"),
                   "--quiet", "--mlflow", uri)
    assert done.returncode in (0, 1), done.stderr
    run_dir = next((folder / "out").iterdir())
    for name in ("cyclonedx", "croissant"):
        done = _govssl("export", run_dir.name, "--format", name, "--out", str(folder / f"{name}.json"), "--db", db)
        assert done.returncode == 0, done.stderr
    return {"folder": folder, "run_dir": run_dir, "uri": uri,
            "evidence": json.loads((run_dir / "evidence.json").read_text(encoding="utf-8"))}


def test_demo__cyclonedx_bom_validates_with_the_strict_1_6_validator(demo):
    text = (demo["folder"] / "cyclonedx.json").read_text(encoding="utf-8")
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    model = json.loads(text)["components"][0]
    assert model["hashes"][0]["content"] == demo["evidence"]["training"]["model_sha256"]
    slices = {m["slice"] for m in model["modelCard"]["quantitativeAnalysis"]["performanceMetrics"]}
    assert {"", "sex=Female", "race", "sex*race"} <= slices


def test_demo__croissant_validates_with_mlcroissant(demo):
    metadata = mlc.Dataset(jsonld=str(demo["folder"] / "croissant.json")).metadata
    assert metadata.ctx.issues.errors == set()
    document = json.loads((demo["folder"] / "croissant.json").read_text(encoding="utf-8"))
    # the built-in Adult data ships a manifest and the demo plan a datasheet answers file
    assert document["license"] == "https://spdx.org/licenses/CC-BY-4.0.html"
    for key in ("rai:dataCollection", "rai:dataBiases", "rai:dataLimitations", "rai:personalSensitiveInformation",
                "rai:dataUseCases"):
        assert document.get(key), key


def test_demo__test_result_predicate_validates(demo):
    schema = json.loads((Path(__file__).parent / "in_toto_test_result_v0.1.schema.json").read_text(encoding="utf-8"))
    envelope = json.loads((demo["run_dir"] / TEST_RESULT_FILE).read_text(encoding="utf-8"))
    statement = json.loads(base64.b64decode(envelope["payload"]))
    jsonschema.validate(statement, schema, cls=jsonschema.Draft202012Validator)
    verdict = demo["evidence"]["decision"]["verdict"]
    assert (statement["predicate"]["result"] == "FAILED") == (verdict == "blocked")


def test_demo__mlflow_metrics_equal_evidence_json(demo):
    mlflow.set_tracking_uri(demo["uri"])
    logged = mlflow.search_runs(experiment_names=["adult-income"]).iloc[0]
    for check in demo["evidence"]["checks"]:
        for m in check["measurements"]:
            if m["subject"] == "" and not isinstance(m["value"], str):
                assert logged[f"metrics.{check['check']}.{m['metric']}"] == float(m["value"]), m["metric"]
