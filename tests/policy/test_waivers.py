"""Waivers turn a blocking failure into an accepted one until they expire."""

from __future__ import annotations

from datetime import datetime, timezone

from govssl.policy import apply_waivers, unwaived
from govssl.policy.model import Decision, RuleOutcome
from govssl.records import Waiver

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)


def _outcome(rule_id, status, severity="block"):
    return RuleOutcome(rule_id, "fairness", "equalized_odds_difference", severity, status, 0.2, "sex", "<= 0.1", "gap")


def _waiver(rule_id="eod", expires="2026-12-31", run_id="run-1", model=None):
    return Waiver("w1", rule_id, "Dana Reviewer", "mitigated downstream", expires, "2026-11-20T09:00:00+00:00",
                  run_id=run_id, model_sha256=model)


BLOCKED = Decision((_outcome("eod", "fail"), _outcome("auc", "pass")))


def test_apply_waivers__waived_blocking_failure_passes_and_carries_the_waiver():
    decision = apply_waivers(BLOCKED, [_waiver()], run_id="run-1", model_sha256="abc", at=NOW)
    assert decision.passed and decision.exit_code == 0
    waived = decision.outcomes[0]
    assert waived.status == "waived"
    assert waived.waiver["approver"] == "Dana Reviewer" and waived.waiver["expires"] == "2026-12-31"
    assert waived.waiver["status_before"] == "fail" and waived.waiver["scope"] == "run"


def test_apply_waivers__expired_waiver_blocks_again():
    waived = apply_waivers(BLOCKED, [_waiver(expires="2026-12-31")], run_id="run-1", model_sha256="abc", at=NOW)
    later = datetime(2027, 1, 1, 0, 0, tzinfo=timezone.utc)
    again = apply_waivers(waived, [_waiver(expires="2026-12-31")], run_id="run-1", model_sha256="abc", at=later)
    assert not again.passed and again.outcomes[0].status == "fail" and again.outcomes[0].waiver is None


def test_apply_waivers__waiver_counts_through_its_expiry_day():
    last_day = datetime(2026, 12, 31, 23, 59, tzinfo=timezone.utc)
    assert apply_waivers(BLOCKED, [_waiver()], run_id="run-1", model_sha256="abc", at=last_day).passed


def test_apply_waivers__applies_only_to_its_rule_and_its_run_or_model():
    other_rule = apply_waivers(BLOCKED, [_waiver(rule_id="auc")], run_id="run-1", model_sha256="abc", at=NOW)
    other_run = apply_waivers(BLOCKED, [_waiver(run_id="run-2")], run_id="run-1", model_sha256="abc", at=NOW)
    by_model = apply_waivers(BLOCKED, [_waiver(run_id=None, model="abc")], run_id="run-9", model_sha256="abc", at=NOW)
    other_model = apply_waivers(BLOCKED, [_waiver(run_id=None, model="def")], run_id="run-9", model_sha256="abc", at=NOW)
    assert not other_rule.passed and not other_run.passed and not other_model.passed
    assert by_model.passed and by_model.outcomes[0].waiver["scope"] == "model"


def test_apply_waivers__never_touches_warnings_or_passes():
    decision = Decision((_outcome("eod", "fail", severity="warn"), _outcome("auc", "pass")))
    out = apply_waivers(decision, [_waiver(), _waiver(rule_id="auc")], run_id="run-1", model_sha256="abc", at=NOW)
    assert [o.status for o in out.outcomes] == ["fail", "pass"]


def test_apply_waivers__missing_evidence_can_be_waived_and_restored():
    decision = Decision((_outcome("eod", "missing"),))
    waived = apply_waivers(decision, [_waiver()], run_id="run-1", model_sha256="abc", at=NOW)
    assert waived.passed
    assert unwaived(waived.outcomes[0]).status == "missing"
