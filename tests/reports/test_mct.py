"""model_card.json against the Model Card Toolkit schema v0.0.2 (read from ../shared/reference/)."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import pytest

from govssl.checks.base import CheckResult, Measurement
from govssl.policy.model import Decision
from govssl.reports import MCT_SCHEMA_VERSION, model_card_json
from govssl.reports._mct import _license
from tests.reports.test_html import waived_run
from tests.reports.test_render import (
    HEAD_DP,
    adult_summary,
    fairness_result,
    make_run,
    performance_result,
    rendered,
)

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference"
SCHEMA_PATH = REFERENCE / "mct_model_card.schema.json"


@pytest.fixture(scope="module")
def schema() -> dict:
    if not SCHEMA_PATH.is_file():
        pytest.skip("the Model Card Toolkit schema is not beside the repository")
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        node = schema["definitions"][node["$ref"].rsplit("/", 1)[1]]
    return node


def undeclared_keys(schema: dict, node: dict, value, where: str = "$") -> list[str]:
    """Keys the schema does not declare: it only forbids them at the top, so check every level."""
    node = resolve(schema, node)
    found = []
    if isinstance(value, dict):
        properties = node.get("properties", {})
        for key, item in value.items():
            if key not in properties:
                found.append(f"{where}.{key}")
            else:
                found += undeclared_keys(schema, properties[key], item, f"{where}.{key}")
    elif isinstance(value, list) and "items" in node:
        for i, item in enumerate(value):
            found += undeclared_keys(schema, node["items"], item, f"{where}[{i}]")
    return found


def assert_valid(schema: dict, card: dict) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft7Validator(
        schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER
    )
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(card)]
    assert errors == []
    assert undeclared_keys(schema, schema, card) == []


RUNS = {
    "no-dp": lambda tmp: make_run(tmp),
    "head-dp": lambda tmp: make_run(tmp, dp=HEAD_DP, scope="head"),
    "end-to-end-dp": lambda tmp: make_run(tmp, dp=HEAD_DP, scope="finetune", end_to_end=True),
    "waived": lambda tmp: waived_run(tmp),
    "nothing-measured": lambda tmp: make_run(
        tmp,
        card={"owners": [], "references": [], "license": "other: [x]\n---", "overview": ""},
        results=[CheckResult("performance", "errored", (), "ValueError: empty")],
        outcome=Decision(()),
    ),
    # no model licence stated: left out, never defaulted; data origin from a verified manifest
    "no-licence-manifest-origin": lambda tmp: make_run(
        tmp,
        card={"license": None},
        dataset=replace(adult_summary(), source="not declared", license="not declared"),
        results=[performance_result(), CheckResult("provenance", "measured", (Measurement(
            "provenance", "manifest_verified", True, n=1, details={"manifest": {
                "path": "m.json", "source": "https://example.org/data", "license": "CC-BY-4.0",
                "creator": "Supplier <X>"}}),))],
    ),
}


@pytest.mark.parametrize("name", list(RUNS))
def test_model_card_json__validates_against_the_mct_schema(tmp_path, schema, name):
    run = RUNS[name](tmp_path)
    card = json.loads(rendered(run)["model_card.json"])
    assert card == model_card_json(run)
    assert card["schema_version"] == MCT_SCHEMA_VERSION == "0.0.2"
    assert_valid(schema, card)


def test_model_card_json__schema_quirks_are_enforced(tmp_path, schema):
    jsonschema = pytest.importorskip("jsonschema")
    card = model_card_json(make_run(tmp_path))
    card["quantitative_analysis"]["performance_metrics"][0]["value"] = 0.85
    card["model_details"]["licenses"] = [{"identifier": "MIT", "custom_text": "MIT"}]
    card["model_details"]["version"]["date"] = "2025-01-01T12:00:00Z"
    validator = jsonschema.Draft7Validator(
        schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER
    )
    paths = sorted(e.json_path for e in validator.iter_errors(card))
    assert paths == [
        "$.model_details.licenses[0]",
        "$.model_details.version.date",
        "$.quantitative_analysis.performance_metrics[0].value",
    ]


def test_model_card_json__undeclared_keys_are_caught(schema):
    card = {
        "model_details": {"name": "x", "owner": "typo"},
        "considerations": {"users": [{"who": 1}]},
    }
    assert undeclared_keys(schema, schema, card) == [
        "$.model_details.owner",
        "$.considerations.users[0].who",
    ]


def test_model_card_json__model_details(tmp_path):
    run = make_run(tmp_path, card={"references": ["https://example.org/paper", "Smith (2020)"]})
    details = model_card_json(run)["model_details"]
    assert details["name"] == "adult-income-scarf"
    assert details["overview"].startswith("Predicts whether yearly income")
    assert details["owners"] == [{"name": "Model Risk Team", "contact": "mrt@example.org"}]
    assert details["version"] == {"name": "1.2.0", "date": "2025-01-01"}
    assert details["licenses"] == [{"identifier": "apache-2.0"}]
    assert details["references"] == [{"reference": "https://example.org/paper"}]
    assert {"style": "text", "citation": "Smith (2020)"} in details["citations"]
    assert "20250101T120000Z-3f9c2a" in details["citations"][0]["citation"]
    assert details["path"] == "model.safetensors"
    assert "Research on fair and private tabular classification." in details["documentation"]
    assert "Release gate verdict: BLOCKED under policy default v1" in details["documentation"]


@pytest.mark.parametrize(
    "text, entry",
    [
        ("apache-2.0", {"identifier": "apache-2.0"}),
        ("Apache-2.0 OR MIT", {"identifier": "Apache-2.0 OR MIT"}),
        ("LicenseRef-internal", {"identifier": "LicenseRef-internal"}),
        ("proprietary", {"identifier": "proprietary"}),
        ("CC BY 4.0", {"custom_text": "CC BY 4.0"}),
        ("other: [x]\n---", {"custom_text": "other: [x]\n---"}),
        ("", {"custom_text": ""}),
    ],
)
def test_model_card_json__license_is_an_identifier_or_custom_text(text, entry):
    assert _license(text) == entry


def test_model_card_json__model_parameters(tmp_path):
    params = model_card_json(make_run(tmp_path))["model_parameters"]
    assert params["model_architecture"].startswith("MLP encoder [256, 256] + linear head, 70018")
    training, evaluation = params["data"]
    assert training["name"] == "adult (training)" and evaluation["name"] == "adult (evaluation)"
    assert training["sensitive"] == evaluation["sensitive"] == {"sensitive_data": ["sex", "race"]}
    assert "32561 rows" in training["description"] and "16281 rows" in evaluation["description"]
    assert "link" not in training  # the source is a name, not a link
    assert params["input_format"].startswith("One tabular row of 14 features: 6 numeric (age,")
    assert {"key": "sex", "value": "categorical"} in params["input_format_map"]
    assert params["output_format"] == "The probability that income is >50K (binary classification)."


def test_model_card_json__dataset_link_when_the_source_is_a_uri(tmp_path):
    summary = replace(adult_summary(), source="https://archive.ics.uci.edu/dataset/2")
    data = model_card_json(make_run(tmp_path, dataset=summary))["model_parameters"]["data"]
    assert [d["link"] for d in data] == ["https://archive.ics.uci.edu/dataset/2"] * 2


def test_model_card_json__performance_metrics_are_strings_with_slices(tmp_path):
    metrics = model_card_json(make_run(tmp_path))["quantitative_analysis"]["performance_metrics"]
    by_key = {(m["type"], m["slice"]): m for m in metrics}
    assert by_key[("accuracy", "")] == {
        "type": "accuracy",
        "value": "0.847312",
        "slice": "",
        "confidence_interval": {"lower_bound": "0.8417", "upper_bound": "0.8528"},
    }
    assert by_key[("equalized_odds_difference", "sex*race")]["confidence_interval"] == {
        "lower_bound": "0.0712",
        "upper_bound": "0.1342",
    }
    assert by_key[("demographic_parity_ratio", "sex*race")] == {
        "type": "demographic_parity_ratio", "value": "nan", "slice": "sex*race",
    }
    assert by_key[("count", "sex=Female")]["value"] == "5000"
    assert by_key[("accuracy", "race=Black")]["value"] == "0.87"
    assert by_key[("selection_rate", "sex=Female*race=White")]["value"] == "0.081"
    assert all(isinstance(m["value"], str) for m in metrics)
    # 4 model-wide, 3 aggregates x 3 subjects, 5 metrics x 5 groups, 2 for the intersection
    assert len(metrics) == len(by_key) == 4 + 9 + 25 + 2


def test_model_card_json__other_checks_are_typed_by_check(tmp_path):
    other = CheckResult(
        "robustness", "measured",
        (Measurement("robustness", "adversarial_accuracy", 0.61, "eps=0.05", 0.6, 0.62, 1000),
         Measurement("robustness", "attack_succeeded", True)),
    )
    run = make_run(tmp_path, results=[performance_result(), other])
    metrics = model_card_json(run)["quantitative_analysis"]["performance_metrics"]
    assert metrics[-2:] == [
        {
            "type": "robustness.adversarial_accuracy",
            "value": "0.61",
            "slice": "eps=0.05",
            "confidence_interval": {"lower_bound": "0.6", "upper_bound": "0.62"},
        },
        {"type": "robustness.attack_succeeded", "value": "true", "slice": ""},
    ]


def test_model_card_json__considerations(tmp_path):
    run = make_run(
        tmp_path,
        dp=HEAD_DP,
        scope="head",
        results=[
            performance_result(),
            fairness_result(),
            CheckResult("robustness", "errored", (), "RuntimeError: PGD diverged"),
            CheckResult("membership", "skipped", (), "no shadow model"),
        ],
    )
    considerations = model_card_json(run)["considerations"]
    assert considerations["users"] == [{"description": "ML researchers"}]
    assert considerations["use_cases"] == [
        {"description": "Research on fair and private tabular classification."}
    ]
    limitations = [item["description"] for item in considerations["limitations"]]
    for expected in (
        "Census data from 1994; distributions have shifted since.",
        "The robustness check errored and produced no evidence: RuntimeError: PGD diverged",
        "The membership check was skipped: no shadow model",
        "Rule robustness-pgd could not be evaluated: the robustness check errored",
        "Rule fairness-equalized-odds failed (block): "
        "equalized_odds_difference ci_high 0.1342 > 0.1 for sex*race",
        "Out of scope: Credit, hiring or housing decisions about individuals",
    ):
        assert expected in limitations
    assert any(
        "the classification head was trained under DP-SGD; the encoder was not" in item
        for item in limitations
    )
    assert any(item.startswith("The encoder was pretrained with scarf") for item in limitations)
    assert not any("end-to-end" in item for item in limitations)
    [tradeoff] = considerations["tradeoffs"]
    assert "epsilon (ε) 2.987" in tradeoff["description"]
    assert considerations["ethical_considerations"] == [
        {"name": "Historical bias by sex and race", "mitigation_strategy": "Gate on equalized odds"}
    ]


def test_model_card_json__no_dp_is_a_limitation_not_a_tradeoff(tmp_path):
    considerations = model_card_json(make_run(tmp_path))["considerations"]
    limitations = [item["description"] for item in considerations["limitations"]]
    assert any("not trained with differential privacy" in item for item in limitations)
    assert considerations["tradeoffs"] == []


def test_model_card_json__does_not_change_the_run(tmp_path):
    run = make_run(tmp_path)
    before = copy.deepcopy(run.to_dict())
    assert model_card_json(run) == model_card_json(run)
    assert run.to_dict() == before
