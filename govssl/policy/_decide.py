"""decide(): each rule against the measurements of its check; fail closed on missing evidence.

How a rule fares when its evidence is not there:

- the plan did not run the rule's check: ``on_missing`` decides (``fail``: the rule is
  ``missing``, which blocks for a block rule and warns for a warn rule; ``skip``: ``skipped``).
- the check ran and errored (a crash, a missing library, a bad input): the rule is ``missing``
  whatever ``on_missing`` says. An errored check is never a reason to let a release through.
- the check ran and skipped itself: a check skips only by raising ``SkipCheck``, which is its
  declaration that it does not apply to this model or data (fairness without sensitive
  features, label efficiency without a supervised baseline). That counts as not applicable, so
  ``on_missing`` decides, as for a check the plan does not run.
- the check measured, but not the rule's metric (or subject): ``on_missing`` decides. A check
  emits some metrics only where they apply (the privacy check's ``empirical_epsilon_excess``
  only for a model trained under DP).

Power: a measurement may say in its details how far its setting could see. ``max_detectable``
is the largest value of the metric the setting could have certified (a lower-bound metric such
as an empirical epsilon: the bound when every guess of the attack is right); ``min_detectable``
the smallest, for metrics gated from below; ``power_note`` says which setting would see further.
A ``max: T`` rule whose measurements all have ``max_detectable <= T`` could not have failed
whatever the model does, so a pass there is no evidence: the rule is ``inconclusive``, which
fails closed like missing evidence (blocks for a block rule, warns for a warn rule), and its
message gives the power note. Likewise a ``min: T`` rule with every ``min_detectable >= T``. A
measurement past the threshold still fails the rule: a violation seen is evidence at any power.

A decision in which no rule was evaluated (every rule skipped, or no rules) is blocked (see Decision).
"""

from __future__ import annotations

import math
from typing import Iterable

from govssl.evidence import CheckResult, Measurement
from govssl.policy.model import Decision, Policy, Rule, RuleOutcome

__all__ = ["decide", "evaluate_rule"]


def _observed(rule: Rule, m: Measurement):
    if rule.use == "estimate":
        return m.value
    return m.ci_low if rule.use == "ci_low" else m.ci_high


def _violation(rule: Rule, value) -> tuple[float, str]:
    """(how far past the threshold, why) with a positive amount when the rule fails."""
    if rule.equals is not None:
        return (0.0, "") if value == rule.equals else (1.0, f"is {value!r}, must equal {rule.equals!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.inf, f"is {value!r}, not a number"
    if math.isnan(value):
        return math.inf, "could not be measured (NaN)"
    worst = -math.inf
    why = ""
    if rule.max is not None:
        worst, why = value - rule.max, f"{value:.4g} > {rule.max:g}"
    if rule.min is not None and rule.min - value > worst:
        worst, why = rule.min - value, f"{value:.4g} < {rule.min:g}"
    return worst, why


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)


def _without_power(rule: Rule, m: Measurement) -> str:
    """Why ``m`` could not have failed ``rule`` ("" when it could, or when it does not say)."""
    details = m.details or {}
    top, bottom = _number(details.get("max_detectable")), _number(details.get("min_detectable"))
    if rule.max is not None and top is not None and top <= rule.max:
        return f"the largest {rule.metric} this setting could certify is {top:.4g}, not above {rule.max:g}"
    if rule.min is not None and bottom is not None and bottom >= rule.min:
        return f"the smallest {rule.metric} this setting could certify is {bottom:.4g}, not below {rule.min:g}"
    return ""


