"""Tests of decide() and evaluate_rule(): thresholds, confidence bounds, the worst subject, and
failing closed on missing, errored or skipped evidence."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from govssl.checks.base import CheckResult, Measurement
from govssl.policy import Decision, Policy, Rule, decide, evaluate_rule, load_policy

REPO = Path(__file__).resolve().parents[2]

EOD = "equalized_odds_difference"


def _m(value, subject="", metric=EOD, check="fairness", ci_low=None, ci_high=None) -> Measurement:
    return Measurement(check, metric, value, subject, ci_low, ci_high, n=100)


def _measured(*measurements: Measurement, check="fairness") -> dict[str, CheckResult]:
    return {check: CheckResult(check, "measured", tuple(measurements))}


def _rule(**overrides) -> Rule:
    return Rule(**{"id": "r", "check": "fairness", "metric": EOD, "max": 0.10, **overrides})


def _policy(*rules: Rule) -> Policy:
    return Policy(name="test", version=1, rules=rules)


@pytest.mark.parametrize("value, status", [(0.05, "pass"), (0.10, "pass"), (0.1000001, "fail"), (0.5, "fail")])
def test_evaluate_rule__max(value, status):
    outcome = evaluate_rule(_rule(), _measured(_m(value)))

    assert outcome.status == status
    assert outcome.observed == value


@pytest.mark.parametrize("value, status", [(0.9, "pass"), (0.8, "pass"), (0.79, "fail")])
def test_evaluate_rule__min(value, status):
    rule = _rule(metric="demographic_parity_ratio", max=None, min=0.8)

    outcome = evaluate_rule(rule, _measured(_m(value, metric="demographic_parity_ratio")))

    assert outcome.status == status


@pytest.mark.parametrize("value, status", [(True, "pass"), (False, "fail"), ("yes", "fail")])
def test_evaluate_rule__equals(value, status):
    rule = _rule(metric="signed", max=None, equals=True)

    outcome = evaluate_rule(rule, _measured(_m(value, metric="signed")))

    assert outcome.status == status


def test_evaluate_rule__min_and_max_report_the_side_violated():
    rule = _rule(metric="accuracy", min=0.6, max=0.9)

    low = evaluate_rule(rule, _measured(_m(0.5, metric="accuracy")))
    high = evaluate_rule(rule, _measured(_m(0.95, metric="accuracy")))

    assert (low.status, low.message) == ("fail", "accuracy 0.5 < 0.6")
    assert (high.status, high.message) == ("fail", "accuracy 0.95 > 0.9")
    assert low.threshold == ">= 0.6 and <= 0.9"


def test_evaluate_rule__fail_message_names_subject_value_and_threshold():
    outcome = evaluate_rule(_rule(), _measured(_m(0.25, "sex")))

    assert outcome.message == "equalized_odds_difference [sex] 0.25 > 0.1"
    assert outcome.threshold == "<= 0.1"
    assert outcome.subject == "sex"


def test_evaluate_rule__ci_high_gates_on_the_upper_bound():
    # the estimate passes, the pessimistic end of the interval does not
    measurement = _m(0.05, "sex", ci_low=0.01, ci_high=0.15)

    on_estimate = evaluate_rule(_rule(), _measured(measurement))
    on_bound = evaluate_rule(_rule(use="ci_high"), _measured(measurement))

    assert on_estimate.status == "pass"
    assert on_bound.status == "fail"
    assert on_bound.observed == 0.15
    assert on_bound.message == "equalized_odds_difference [sex] ci_high 0.15 > 0.1"
    assert on_bound.threshold == "<= 0.1 (ci_high)"


def test_evaluate_rule__ci_low_gates_on_the_lower_bound():
    rule = _rule(check="performance", metric="roc_auc", max=None, min=0.7, use="ci_low")
    measurement = _m(0.75, metric="roc_auc", check="performance", ci_low=0.68, ci_high=0.8)

    outcome = evaluate_rule(rule, _measured(measurement, check="performance"))

    assert (outcome.status, outcome.observed) == ("fail", 0.68)
    assert outcome.message == "roc_auc ci_low 0.68 < 0.7"


def test_evaluate_rule__without_ci_the_bound_rule_fails():
    outcome = evaluate_rule(_rule(use="ci_high"), _measured(_m(0.01, "sex")))

    assert outcome.status == "fail"
    assert outcome.observed is None
    assert outcome.message == "equalized_odds_difference [sex] ci_high has no ci_high (no confidence interval)"


def test_evaluate_rule__worst_of_many_subjects_is_reported():
    results = _measured(_m(0.05, "sex"), _m(0.20, "race"), _m(0.12, "sex*race"))

    outcome = evaluate_rule(_rule(), results)

    assert (outcome.status, outcome.subject, outcome.observed) == ("fail", "race", 0.20)


def test_evaluate_rule__worst_passing_subject_is_reported():
    results = _measured(_m(0.05, "sex"), _m(0.08, "race"), _m(0.01, "sex*race"))

    outcome = evaluate_rule(_rule(), results)

    assert (outcome.status, outcome.subject, outcome.observed) == ("pass", "race", 0.08)
    assert outcome.message == "worst equalized_odds_difference [race] 0.08 within <= 0.1"


def test_evaluate_rule__worst_of_min_rule_is_the_smallest():
    rule = _rule(metric="demographic_parity_ratio", max=None, min=0.8)
    results = _measured(*(_m(v, s, metric="demographic_parity_ratio") for v, s in
                          [(0.9, "sex"), (0.6, "race"), (0.7, "sex*race")]))

    outcome = evaluate_rule(rule, results)

    assert (outcome.status, outcome.subject, outcome.observed) == ("fail", "race", 0.6)


def test_evaluate_rule__subject_narrows_the_measurements():
    results = _measured(_m(0.05, "sex"), _m(0.20, "race"))

    outcome = evaluate_rule(_rule(subject="sex"), results)

    assert (outcome.status, outcome.subject, outcome.observed) == ("pass", "sex", 0.05)


def test_evaluate_rule__other_metrics_are_ignored():
    results = _measured(_m(0.05, "sex"), _m(0.9, "sex", metric="demographic_parity_difference"))

    assert evaluate_rule(_rule(), results).status == "pass"


def test_evaluate_rule__nan_fails():
    outcome = evaluate_rule(_rule(), _measured(_m(0.01, "sex"), _m(math.nan, "race")))

    assert (outcome.status, outcome.subject) == ("fail", "race")
    assert outcome.message == "equalized_odds_difference [race] could not be measured (NaN)"


def test_evaluate_rule__non_number_fails_a_max_rule():
    outcome = evaluate_rule(_rule(), _measured(_m("n/a", "sex")))

    assert outcome.status == "fail"
    assert outcome.message == "equalized_odds_difference [sex] is 'n/a', not a number"


def test_evaluate_rule__minus_infinity_passes_a_max_rule():
    outcome = evaluate_rule(_rule(), _measured(_m(-math.inf, "sex")))

    assert (outcome.status, outcome.subject, outcome.observed) == ("pass", "sex", -math.inf)


def _missing_cases():
    return {
        "not run": ({}, "check 'fairness' was not run"),
        "errored": ({"fairness": CheckResult("fairness", "errored", (), "RuntimeError: boom")},
                    "check 'fairness' errored: RuntimeError: boom (an errored check fails its rules "
                    "whatever on_missing says)"),
        "skipped": ({"fairness": CheckResult("fairness", "skipped", (), "no sensitive features")},
                    "check 'fairness' does not apply: no sensitive features"),
        "no metric": (_measured(_m(0.1, "sex", metric="demographic_parity_difference")),
                      "no 'equalized_odds_difference' measurement"),
    }


@pytest.mark.parametrize("case", list(_missing_cases()))
def test_evaluate_rule__missing_evidence_fails_closed(case):
    results, message = _missing_cases()[case]

    outcome = evaluate_rule(_rule(), results)

    assert outcome.status == "missing"
    assert outcome.blocking
    assert outcome.observed is None
    assert outcome.message == message
    assert decide(_policy(_rule()), results.values()).exit_code == 1


def test_evaluate_rule__narrowed_subject_not_measured_is_missing():
    outcome = evaluate_rule(_rule(subject="age"), _measured(_m(0.01, "sex")))

    assert (outcome.status, outcome.subject) == ("missing", "age")
    assert outcome.message == "no 'equalized_odds_difference' measurement for subject 'age'"


_NOT_APPLICABLE = [case for case in _missing_cases() if case != "errored"]


@pytest.mark.parametrize("case", _NOT_APPLICABLE)
def test_evaluate_rule__on_missing_skip_does_not_block(case):
    results, message = _missing_cases()[case]
    # a second rule that passes: a decision needs at least one evaluated rule
    performance = CheckResult("performance", "measured", (_m(0.85, check="performance", metric="roc_auc"),))
    auc = _rule(id="auc", check="performance", metric="roc_auc", max=None, min=0.7)

    outcome = evaluate_rule(_rule(on_missing="skip"), results)

    assert outcome.status == "skipped"
    assert not outcome.blocking
    assert outcome.message == message
    assert decide(_policy(auc, _rule(on_missing="skip")), [*results.values(), performance]).exit_code == 0


@pytest.mark.parametrize("severity", ["block", "warn"])
def test_evaluate_rule__errored_check_fails_its_rules_whatever_on_missing_says(severity):
    results, message = _missing_cases()["errored"]
    performance = CheckResult("performance", "measured", (_m(0.85, check="performance", metric="roc_auc"),))
    auc = _rule(id="auc", check="performance", metric="roc_auc", max=None, min=0.7)

    decision = decide(_policy(auc, _rule(on_missing="skip", severity=severity)), [*results.values(), performance])

    outcome = decision.outcomes[1]
    assert (outcome.status, outcome.message) == ("missing", message)
    if severity == "block":
        assert outcome.blocking and decision.exit_code == 1
    else:
        assert [o.rule_id for o in decision.warnings] == ["r"] and decision.exit_code == 0


def test_evaluate_rule__a_missing_library_is_an_error_not_a_skip():
    # what happens to ART's checks when `packaging` is not installed
    errored = CheckResult("privacy", "errored", (), "ModuleNotFoundError: No module named 'packaging'")
    rule = _rule(check="privacy", metric="membership_advantage", on_missing="skip")

    outcome = evaluate_rule(rule, {"privacy": errored})

    assert outcome.status == "missing" and outcome.blocking
    assert "No module named 'packaging'" in outcome.message


@pytest.mark.parametrize("case", _NOT_APPLICABLE)
def test_decide__no_rule_evaluated_is_blocked_with_a_message(case):
    results, _ = _missing_cases()[case]

    decision = decide(_policy(_rule(on_missing="skip"), _rule(id="w", severity="warn", on_missing="skip")),
                      results.values())

    assert [o.status for o in decision.outcomes] == ["skipped", "skipped"]
    assert decision.blockers == [] and decision.warnings == []
    assert (decision.passed, decision.verdict, decision.exit_code) == (False, "blocked", 1)
    assert decision.nothing_evaluated.startswith("no rule was evaluated: all 2 rule(s) of the policy were skipped")
    assert decision.to_dict()["nothing_evaluated"] == decision.nothing_evaluated


def test_decide__a_policy_without_rules_is_blocked():
    decision = decide(_policy(), [CheckResult("fairness", "measured", (_m(0.01, "sex"),))])

    assert decision.exit_code == 1
    assert decision.nothing_evaluated == "no rule was evaluated: the policy has no rules"


def test_decision__nothing_evaluated_survives_the_round_trip():
    decision = decide(_policy(_rule(on_missing="skip")), [])

    again = Decision.from_dict(json.loads(json.dumps(decision.to_dict())))

    assert again == decision and again.verdict == "blocked"
    assert again.nothing_evaluated == decision.nothing_evaluated != ""


def test_evaluate_rule__missing_warn_rule_does_not_block():
    decision = decide(_policy(_rule(severity="warn")), [])

    assert decision.outcomes[0].status == "missing"
    assert decision.passed
    assert [o.rule_id for o in decision.warnings] == ["r"]


def test_decide__warn_failure_does_not_block_and_is_a_warning():
    policy = _policy(_rule(id="hard", max=0.5), _rule(id="soft", severity="warn"))

    decision = decide(policy, _measured(_m(0.3, "sex")).values())

    assert [o.status for o in decision.outcomes] == ["pass", "fail"]
    assert decision.passed and decision.verdict == "pass" and decision.exit_code == 0
    assert [o.rule_id for o in decision.warnings] == ["soft"]
    assert decision.blockers == []


def test_decide__block_failure_blocks_with_exit_code_1():
    policy = _policy(_rule(id="hard"), _rule(id="soft", severity="warn", max=0.5))

    decision = decide(policy, _measured(_m(0.3, "sex")).values())

    assert not decision.passed and decision.verdict == "blocked" and decision.exit_code == 1
    assert [o.rule_id for o in decision.blockers] == ["hard"]
    assert decision.warnings == []


def test_decide__outcomes_follow_rule_order_and_each_rule_reads_its_check():
    policy = _policy(
        _rule(id="auc", check="performance", metric="roc_auc", max=None, min=0.7),
        _rule(id="eod"),
    )
    results = [
        CheckResult("fairness", "measured", (_m(0.02, "sex"),)),
        CheckResult("performance", "measured", (_m(0.65, check="performance", metric="roc_auc"),)),
    ]

    decision = decide(policy, results)

    assert [(o.rule_id, o.status) for o in decision.outcomes] == [("auc", "fail"), ("eod", "pass")]


def test_decide__default_policy_on_good_evidence_passes():
    policy = load_policy(REPO / "policies" / "default.yaml")
    results = [
        CheckResult("performance", "measured", (
            _m(0.85, check="performance", metric="roc_auc", ci_low=0.83, ci_high=0.87),
            _m(0.02, check="performance", metric="expected_calibration_error"),
        )),
        CheckResult("fairness", "measured", tuple(
            _m(v, s, metric=metric) for s in ("sex", "race", "sex*race") for metric, v in
            [(EOD, 0.05), ("demographic_parity_ratio", 0.9), ("groups_insufficient_data", 0.0)]
        )),
    ]

    decision = decide(policy, results)

    assert [o.status for o in decision.outcomes if o.check in ("performance", "fairness")] == ["pass"] * 5
    assert decision.exit_code == 0


def test_decide__default_policy_without_evidence_is_blocked():
    decision = decide(load_policy(REPO / "policies" / "default.yaml"), [])

    assert [o.status for o in decision.outcomes if o.check in ("performance", "fairness")] == ["missing"] * 5
    assert [o.rule_id for o in decision.blockers] == ["performance-roc-auc", "fairness-equalized-odds"]
    assert decision.exit_code == 1


def test_decision__round_trips_through_dict():
    decision = decide(_policy(_rule(id="a"), _rule(id="b", severity="warn")), _measured(_m(0.3, "sex")).values())

    again = Decision.from_dict(decision.to_dict())

    assert again == decision
    assert again.to_dict()["verdict"] == "blocked"


# ------------------------------------------------------------------------- minimum group size


def _groups(*pairs):
    """Per-group TPR measurements: (subject, value, n)."""
    from govssl.checks.base import CheckResult, Measurement

    ms = tuple(Measurement("fairness", "true_positive_rate", v, s, n=n) for s, v, n in pairs)
    return {"fairness": CheckResult("fairness", "measured", ms)}


def test_evaluate_rule__min_n_reports_small_groups_as_insufficient_instead_of_judging_them():
    from govssl.policy import Rule, evaluate_rule

    rule = Rule(id="tpr", check="fairness", metric="true_positive_rate", min=0.5, min_n=30)
    outcome = evaluate_rule(rule, _groups(("sex=Female", 0.6, 500), ("sex=Male", 0.7, 900), ("race=Other", 0.1, 12)))
    assert outcome.status == "pass"
    assert "insufficient data (n < 30): race=Other (n=12)" in outcome.message


def test_evaluate_rule__min_n_with_only_small_groups_fails_closed():
    from govssl.policy import Rule, evaluate_rule

    rule = Rule(id="tpr", check="fairness", metric="true_positive_rate", min=0.5, min_n=30)
    outcome = evaluate_rule(rule, _groups(("race=Other", 0.9, 12), ("race=Eskimo", 0.9, 8)))
    assert outcome.status == "missing" and outcome.blocking
    assert "fewer than 30 rows" in outcome.message


def test_evaluate_rule__without_min_n_small_groups_count():
    from govssl.policy import Rule, evaluate_rule

    rule = Rule(id="tpr", check="fairness", metric="true_positive_rate", min=0.5)
    outcome = evaluate_rule(rule, _groups(("sex=Female", 0.6, 500), ("race=Other", 0.1, 12)))
    assert outcome.status == "fail" and outcome.subject == "race=Other"


# ---- power: a threshold beyond what the measurement could certify is inconclusive -------------

def _powered(value, max_detectable=None, subject="", note="", **extra) -> Measurement:
    details = {"power_note": note} if note else {}
    if max_detectable is not None:
        details["max_detectable"] = max_detectable
    return Measurement("privacy", "canary_epsilon_excess", value, subject, n=1000, details={**details, **extra})


def _excess_rule(**overrides) -> Rule:
    return Rule(**{"id": "dp", "check": "privacy", "metric": "canary_epsilon_excess", "max": 0.0, **overrides})


def test_evaluate_rule__threshold_beyond_power_is_inconclusive_and_blocks():
    m = _powered(-3.0, max_detectable=-0.5, note="more canaries (checks.privacy.canaries)")
    outcome = evaluate_rule(_excess_rule(), _measured(m, check="privacy"))

    assert outcome.status == "inconclusive"
    assert outcome.blocking
    assert "could certify is -0.5" in outcome.message and "more canaries" in outcome.message
    decision = decide(_policy(_excess_rule()), [CheckResult("privacy", "measured", (m,))])
    assert not decision.passed and decision.blockers == [outcome]
    # it round-trips like any other status
    assert Decision.from_dict(json.loads(json.dumps(decision.to_dict()))) == decision


def test_evaluate_rule__inconclusive_warn_rule_warns():
    outcome = evaluate_rule(_excess_rule(severity="warn"), _measured(_powered(-3.0, -0.5), check="privacy"))
    decision = Decision((outcome, evaluate_rule(_rule(), _measured(_m(0.0)))))

    assert outcome.status == "inconclusive" and not outcome.blocking
    assert decision.passed and decision.warnings == [outcome]


@pytest.mark.parametrize("ceiling, status", [(2.2, "pass"), (0.0, "inconclusive"), (None, "pass")])
def test_evaluate_rule__power_at_the_threshold(ceiling, status):
    # the ceiling must lie above the threshold: a check that can certify at most 0 cannot show > 0
    outcome = evaluate_rule(_excess_rule(), _measured(_powered(-3.0, ceiling), check="privacy"))
    assert outcome.status == status


def test_evaluate_rule__violation_seen_fails_whatever_the_power():
    outcome = evaluate_rule(_excess_rule(), _measured(_powered(0.4, max_detectable=0.3), check="privacy"))
    assert outcome.status == "fail"


def test_evaluate_rule__one_powered_subject_is_enough():
    weak, strong = _powered(-3.0, -0.5, subject="a"), _powered(-2.0, 1.0, subject="b")
    assert evaluate_rule(_excess_rule(), _measured(weak, strong, check="privacy")).status == "pass"
    assert evaluate_rule(_excess_rule(), _measured(weak, check="privacy")).status == "inconclusive"


def test_evaluate_rule__min_rule_uses_min_detectable():
    rule = _excess_rule(metric="recall", max=None, min=0.5)
    m = Measurement("privacy", "recall", 0.9, n=100, details={"min_detectable": 0.6})
    assert evaluate_rule(rule, _measured(m, check="privacy")).status == "inconclusive"
    m = Measurement("privacy", "recall", 0.9, n=100, details={"min_detectable": 0.2})
    assert evaluate_rule(rule, _measured(m, check="privacy")).status == "pass"
