"""The white-box canary audit through the CLI: DP with its noise switched off is blocked by
privacy-dp-claim, correct DP passes it, and a model without DP lets the canaries show."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.conftest import fast_plan_data, run_cli

DP_CLAIM = {"id": "privacy-dp-claim", "check": "privacy", "metric": "canary_epsilon_excess", "max": 0.0,
            "severity": "block", "on_missing": "skip"}


def _audit(capsys, tmp_path, monkeypatch, adult_csvs, *, dp: bool, privacy: dict | None = None,
           mode: str = "fine_tune") -> tuple[int, dict]:
    """Audit a fast plan (VIME pretraining and fine-tuning, both private under DP) against the
    privacy-dp-claim rule alone; (exit code, stored run as JSON)."""
    monkeypatch.chdir(tmp_path)
    policy = {"policy": "dp-claim", "version": 1, "rules": [DP_CLAIM]}
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy), encoding="utf-8")
    plan = fast_plan_data(*adult_csvs, dp=dp, policy=str(tmp_path / "policy.yaml"),
                          checks={"privacy": {"attacks": ["rule_based"], "max_rows": 400, **(privacy or {})}})
    plan["training"]["pretrain"] = {"method": "vime", "epochs": 1, "batch_size": 256}
    plan["training"]["finetune"]["mode"] = mode
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan), encoding="utf-8")
    code, _, err = run_cli(capsys, "audit", "plan.yaml", "--quiet")
    _, out, _ = run_cli(capsys, "runs", "--json")
    _, out, _ = run_cli(capsys, "show", json.loads(out)[0]["run_id"], "--json")
    return code, json.loads(out)


def _canary(run: dict, metric: str) -> dict:
    privacy = next(c for c in run["checks"] if c["check"] == "privacy")
    return next(m for m in privacy["measurements"] if m["metric"] == metric)


def _outcome(run: dict) -> dict:
    return next(o for o in run["decision"]["outcomes"] if o["rule_id"] == "privacy-dp-claim")


def test_dp_claim__noise_switched_off_after_calibration_is_blocked(capsys, tmp_path, monkeypatch, adult_csvs):
    import govssl.train._dp as dp_module

    calibrated = dp_module.make_private

    def without_noise(*args, **kwargs):
        # the noise is calibrated and accounted as usual, so the record claims epsilon 3, but
        # Opacus draws it with multiplier 0 (its own hook for a noise other than the accounted one)
        private = calibrated(*args, **kwargs)
        private.optimizer._adjusted_noise_multiplier = 0.0
        return private

    monkeypatch.setattr(dp_module, "make_private", without_noise)
    code, run = _audit(capsys, tmp_path, monkeypatch, adult_csvs, dp=True)
    bound = _canary(run, "canary_epsilon_lower_bound")
    assert bound["details"]["claimed_epsilon"] == pytest.approx(3.0, abs=0.05)
    assert bound["details"]["canary_kind"] == "whitebox"
    assert bound["value"] > 3.5  # measured 4.35 (the ceiling of 1,000 canaries is 5.27)
    assert code == 1
    assert _outcome(run)["status"] == "fail" and run["decision"]["verdict"] == "blocked"


def test_dp_claim__correct_dp_passes(capsys, tmp_path, monkeypatch, adult_csvs):
    code, run = _audit(capsys, tmp_path, monkeypatch, adult_csvs, dp=True)
    bound = _canary(run, "canary_epsilon_lower_bound")
    assert bound["details"]["claimed_epsilon"] == pytest.approx(3.0, abs=0.05)
    assert bound["details"]["canary_kind"] == "whitebox" and bound["details"]["audited_phase"] == "finetune"
    assert bound["value"] < 3.0 < bound["details"]["max_detectable"]  # the audit could have caught a breach
    assert _outcome(run)["status"] == "pass"
    assert code == 0


def test_canary_audit__model_without_dp_shows_its_canaries(capsys, tmp_path, monkeypatch, adult_csvs):
    code, run = _audit(capsys, tmp_path, monkeypatch, adult_csvs, dp=False,
                       privacy={"canary_audit_without_dp": True})
    bound = _canary(run, "canary_epsilon_lower_bound")
    assert bound["details"]["claimed_epsilon"] is None and "without noise" in bound["details"]["training"]
    assert bound["value"] > 1.0
    assert _outcome(run)["status"] == "skipped", run["decision"]  # no claim, nothing to compare
    assert code == 1 and run["decision"]["nothing_evaluated"], run["decision"]


def test_canary_audit__a_small_head_gets_fewer_white_box_canaries_and_their_ceiling(capsys, tmp_path, monkeypatch,
                                                                                     adult_csvs):
    # a linear probe trains the 64 x 2 head alone: 128 coordinates for gradient canaries. Fewer
    # canaries certify less; a claim past that ceiling is inconclusive (it blocks), never a pass
    # from canaries too weak to see a breach
    code, run = _audit(capsys, tmp_path, monkeypatch, adult_csvs, dp=True, mode="linear_probe")
    bound = _canary(run, "canary_epsilon_lower_bound")
    details = bound["details"]
    assert details["canary_kind"] == "whitebox" and details["canaries"] == 128
    assert details["canaries_reduced"].startswith("1000 canaries asked for, but the head's weight matrix")
    status = _outcome(run)["status"]
    excess = _canary(run, "canary_epsilon_excess")["details"]["max_detectable"]
    assert status == ("inconclusive" if excess <= 0 else "pass"), (status, excess)
    assert (code == 1) == (status == "inconclusive")