def evaluate_rule(rule: Rule, results: dict[str, CheckResult]) -> RuleOutcome:
    base = dict(rule_id=rule.id, check=rule.check, metric=rule.metric, severity=rule.severity,
                threshold=rule.threshold_text(), rmf=rule.rmf, eu_ai_act=rule.eu_ai_act)
    missing_status = "skipped" if rule.on_missing == "skip" else "missing"
    result = results.get(rule.check)
    if result is None:
        return RuleOutcome(**base, status=missing_status, observed=None, subject="",
                           message=f"check '{rule.check}' was not run")
    if result.status == "skipped":
        return RuleOutcome(**base, status=missing_status, observed=None, subject="",
                           message=f"check '{rule.check}' does not apply: {result.reason}")
    if result.status != "measured":  # errored (or a status this version does not know): fail closed
        return RuleOutcome(**base, status="missing", observed=None, subject="",
                           message=f"check '{rule.check}' {result.status}: {result.reason} "
                                   f"(an errored check fails its rules whatever on_missing says)")
    selected = [m for m in result.measurements if m.metric == rule.metric
                and (rule.subject is None or m.subject == rule.subject)]
    if not selected:
        narrowed = f" for subject '{rule.subject}'" if rule.subject is not None else ""
        return RuleOutcome(**base, status=missing_status, observed=None, subject=rule.subject or "",
                           message=f"no '{rule.metric}' measurement{narrowed}")
    insufficient = ""
    if rule.min_n is not None:
        small = [m for m in selected if m.n is None or m.n < rule.min_n]
        selected = [m for m in selected if not (m.n is None or m.n < rule.min_n)]
        if small:
            names = ", ".join(f"{m.subject or '(model)'} (n={m.n})" for m in small[:5])
            more = f" and {len(small) - 5} more" if len(small) > 5 else ""
            insufficient = f"; insufficient data (n < {rule.min_n}): {names}{more}"
        if not selected:
            return RuleOutcome(**base, status=missing_status, observed=None, subject=rule.subject or "",
                               message=f"every '{rule.metric}' measurement rests on fewer than {rule.min_n} rows{insufficient}")
    worst_m, worst_amount, worst_why, worst_value = None, -math.inf, "", None
    failing = []  # every subject past the threshold, so that the message names them all
    for m in selected:
        value = _observed(rule, m)
        if value is None:
            amount, why = math.inf, f"has no {rule.use} (no confidence interval)"
        else:
            amount, why = _violation(rule, value)
        if amount > 0 and m.subject:
            failing.append(m.subject)
        if worst_m is None or amount > worst_amount:
            worst_m, worst_amount, worst_why, worst_value = m, amount, why, value
    where = f" [{worst_m.subject}]" if worst_m.subject else ""
    bound = "" if rule.use == "estimate" else f"{rule.use} "
    if worst_amount > 0:
        others = [f for f in failing if f != worst_m.subject]
        also = f"; also past the threshold: {', '.join(others)}" if others else ""
        return RuleOutcome(**base, status="fail", observed=worst_value, subject=worst_m.subject,
                           message=f"{rule.metric}{where} {bound}{worst_why}{also}{insufficient}")
    shown = f"{worst_value:.4g}" if isinstance(worst_value, float) else repr(worst_value)
    if rule.equals is None:
        weak = [(m, _without_power(rule, m)) for m in selected]
        if all(why for _, why in weak):
            m, why = max(weak, key=lambda pair: pair[0] is worst_m)
            where = f" [{m.subject}]" if m.subject else ""
            note = str((m.details or {}).get("power_note") or "").strip()
            more = f"; for enough power: {note}" if note else ""
            return RuleOutcome(**base, status="inconclusive", observed=worst_value, subject=worst_m.subject,
                               message=f"{rule.metric}{where} {bound}{shown} cannot show a breach of "
                                       f"{rule.threshold_text()}: {why}{more}{insufficient}")
    return RuleOutcome(**base, status="pass", observed=worst_value, subject=worst_m.subject,
                       message=f"worst {rule.metric}{where} {bound}{shown} within {rule.threshold_text()}{insufficient}")


def decide(policy: Policy, results: Iterable[CheckResult]) -> Decision:
    """Every rule's outcome; the release is blocked by any failed, missing or inconclusive
    blocking rule, and when no rule was evaluated."""
    by_check = {r.check: r for r in results}
    return Decision(tuple(evaluate_rule(rule, by_check) for rule in policy.rules))
