"""Tests of load_policy: the shipped pack loads, and every problem of a bad pack is reported at
once with its file and rules[i].key."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from govssl.checks.fairness import FairnessCheck
from govssl.errors import PolicyError
from govssl.policy import Rule, builtin_policy_path, load_policy

REPO = Path(__file__).resolve().parents[2]
DEFAULT = REPO / "policies" / "default.yaml"

UNKNOWN_KEY = "unknown key (check its spelling and level)"


def _rule(**overrides) -> dict:
    return {"id": "r", "check": "performance", "metric": "accuracy", "min": 0.5, **overrides}


def _write(tmp_path: Path, data, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    text = data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


def _pack(*rules: dict) -> dict:
    return {"policy": "mine", "version": 1, "rules": list(rules)}


def _problems(path: Path) -> list[str]:
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    err = info.value
    assert str(err).splitlines()[0] == f"{path}: the policy has {len(err.problems)} problem(s)"
    return err.problems


def _known_checks() -> str:
    from govssl.checks.base import registered_checks
    from govssl.monitor._checks import MONITOR_CHECKS

    # preflight: a stage, not a plan check; MONITOR_CHECKS: what `govssl monitor` measures
    return ", ".join(sorted([*registered_checks(), "preflight", *MONITOR_CHECKS]))


def test_load_policy__default_pack_loads():
    policy = load_policy(DEFAULT)

    assert policy.name == "default"
    assert policy.version == 1
    ids = [r.id for r in policy.rules]
    assert ids[:5] == [
        "performance-roc-auc", "performance-calibration", "fairness-equalized-odds",
        "fairness-four-fifths", "fairness-group-size",
    ]
    for area_rule in ("provenance-license", "data-quality-pii", "robustness-pgd", "poisoning-backdoor-1pct",
                      "poisoning-detector-recall", "privacy-membership-advantage", "privacy-dp-claim"):
        assert area_rule in ids
    assert policy.rules[0] == Rule(
        id="performance-roc-auc", check="performance", metric="roc_auc", min=0.70, use="ci_low",
        severity="block", on_missing="fail", rmf=("MEASURE 2.5", "MEASURE 2.3"),
        eu_ai_act=("Art. 15", "Art. 9"), rationale=policy.rules[0].rationale,
    )
    assert [(r.severity, r.max, r.min) for r in policy.rules[1:5]] == [
        ("warn", 0.05, None), ("block", 0.10, None), ("warn", None, 0.80), ("warn", 0.0, None),
    ]
    assert policy.sha256 == hashlib.sha256(DEFAULT.read_bytes()).hexdigest()
    assert policy.path == str(DEFAULT)
    assert policy.description.startswith("Baseline release criteria")


def test_builtin_policy_path__default_is_the_shipped_file():
    assert builtin_policy_path("default") == DEFAULT


def test_load_policy__every_problem_at_once(tmp_path):
    path = _write(tmp_path, _pack(
        _rule(id="a", check="nosuch", metric="x"),
        _rule(id="a", check="fairness", metric="equalised_odds", min=None, max="10%"),
        {"id": "c", "check": "performance", "metric": "accuracy", "rmf": ["MEASURE 9.9"]},
        _rule(id="d", min=0.9, max=0.5),
    ))

    problems = _problems(path)

    assert len(problems) == 7
    assert problems == [
        f"{path}: rules[1].max: Input should be a valid number, unable to parse string as a number; got '10%'",
        f"{path}: rules[2]: Value error, give a threshold: max, min or equals; got "
        "{'id': 'c', 'check': 'performance', 'metric': 'accuracy', 'rmf': ['MEASURE 9.9']}",
        f"{path}: rules[3]: Value error, 'min' (0.9) is greater than 'max' (0.5); got "
        "{'id': 'd', 'check': 'performance', 'metric': 'accuracy', 'min': 0.9, 'max': 0.5}",
        f"{path}: rules[0].check: unknown check 'nosuch'; known: {_known_checks()}",
        f"{path}: rules[1].id: duplicate rule id 'a'",
        f"{path}: rules[1].metric: check 'fairness' has no metric 'equalised_odds'; it measures "
        + ", ".join(FairnessCheck.metrics),
        f"{path}: rules[2].rmf[0]: 'MEASURE 9.9' is not a NIST AI RMF 1.0 subcategory (e.g. 'MEASURE 2.11')",
    ]


def test_load_policy__unknown_check(tmp_path):
    path = _write(tmp_path, _pack(_rule(check="robustnes")))

    assert _problems(path) == [f"{path}: rules[0].check: unknown check 'robustnes'; known: {_known_checks()}"]


def test_load_policy__unknown_metric_names_the_checks_metrics(tmp_path):
    path = _write(tmp_path, _pack(_rule(metric="auc")))

    assert _problems(path) == [
        f"{path}: rules[0].metric: check 'performance' has no metric 'auc'; it measures "
        "accuracy, balanced_accuracy, f1, roc_auc, expected_calibration_error"
    ]


@pytest.mark.parametrize("value, message", [
    ("10%", "Input should be a valid number, unable to parse string as a number; got '10%'"),
    ([0.1], "Input should be a valid number; got [0.1]"),
    (float("nan"), "Input should be a finite number; got nan"),
    (float("inf"), "Input should be a finite number; got inf"),
])
def test_load_policy__bad_threshold_names_rules_index_and_key(tmp_path, value, message):
    path = _write(tmp_path, _pack(_rule(id="first"), _rule(id="second", min=None, max=value)))

    assert _problems(path) == [f"{path}: rules[1].max: {message}"]


def test_load_policy__duplicate_ids(tmp_path):
    path = _write(tmp_path, _pack(_rule(id="x"), _rule(id="y"), _rule(id="x")))

    assert _problems(path) == [f"{path}: rules[2].id: duplicate rule id 'x'"]


def test_load_policy__bad_rmf_id(tmp_path):
    path = _write(tmp_path, _pack(_rule(rmf=["MEASURE 2.11", "measure 2.11", "MEASURE 2"])))

    assert _problems(path) == [
        f"{path}: rules[0].rmf[1]: 'measure 2.11' is not a NIST AI RMF 1.0 subcategory (e.g. 'MEASURE 2.11')",
        f"{path}: rules[0].rmf[2]: 'MEASURE 2' is not a NIST AI RMF 1.0 subcategory (e.g. 'MEASURE 2.11')",
    ]


def test_load_policy__missing_threshold(tmp_path):
    path = _write(tmp_path, _pack(_rule(min=None)))

    assert _problems(path) == [
        f"{path}: rules[0]: Value error, give a threshold: max, min or equals; got "
        "{'id': 'r', 'check': 'performance', 'metric': 'accuracy', 'min': None}"
    ]


def test_load_policy__min_greater_than_max(tmp_path):
    path = _write(tmp_path, _pack(_rule(min=0.9, max=0.5)))

    assert _problems(path) == [
        f"{path}: rules[0]: Value error, 'min' (0.9) is greater than 'max' (0.5); got "
        "{'id': 'r', 'check': 'performance', 'metric': 'accuracy', 'min': 0.9, 'max': 0.5}"
    ]


def test_load_policy__equals_with_max(tmp_path):
    path = _write(tmp_path, _pack(_rule(min=None, max=1, equals=True)))

    assert _problems(path) == [
        f"{path}: rules[0]: Value error, 'equals' cannot be combined with 'max' or 'min'; got "
        "{'id': 'r', 'check': 'performance', 'metric': 'accuracy', 'min': None, 'max': 1, 'equals': True}"
    ]


def test_load_policy__bad_enum_and_unknown_key(tmp_path):
    path = _write(tmp_path, _pack(_rule(use="upper", severity="fatal", threshold=1)))

    assert _problems(path) == [
        f"{path}: rules[0].use: Input should be 'estimate', 'ci_low' or 'ci_high'; got 'upper'",
        f"{path}: rules[0].severity: Input should be 'block' or 'warn'; got 'fatal'",
        f"{path}: rules[0].threshold: {UNKNOWN_KEY}",
    ]


def test_load_policy__no_rules(tmp_path):
    path = _write(tmp_path, {"policy": "mine", "version": 1, "rules": []})

    assert _problems(path) == [f"{path}: rules: List should have at least 1 item after validation, not 0; got []"]


def test_load_policy__missing_top_level_keys(tmp_path):
    path = _write(tmp_path, {"rules": [_rule()]})

    assert _problems(path) == [f"{path}: policy: required key is missing", f"{path}: version: required key is missing"]


def test_load_policy__not_a_mapping(tmp_path):
    path = _write(tmp_path, "- id: a\n")

    with pytest.raises(PolicyError) as info:
        load_policy(path)

    assert str(info.value) == f"{path}: a policy must be a YAML mapping of keys to values"


def test_load_policy__file_not_found(tmp_path):
    with pytest.raises(PolicyError) as info:
        load_policy(tmp_path / "none.yaml")

    assert str(info.value) == f"{tmp_path / 'none.yaml'}: policy file not found"


def test_policy_error__exit_code_is_2(tmp_path):
    path = _write(tmp_path, _pack(_rule(check="nosuch")))

    with pytest.raises(PolicyError) as info:
        load_policy(path)

    assert info.value.exit_code == 2


def test_load_policy__stage_must_match_the_check(tmp_path):
    path = _write(tmp_path, _pack(
        _rule(id="a", stage="preflight"),
        _rule(id="b", check="preflight", metric="identifier_columns_as_input", min=None, max=0),
        _rule(id="c", check="preflight", metric="no_such_metric", min=None, max=0, stage="preflight"),
    ))

    problems = _problems(path)

    assert any("rules[0].stage" in p and "check 'performance' needs stage: checks" in p for p in problems)
    assert any("rules[1].stage" in p and "say stage: preflight" in p for p in problems)
    assert any("rules[2].metric" in p and "no_such_metric" in p for p in problems)
    assert len(problems) == 3


def test_load_policy__preflight_rules_load_with_their_stage(tmp_path):
    path = _write(tmp_path, _pack(
        _rule(id="p", check="preflight", metric="single_feature_auc", min=None, max=0.98, stage="preflight"),
        _rule(id="q"),
    ))

    policy = load_policy(path)

    assert [(r.id, r.stage) for r in policy.rules] == [("p", "preflight"), ("q", "checks")]
