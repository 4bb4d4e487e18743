"""Tests of the audit plan: the demo loads, and every kind of bad plan is reported with its file
and dotted key, all problems of one plan in one ConfigError."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from govssl.errors import ConfigError
from govssl.plan import AuditPlan, load_plan
from govssl.policy import builtin_policies

REPO = Path(__file__).resolve().parents[1]
DEMO_PLAN = REPO / "audits" / "adult-income.yaml"

UNKNOWN_KEY = "unknown key (check its spelling and level)"
FAIRNESS_PARAMS = "'fairness' takes n_boot, confidence, min_group_size, intersections"


def _write(tmp_path: Path, data, name: str = "plan.yaml") -> Path:
    path = tmp_path / name
    text = data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


def _plan(**overrides) -> dict:
    """A minimal valid plan; overrides replace top-level keys."""
    return {"name": "p", "dataset": {"builtin": "adult"}, **overrides}


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_plan(path)
    err = info.value
    assert str(err).splitlines()[0] == f"{path}: the plan has {len(err.problems)} problem(s)"
    return err.problems


def _available_checks() -> str:
    from govssl.checks.base import registered_checks

    return ", ".join(sorted(registered_checks()))


def test_load_plan__demo_plan_loads():
    plan = load_plan(DEMO_PLAN)

    assert plan.name == "adult-income"
    assert plan.dataset.builtin == "adult"
    assert plan.dataset.sensitive == ["sex", "race"]
    assert plan.dataset.drop == ["fnlwgt"]
    assert plan.dataset.positive_label == ">50K"
    assert plan.training.dp.enabled is True
    assert plan.training.finetune.label_fraction == 0.1
    assert {k: plan.checks[k] for k in ("performance", "fairness", "label_efficiency")} == {
        "performance": {"n_boot": 1000},
        "fairness": {"n_boot": 1000, "min_group_size": 30},
        "label_efficiency": {"n_boot": 1000},
    }
    assert {"provenance", "data_quality"} <= set(plan.checks)
    assert {"robustness", "poisoning", "privacy"} <= set(plan.checks)
    assert plan.policy_path() == REPO / "policies" / "default.yaml"
    assert plan.source_path == DEMO_PLAN
    assert plan.sha256 == hashlib.sha256(DEMO_PLAN.read_bytes()).hexdigest()


def test_load_plan__minimal_plan_gets_defaults(tmp_path):
    plan = load_plan(_write(tmp_path, _plan()))

    assert plan.checks == {"performance": {}, "fairness": {}}
    assert plan.policy == "default"
    assert plan.seed == 0
    assert plan.dataset.test_fraction == 0.25


def test_load_plan__null_check_parameters_mean_defaults(tmp_path):
    path = _write(tmp_path, "name: p\ndataset: {builtin: adult}\nchecks:\n  fairness:\n  performance: {n_boot: 5}\n")

    assert load_plan(path).checks == {"fairness": {}, "performance": {"n_boot": 5}}


def test_load_plan__unknown_top_level_key(tmp_path):
    path = _write(tmp_path, _plan(sede=3))

    assert _problems(path) == [f"{path}: sede: {UNKNOWN_KEY}"]


def test_load_plan__unknown_nested_key_is_named_with_dots(tmp_path):
    path = _write(tmp_path, _plan(training={"finetune": {"epoch": 3}}))

    assert _problems(path) == [f"{path}: training.finetune.epoch: {UNKNOWN_KEY}"]


def test_load_plan__unknown_key_in_a_list_item_names_its_index(tmp_path):
    path = _write(tmp_path, _plan(model_card={"owners": [{"name": "a"}, {"name": "b", "mail": "x"}]}))

    assert _problems(path) == [f"{path}: model_card.owners[1].mail: {UNKNOWN_KEY}"]


def test_load_plan__bad_value_names_key_and_input(tmp_path):
    path = _write(tmp_path, _plan(training={"finetune": {"label_fraction": 0}}))

    assert _problems(path) == [
        f"{path}: training.finetune.label_fraction: Input should be greater than 0; got 0"
    ]


def test_load_plan__every_problem_is_reported_in_one_error(tmp_path):
    path = _write(tmp_path, {
        "name": "p",
        "bogus": 1,
        "dataset": {"builtin": "adult", "path": "missing.csv"},
        "training": {"finetune": {"epoch": 3}},
        "checks": {"nope": {}, "fairness": {"n_bot": 10}},
        "policy": "nosuch",
    })

    problems = _problems(path)

    assert len(problems) == 7
    assert problems == [
        f"{path}: dataset: Value error, give exactly one of 'builtin' (e.g. adult) or 'path' "
        "(a CSV or Parquet file); got {'builtin': 'adult', 'path': 'missing.csv'}",
        f"{path}: training.finetune.epoch: {UNKNOWN_KEY}",
        f"{path}: bogus: {UNKNOWN_KEY}",
        f"{path}: checks.nope: unknown check; available: {_available_checks()}",
        f"{path}: checks.fairness.n_bot: unknown parameter; {FAIRNESS_PARAMS}",
        f"{path}: dataset.path: file not found: {tmp_path.resolve() / 'missing.csv'}",
        f"{path}: policy: no built-in policy 'nosuch'; built-in: {', '.join(builtin_policies())}",
    ]


def test_load_plan__problems_beyond_a_valid_schema_are_all_reported(tmp_path):
    path = _write(tmp_path, {
        "name": "p",
        "dataset": {"path": "train.csv", "test_path": "test.csv", "target": "y"},
        "checks": {"nope": {}, "fairness": {"n_bot": 10}},
        "policy": "my-policy.yaml",
    })

    assert _problems(path) == [
        f"{path}: checks.nope: unknown check; available: {_available_checks()}",
        f"{path}: checks.fairness.n_bot: unknown parameter; {FAIRNESS_PARAMS}",
        f"{path}: dataset.path: file not found: {tmp_path.resolve() / 'train.csv'}",
        f"{path}: dataset.test_path: file not found: {tmp_path.resolve() / 'test.csv'}",
        f"{path}: policy: file not found: {tmp_path.resolve() / 'my-policy.yaml'}",
    ]


def test_load_plan__unknown_check(tmp_path):
    path = _write(tmp_path, _plan(checks={"fairnes": {}}))

    assert _problems(path) == [f"{path}: checks.fairnes: unknown check; available: {_available_checks()}"]


def test_load_plan__bad_check_parameter(tmp_path):
    path = _write(tmp_path, _plan(checks={"fairness": {"n_bot": 10}}))

    assert _problems(path) == [f"{path}: checks.fairness.n_bot: unknown parameter; {FAIRNESS_PARAMS}"]


def test_load_plan__check_parameters_not_a_mapping(tmp_path):
    path = _write(tmp_path, _plan(checks={"performance": 3}))

    assert _problems(path) == [f"{path}: checks.performance: Input should be a valid dictionary; got 3"]


def test_load_plan__dataset_with_builtin_and_path(tmp_path):
    (tmp_path / "d.csv").write_text("a,y\n1,0\n")
    path = _write(tmp_path, _plan(dataset={"builtin": "adult", "path": "d.csv", "target": "y"}))

    assert _problems(path) == [
        f"{path}: dataset: Value error, give exactly one of 'builtin' (e.g. adult) or 'path' "
        "(a CSV or Parquet file); got {'builtin': 'adult', 'path': 'd.csv', 'target': 'y'}"
    ]


def test_load_plan__dataset_with_neither_builtin_nor_path(tmp_path):
    path = _write(tmp_path, _plan(dataset={"target": "y"}))

    assert _problems(path) == [
        f"{path}: dataset: Value error, give exactly one of 'builtin' (e.g. adult) or 'path' "
        "(a CSV or Parquet file); got {'target': 'y'}"
    ]


def test_load_plan__path_without_target(tmp_path):
    (tmp_path / "d.csv").write_text("a,y\n1,0\n")
    path = _write(tmp_path, _plan(dataset={"path": "d.csv"}))

    assert _problems(path) == [
        f"{path}: dataset: Value error, 'target' is required with 'path': name the label column; "
        "got {'path': 'd.csv'}"
    ]


def test_load_plan__missing_data_file_is_named(tmp_path):
    (tmp_path / "train.csv").write_text("a,y\n1,0\n")
    path = _write(tmp_path, _plan(dataset={"path": "train.csv", "test_path": "data/test.csv", "target": "y"}))

    assert _problems(path) == [
        f"{path}: dataset.test_path: file not found: {tmp_path.resolve() / 'data' / 'test.csv'}"
    ]


def test_load_plan__data_paths_resolve_from_the_plan_folder(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.csv").write_text("a,y\n1,0\n")
    path = _write(tmp_path, _plan(dataset={"path": "data/train.csv", "target": "y"}))

    plan = load_plan(path)

    assert plan.resolve(plan.dataset.path) == tmp_path.resolve() / "data" / "train.csv"


def test_load_plan__missing_policy_file_is_named(tmp_path):
    path = _write(tmp_path, _plan(policy="policies/mine.yaml"))

    assert _problems(path) == [
        f"{path}: policy: file not found: {tmp_path.resolve() / 'policies' / 'mine.yaml'}"
    ]


def test_load_plan__policy_file_next_to_the_plan(tmp_path):
    (tmp_path / "mine.yaml").write_text("policy: mine\n")
    plan = load_plan(_write(tmp_path, _plan(policy="mine.yaml")))

    assert plan.policy_path() == tmp_path.resolve() / "mine.yaml"


def test_load_plan__unknown_builtin_policy(tmp_path):
    path = _write(tmp_path, _plan(policy="strictest"))

    assert _problems(path) == [
        f"{path}: policy: no built-in policy 'strictest'; built-in: {', '.join(builtin_policies())}"
    ]
    assert "default" in builtin_policies()


def test_load_plan__yaml_syntax_error_names_file_and_line(tmp_path):
    path = _write(tmp_path, "name: p\ndataset:\n  builtin: adult\n  drop: [a, b\nseed: 1\n")

    with pytest.raises(ConfigError) as info:
        load_plan(path)

    assert str(info.value) == f"{path}: not valid YAML (line 5, column 5): expected ',' or ']', but got ':'"
    assert info.value.problems == []


def test_load_plan__yaml_list_instead_of_mapping(tmp_path):
    path = _write(tmp_path, "- name: p\n- dataset: {builtin: adult}\n")

    with pytest.raises(ConfigError) as info:
        load_plan(path)

    assert str(info.value) == f"{path}: a plan must be a YAML mapping of keys to values"


def test_load_plan__empty_file(tmp_path):
    path = _write(tmp_path, "")

    with pytest.raises(ConfigError) as info:
        load_plan(path)

    assert str(info.value) == f"{path}: a plan must be a YAML mapping of keys to values"


def test_load_plan__file_not_found(tmp_path):
    path = tmp_path / "nope.yaml"

    with pytest.raises(ConfigError) as info:
        load_plan(path)

    assert str(info.value) == f"{path}: plan file not found"


def test_load_plan__folder_instead_of_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_plan(tmp_path)

    assert str(info.value) == f"{tmp_path}: is a folder, expected a plan file"


def test_config_error__exit_code_is_2(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_plan(tmp_path / "nope.yaml")

    assert info.value.exit_code == 2
    assert ConfigError.exit_code == 2


def test_config_error__lists_every_problem_in_its_text():
    err = ConfigError("plan.yaml: the plan has 2 problem(s)", ["plan.yaml: a: x", "plan.yaml: b: y"])

    assert str(err) == "plan.yaml: the plan has 2 problem(s)\n  - plan.yaml: a: x\n  - plan.yaml: b: y"


def test_audit_plan__as_data_leaves_out_load_fields():
    plan = load_plan(DEMO_PLAN)
    data = plan.as_data()

    assert "source_path" not in data and "sha256" not in data
    assert AuditPlan.model_validate(data).dataset == plan.dataset


def test_load_plan__a_trusted_key_that_is_not_a_public_key_exits_2_before_training(tmp_path):
    (tmp_path / "bad.pub").write_text("not a key\n")
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump({"name": "p", "dataset": {"builtin": "adult"},
                                    "provenance": {"trusted_keys": ["bad.pub"]}}))
    with pytest.raises(ConfigError) as exc:
        load_plan(path)
    assert exc.value.exit_code == 2
    assert "provenance.trusted_keys[0]" in str(exc.value) and "bad.pub" in str(exc.value)
