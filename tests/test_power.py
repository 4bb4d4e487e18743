"""A rule whose threshold lies beyond what its measurement could certify is inconclusive: it
blocks, is stored, and shows in `govssl show` of the stored run."""

from __future__ import annotations

import json

import yaml

from tests.conftest import fast_plan_data, run_cli


def test_audit__threshold_beyond_power_is_inconclusive_blocks_and_shows(capsys, tmp_path, monkeypatch, adult_csvs):
    monkeypatch.chdir(tmp_path)
    policy = {"policy": "power", "version": 1, "rules": [
        {"id": "auc", "check": "performance", "metric": "roc_auc", "min": 0.5},
        # a black-box epsilon bound at target_fpr 0.05 cannot certify anything near 50
        {"id": "eps-50", "check": "privacy", "metric": "empirical_epsilon_lower_bound", "max": 50.0},
    ]}
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy), encoding="utf-8")
    plan = fast_plan_data(*adult_csvs, policy=str(tmp_path / "policy.yaml"),
                          checks={"performance": {"n_boot": 50},
                                  "privacy": {"attacks": ["rule_based"], "max_rows": 400}})
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan), encoding="utf-8")

    code, _, _ = run_cli(capsys, "audit", "plan.yaml", "--quiet")
    assert code == 1
    code, out, _ = run_cli(capsys, "runs", "--json")
    run_id = json.loads(out)[0]["run_id"]
    code, out, _ = run_cli(capsys, "show", run_id, "--json")
    outcomes = {o["rule_id"]: o for o in json.loads(out)["decision"]["outcomes"]}
    assert outcomes["auc"]["status"] == "pass"
    assert outcomes["eps-50"]["status"] == "inconclusive"
    assert "could certify" in outcomes["eps-50"]["message"]
    code, out, _ = run_cli(capsys, "show", run_id)
    assert code == 0 and "inconclusive" in out
