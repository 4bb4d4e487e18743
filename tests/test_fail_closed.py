"""Failing closed, through the command line: bad check parameters stop the audit before training
(exit 2, nothing stored, no run folder), an errored check fails its rules whatever `on_missing`
says, and a policy that evaluates no rule blocks the release."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, fast_plan_data, run_cli


def _runs(db_file: Path) -> int:
    from govssl.store import AuditStore

    store = AuditStore(f"sqlite:///{db_file}", create=False)
    try:
        return len(store.list_runs())
    finally:
        store.close()


def _run_folders(out: Path) -> list[Path]:
    return sorted(out.iterdir()) if out.exists() else []


@pytest.fixture(scope="module")
def store_with_one_run(tmp_path_factory, adult_csvs):
    """A store holding one audit, and the output folder of that audit."""
    folder = tmp_path_factory.mktemp("fail-closed-store")
    plan = folder / "plan.yaml"
    plan.write_text(yaml.safe_dump(fast_plan_data(*adult_csvs)), encoding="utf-8")
    from govssl.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["audit", str(plan), "--db", f"sqlite:///{folder / 'audit.db'}", "--out", str(folder / "out"), "--quiet"])
    assert exit_info.value.code in (0, 1)
    return folder / "audit.db", folder / "out"


BAD_PARAMETERS = [
    ("privacy", "max_rows", "lots", "Input should be a valid integer; got 'lots'"),
    ("performance", "n_boot", "abc", "Input should be a valid integer; got 'abc'"),
    ("performance", "n_boot", -5, "Input should be greater than or equal to 1; got -5"),
    ("fairness", "confidence", 1.5, "Input should be less than 1; got 1.5"),
    ("robustness", "eps", [0.1, -0.05], "Input should be greater than 0; got -0.05"),
    ("fairness", "n_bot", 100, "unknown parameter; 'fairness' takes n_boot, confidence"),
]


@pytest.mark.parametrize("check, key, value, message", BAD_PARAMETERS, ids=[f"{c}.{k}={v}" for c, k, v, _ in BAD_PARAMETERS])
def test_audit__bad_check_parameter_exits_2_before_training(check, key, value, message, capsys, tmp_path,
                                                           adult_csvs, store_with_one_run):
    db, out = store_with_one_run
    before = (_runs(db), _run_folders(out))
    data = fast_plan_data(*adult_csvs)
    data["checks"][check] = {**data["checks"].get(check, {}), key: value}
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(data), encoding="utf-8")

    code, stdout, err = run_cli(capsys, "audit", str(plan), "--db", f"sqlite:///{db}", "--out", str(out), "--quiet")

    where = f"checks.{check}.{key}" + ("[1]" if isinstance(value, list) else "")
    assert code == 2, err
    assert f"{plan}: {where}: {message}" in err
    assert "Traceback" not in err + stdout
    assert (_runs(db), _run_folders(out)) == before


def test_audit__every_bad_check_parameter_is_reported_at_once_and_nothing_is_created(capsys, tmp_path, adult_csvs):
    data = fast_plan_data(*adult_csvs)
    data["checks"] = {"performance": {"n_boot": "abc", "confidence": 1.5}, "privacy": {"max_rows": "lots"}}
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(data), encoding="utf-8")
    db, out = tmp_path / "new.db", tmp_path / "out"

    code, _, err = run_cli(capsys, "audit", str(plan), "--db", f"sqlite:///{db}", "--out", str(out), "--quiet")

    assert code == 2
    assert "the plan has 3 problem(s)" in err
    for key in ("checks.performance.n_boot", "checks.performance.confidence", "checks.privacy.max_rows"):
        assert f"{plan}: {key}: " in err
    assert not db.exists() and not out.exists()


def _policy(tmp_path: Path, rules: list[dict]) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump({"policy": "test", "version": 1, "rules": rules}), encoding="utf-8")
    return path


AUC_RULE = {"id": "auc", "check": "performance", "metric": "roc_auc", "min": 0.5}


def test_audit__a_policy_that_evaluates_no_rule_blocks_and_says_so(capsys, tmp_path, adult_csvs, write_plan):
    policy = _policy(tmp_path, [
        {"id": "pgd", "check": "robustness", "metric": "robust_accuracy", "min": 0.7, "on_missing": "skip"},
        {"id": "mia", "check": "privacy", "metric": "membership_advantage", "max": 0.1, "severity": "warn",
         "on_missing": "skip"},
    ])
    plan = write_plan({**fast_plan_data(*adult_csvs), "policy": str(policy)})
    db = tmp_path / "audit.db"

    code, out, err = run_cli(capsys, "audit", str(plan), "--db", f"sqlite:///{db}", "--out", str(tmp_path / "out"),
                             "--quiet")

    assert code == 1, out + err
    assert "decision: BLOCKED" in out and "no rule was evaluated: all 2 rule(s) of the policy were skipped" in out
    # the stored run gives the same verdict
    from govssl.store import AuditStore

    store = AuditStore(f"sqlite:///{db}")
    run = store.load_run(store.list_runs()[0]["run_id"])
    store.close()
    assert run.decision.verdict == "blocked" and run.decision.nothing_evaluated
    _, out, _ = run_cli(capsys, "show", run.run_id, "--db", f"sqlite:///{db}")
    assert "decision: BLOCKED" in out and "no rule was evaluated" in out


def test_audit__an_errored_check_fails_its_rule_although_on_missing_says_skip(capsys, tmp_path, adult_csvs,
                                                                             write_plan, monkeypatch):
    # ART cannot be imported, as when a dependency of it is not installed: the privacy check errors
    # (every art module, since an already imported submodule would be found without its package)
    for name in [m for m in sys.modules if m == "art" or m.startswith("art.")] + ["art"]:
        monkeypatch.setitem(sys.modules, name, None)
    policy = _policy(tmp_path, [
        AUC_RULE,
        {"id": "mia", "check": "privacy", "metric": "membership_advantage", "max": 0.1, "on_missing": "skip"},
    ])
    data = fast_plan_data(*adult_csvs)
    data["checks"]["privacy"] = {"max_rows": 200}
    plan = write_plan({**data, "policy": str(policy)})

    code, out, err = run_cli(capsys, "audit", str(plan), "--db", f"sqlite:///{tmp_path / 'audit.db'}",
                             "--out", str(tmp_path / "out"), "--quiet", "--json")

    import json

    run = json.loads(out)
    assert code == 1, err
    privacy = next(r for r in run["checks"] if r["check"] == "privacy")
    assert privacy["status"] == "errored" and privacy["reason"].startswith("ModuleNotFoundError")
    mia = next(o for o in run["decision"]["outcomes"] if o["rule_id"] == "mia")
    assert mia["status"] == "missing" and "whatever on_missing says" in mia["message"]
    assert run["decision"]["verdict"] == "blocked"


# ------------------------------------------------------------------------------- plan validate


def test_plan_validate__the_demo_plan_is_valid(capsys):
    code, out, err = run_cli(capsys, "plan", "validate", str(REPO / "audits" / "adult-income.yaml"))

    assert code == 0, err
    assert "adult-income.yaml: valid" in out
    assert "policy: default v1" in out and "warning" not in err


def test_plan_validate__lists_every_problem_of_plan_policy_and_data_header(capsys, tmp_path, adult_csvs):
    bad_policy = yaml.safe_load((REPO / "policies" / "default.yaml").read_text())
    bad_policy["rules"][0]["check"] = "perfomance"
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(bad_policy))
    data = fast_plan_data(*adult_csvs)
    data["dataset"].update(sensitive=["sex", "ethnicity"], personal_data=["email"], drop=["fnlwgt"])
    data["checks"] = {"privacy": {"max_rows": "lots"}, "fairness": {"n_boot": -5}, "nosuch": {}}
    data["policy"] = str(tmp_path / "policy.yaml")
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(data))

    code, out, err = run_cli(capsys, "plan", "validate", str(plan))

    assert code == 2
    assert "6 problem(s)" in err
    for fragment in (f"{plan}: checks.privacy.max_rows: Input should be a valid integer; got 'lots'",
                     f"{plan}: checks.fairness.n_boot: Input should be greater than or equal to 1; got -5",
                     f"{plan}: checks.nosuch: unknown check",
                     f"{tmp_path / 'policy.yaml'}: rules[0].check: unknown check 'perfomance'",
                     f"{adult_csvs[0]}: column 'ethnicity' (dataset.sensitive[1]) not found",
                     f"{adult_csvs[0]}: column 'email' (dataset.personal_data[0]) not found"):
        assert fragment in err, (fragment, err)
    assert "Traceback" not in err
    assert not list(tmp_path.glob("**/*.db"))


def test_plan_validate__a_missing_target_column_is_found_from_the_header_alone(capsys, tmp_path):
    (tmp_path / "data.csv").write_text("age,salary\n")  # a header, no rows: nothing is read beyond it
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump({"name": "p", "dataset": {"path": "data.csv", "target": "income"}}))

    code, _, err = run_cli(capsys, "plan", "validate", str(plan))

    assert code == 2
    assert f"{tmp_path / 'data.csv'}: target column 'income' (dataset.target) not found; columns: age, salary" in err


def test_plan_validate__warns_when_no_rule_reads_a_check_the_plan_runs(capsys, tmp_path, adult_csvs, write_plan):
    policy = _policy(tmp_path, [{"id": "pgd", "check": "robustness", "metric": "robust_accuracy", "min": 0.7}])
    plan = write_plan(fast_plan_data(*adult_csvs))

    code, out, err = run_cli(capsys, "plan", "validate", str(plan), "--policy", str(policy))

    assert code == 0, err
    assert "warning:" in err and "no rule of policy 'test' reads a check the plan runs (performance, fairness)" in err
    assert "would be blocked" in err
    assert "policy: test v1, 1 rule(s); 0 read the checks the plan runs" in out


def test_plan_validate__a_plan_file_that_does_not_exist_exits_2(capsys, tmp_path):
    code, _, err = run_cli(capsys, "plan", "validate", str(tmp_path / "absent.yaml"))

    assert code == 2 and "absent.yaml: plan file not found" in err
