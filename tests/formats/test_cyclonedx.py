"""`govssl export --format cyclonedx`: a CycloneDX 1.6 ML-BOM that cyclonedx-python-lib's strict
validator accepts, with every figure of evidence.json in the model card."""

from __future__ import annotations

import copy
import json

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from tests.conftest import run_cli


@pytest.fixture(scope="module")
def bom(formats_run, tmp_path_factory):
    from tests.formats.conftest import cli

    path = tmp_path_factory.mktemp("bom") / "bom.cdx.json"
    code, out, err = cli("export", formats_run["run_id"], "--format", "cyclonedx", "--out", str(path),
                         "--db", formats_run["db"])
    assert code == 0, err
    assert f"exported run {formats_run['run_id']} to {path}: CycloneDX 1.6 BOM" in out
    return json.loads(path.read_text(encoding="utf-8")), path


def _validate(document: dict):
    return JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(document))


def test_bom__validates_against_the_cyclonedx_1_6_schema_strictly(bom):
    document, path = bom
    assert document["bomFormat"] == "CycloneDX" and document["specVersion"] == "1.6"
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(path.read_text(encoding="utf-8")) is None


@pytest.mark.parametrize("break_it", [
    lambda d: d["components"][0]["modelCard"]["modelParameters"]["approach"].update(type="contrastive"),
    lambda d: d["components"][0]["modelCard"]["quantitativeAnalysis"]["performanceMetrics"][0].update(value=0.8),
    lambda d: d["components"][0]["hashes"][0].update(content="not-a-hash"),
    lambda d: d["components"][0]["modelCard"].update(owner="someone"),
], ids=["approach", "number-not-string", "hash", "unknown-key"])
def test_bom__the_validator_rejects_a_broken_bom(bom, break_it):
    document = copy.deepcopy(bom[0])
    break_it(document)
    assert _validate(document) is not None


def test_bom__model_is_a_machine_learning_model_with_its_model_card(bom, formats_run):
    document, _ = bom
    model = document["components"][0]
    assert model["type"] == "machine-learning-model"
    card = model["modelCard"]
    params = card["modelParameters"]
    assert params["approach"] == {"type": "self-supervised"}  # SCARF pretraining on unlabelled rows
    training = formats_run["evidence"]["training"]
    assert training["architecture"] in params["modelArchitecture"]
    assert params["task"].startswith("tabular-classification")
    refs = {c["bom-ref"]: c for c in document["components"]}
    assert [refs[d["ref"]]["type"] for d in params["datasets"]] == ["data", "data"]
    considerations = card["considerations"]
    assert considerations["users"] == ["loan officers in tests"]
    assert considerations["useCases"] == ["tests"]
    assert considerations["ethicalConsiderations"] == [
        {"name": "income proxies sex and race", "mitigationStrategy": "audited per group"}]
    failed = [o["rule_id"] for o in formats_run["evidence"]["decision"]["outcomes"] if o["status"] == "fail"]
    for rule in failed:
        assert any(rule in text for text in considerations["technicalLimitations"]), rule
    properties = {p["name"]: p["value"] for p in card["properties"]}
    assert properties["govssl:decision"] == formats_run["evidence"]["decision"]["verdict"]
    assert properties["govssl:run_id"] == formats_run["run_id"]


def test_bom__fairness_assessments_name_each_attribute_and_its_gaps(bom, formats_run):
    assessments = bom[0]["components"][0]["modelCard"]["considerations"]["fairnessAssessments"]
    attributes = [a["groupAtRisk"].split(":")[0] for a in assessments]
    assert attributes == ["sex", "race", "sex*race"]
    evidence = {(m["metric"], m["subject"]): m for c in formats_run["evidence"]["checks"] if c["check"] == "fairness"
                for m in c["measurements"]}
    gap = evidence[("equalized_odds_difference", "sex")]["value"]
    assert f"equalized_odds_difference {gap:.4g}" in assessments[0]["harms"]
    rates = {s: m["value"] for (metric, s), m in evidence.items() if metric == "true_positive_rate"
             and s.startswith("sex=") and "*" not in s}
    lowest = min(rates, key=rates.get).split("=")[1]
    assert assessments[0]["groupAtRisk"].startswith(f"sex: {lowest} ")
    assert "fairness-equalized-odds" in assessments[0]["mitigationStrategy"]


