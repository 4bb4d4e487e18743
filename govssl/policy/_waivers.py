"""Waivers: an approved, expiring exception that turns a rule's blocking failure into an
accepted one, visibly. The stored decision keeps what the rules found; the effective decision
is recomputed from it and the waivers in force at the moment it is read."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Iterable

from govssl.policy.model import Decision, RuleOutcome

if TYPE_CHECKING:  # govssl.records imports the policy package: no import cycle at run time
    from govssl.records import Waiver

__all__ = ["apply_waivers", "unwaived"]


def unwaived(outcome: RuleOutcome) -> RuleOutcome:
    """The outcome as the rule found it, before any waiver."""
    if outcome.status != "waived" or not outcome.waiver:
        return outcome
    return replace(outcome, status=outcome.waiver.get("status_before", "fail"), waiver=None)


def _applies(waiver: Waiver, outcome: RuleOutcome, run_id: str, model_sha256: str) -> bool:
    if waiver.rule_id != outcome.rule_id:
        return False
    return (waiver.run_id is not None and waiver.run_id == run_id) or (
        waiver.model_sha256 is not None and waiver.model_sha256 == model_sha256
    )


def apply_waivers(
    decision: Decision,
    waivers: Iterable[Waiver],
    *,
    run_id: str,
    model_sha256: str,
    at: datetime | None = None,
) -> Decision:
    """The decision with every waiver active at ``at`` applied to the blocking failures it names.

    Warnings and passing rules are never waived; expired waivers count for nothing, so a
    decision read after expiry is blocked again.
    """
    at = at or datetime.now(timezone.utc)
    active = [w for w in waivers if w.active(at)]
    outcomes = []
    for outcome in decision.outcomes:
        outcome = unwaived(outcome)
        if outcome.blocking:
            match = next((w for w in sorted(active, key=lambda w: w.expires, reverse=True)
                          if _applies(w, outcome, run_id, model_sha256)), None)
            if match is not None:
                outcome = replace(outcome, status="waived", waiver={
                    "waiver_id": match.waiver_id, "approver": match.approver, "reason": match.reason,
                    "expires": match.expires, "created_at": match.created_at,
                    "scope": "run" if match.run_id == run_id else "model",
                    "status_before": outcome.status,
                })
        outcomes.append(outcome)
    return Decision(tuple(outcomes))