def test_bom__every_model_wide_and_per_group_figure_with_slice_and_interval(bom, formats_run):
    metrics = bom[0]["components"][0]["modelCard"]["quantitativeAnalysis"]["performanceMetrics"]
    by_key = {(m["type"], m["slice"]): m for m in metrics}
    expected = [(c["check"], m) for c in formats_run["evidence"]["checks"]
                if c["status"] == "measured" and c["check"] != "preflight" for m in c["measurements"]]
    assert len(metrics) == len(expected) > 50
    for check, m in expected:
        name = m["metric"] if check in ("performance", "fairness") else f"{check}.{m['metric']}"
        got = by_key[(name, m["subject"])]
        value = m["value"]
        assert got["value"] == (str(value).lower() if isinstance(value, bool) else str(value))
        if m["ci_low"] is not None:
            assert got["confidenceInterval"] == {"lowerBound": str(m["ci_low"]), "upperBound": str(m["ci_high"])}
        else:
            assert "confidenceInterval" not in got
    slices = {m["slice"] for m in metrics}
    assert {"", "sex", "sex=Female", "sex*race"} <= slices


def test_bom__data_and_policy_components_with_their_hashes(bom, formats_run):
    components = {c["bom-ref"]: c for c in bom[0]["components"]}
    evidence = formats_run["evidence"]
    data = [c for c in components.values() if c["type"] == "data" and c["data"][0]["type"] == "dataset"]
    assert {c["name"]: c["hashes"][0]["content"] for c in data} == {
        f["path"].rsplit("/", 1)[-1]: f["sha256"] for f in evidence["dataset"]["files"]}
    assert all(c["licenses"] == [{"expression": "CC-BY-4.0"}] for c in data)
    assert data[0]["data"][0]["contents"] == {"url": "https://archive.ics.uci.edu/dataset/2/adult"}
    assert data[0]["data"][0]["sensitiveData"] == ["sex", "race"]
    policy = components["policy"]
    assert policy["hashes"] == [{"alg": "SHA-256", "content": evidence["policy"]["sha256"]}]
    rules = {p["name"] for p in policy["data"][0]["contents"]["properties"]}
    assert rules == {f"govssl:rule:{o['rule_id']}" for o in evidence["decision"]["outcomes"]}
    assert components["plan"]["hashes"][0]["content"] == evidence["plan"]["sha256"]
    refs = {r["url"]: r for r in components["model"]["externalReferences"]}
    assert {"model_card.json", "evidence.json", "attestation.intoto.json", "test-result.intoto.json"} <= set(refs)
    assert refs["evidence.json"]["type"] == "evidence"
    assert refs["attestation.intoto.json"]["type"] == "attestation"


def test_export__existing_out_needs_force_and_is_kept(capsys, formats_run, tmp_path):
    target = tmp_path / "bom.json"
    target.write_text("keep me")
    code, _, err = run_cli(capsys, "export", formats_run["run_id"], "--format", "cyclonedx", "--out", str(target),
                           "--db", formats_run["db"])
    assert code == 2 and "--force" in err and target.read_text() == "keep me"
    code, _, err = run_cli(capsys, "export", formats_run["run_id"], "--format", "cyclonedx", "--out", str(target),
                           "--db", formats_run["db"], "--force")
    assert code == 0, err
    assert _validate(json.loads(target.read_text())) is None
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize("variant", ["dp", "not-trained", "no-pretraining"])
def test_bom__hand_made_runs_validate_too(tmp_path, variant):
    """A private model with an errored check, an audit that stopped at preflight (no model file)
    and a model without self-supervised pretraining."""
    from dataclasses import replace

    from govssl.formats.cyclonedx import bom as make_bom
    from tests.reports.test_render import make_run

    dp = {"epsilon": 2.9, "delta": 1e-5, "accountant": "rdp", "noise_multiplier": 1.1, "sample_rate": 0.01,
          "steps": 900, "max_grad_norm": 1.0}
    run = make_run(tmp_path, dp=dp if variant == "dp" else None, scope="pretrain+finetune" if variant == "dp" else "none",
                   end_to_end=variant == "dp")
    if variant == "not-trained":
        run.training = replace(run.training, trained=False, model_path="", model_sha256="", architecture="",
                               method="none", pretrain_epochs=0)
        run.artifacts = [a for a in run.artifacts if a.kind != "model"]
    if variant == "no-pretraining":
        run.training = replace(run.training, method="none", pretrain_epochs=0)
    document = make_bom(run)
    assert _validate(document) is None
    model = document["components"][0]
    approach = model["modelCard"]["modelParameters"]["approach"]["type"]
    assert approach == ("self-supervised" if variant == "dp" else "supervised")
    assert ("hashes" in model) == (variant != "not-trained")
    properties = {p["name"]: p["value"] for p in model["modelCard"]["properties"]}
    assert ("govssl:epsilon" in properties) == (variant == "dp")
    if variant == "dp":
        assert properties["govssl:epsilon"] == "2.9"
        assert any("robustness check errored" in t for t in model["modelCard"]["considerations"]["technicalLimitations"])
