"""The run page's charts, drawn from a stored run's measurements with :mod:`govssl.charts`:
per-group rates with their intervals, accuracy under attack against eps, the privacy figures."""

from __future__ import annotations

import math
import re

from govssl.charts import Interval, interval_chart_svg, line_chart_svg
from govssl.records import AuditRun

__all__ = ["CHARTS", "chart_svg", "charts_of"]

#: the charts a run page may show: name -> (title, what it shows)
CHARTS = {
    "fairness": ("Per-group rates", ("Selection, true positive and false positive rates of each group, "
                                     "with their 95% intervals (fairness check)")),
    "robustness": ("Accuracy under attack", ("Worst-case accuracy under attack against the attack "
                                             "strength eps, for all attacked rows and per group (robustness check)")),
    "privacy": ("Privacy", ("Membership-inference AUC with its interval, and the empirical lower "
                            "bounds on epsilon against the epsilon the training accounted (privacy check)")),
}

RATES = ("selection_rate", "true_positive_rate", "false_positive_rate")
_THRESHOLD = re.compile(r"^(>=|<=)\s*(-?[0-9.eE+-]+)")


def _measured(run: AuditRun, check: str):
    return next((r for r in run.results if r.check == check and r.status == "measured"), None)


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _limits(run: AuditRun, check: str, metric: str) -> list[tuple[float, str]]:
    """The policy's limits on ``check``/``metric``, read from the run's rule outcomes."""
    found = []
    for o in run.decision.outcomes:
        match = _THRESHOLD.match(o.threshold or "")
        if o.check == check and o.metric == metric and match:
            found.append((float(match.group(2)), f"policy {o.rule_id}: {o.threshold}"))
    return found


def charts_of(run: AuditRun) -> list[str]:
    """The names of the charts this run has the measurements for."""
    names = []
    fairness = _measured(run, "fairness")
    if fairness and any(m.metric in RATES and isinstance(m.details.get("group"), str) or
                        m.metric in RATES and "=" in m.subject for m in fairness.measurements):
        names.append("fairness")
    robustness = _measured(run, "robustness")
    if robustness and any(m.metric == "robust_accuracy" for m in robustness.measurements):
        names.append("robustness")
    privacy = _measured(run, "privacy")
    if privacy and privacy.measurements:
        names.append("privacy")
    return names


def _fairness(run: AuditRun) -> str:
    result = _measured(run, "fairness")
    panels: dict[str, list[Interval]] = {metric.replace("_", " "): [] for metric in RATES}
    for m in result.measurements:
        if m.metric in RATES and "=" in m.subject:
            label = f"{m.subject} (n={m.n})" if m.n is not None else m.subject
            panels[m.metric.replace("_", " ")].append(Interval(label, _number(m.value), m.ci_low, m.ci_high))
    return interval_chart_svg("Per-group rates with 95% intervals", panels, "rate")


def _eps(subject: str) -> float | None:
    match = re.search(r"eps=([0-9.eE+-]+)", subject)
    try:
        return float(match.group(1)) if match else None
    except ValueError:
        return None


def _robustness(run: AuditRun) -> str:
    result = _measured(run, "robustness")
    clean = next((m for m in result.measurements if m.metric == "clean_accuracy"), None)
    worst: dict[str, list] = {"all test rows": []}
    attacks: dict[str, dict[str, list]] = {}
    start = [(0.0, float(clean.value))] if clean is not None and _number(clean.value) is not None else []
    worst["all test rows"] += start
    for m in result.measurements:
        eps, value = _eps(m.subject), _number(m.value)
        if eps is None or value is None:
            continue
        if m.metric == "robust_accuracy":
            worst["all test rows"].append((eps, value))
        elif m.metric == "group_robust_accuracy":
            group = m.subject.split(" ", 1)[1] if " " in m.subject else m.subject
            worst.setdefault(f"{group} (n={m.n})", []).append((eps, value))
        elif m.metric == "attack_robust_accuracy":
            attack = m.subject.split(" ", 1)[0].upper()
            attacks.setdefault(attack, {"all test rows": list(start)})["all test rows"].append((eps, value))
    panels = {"worst of attacks": worst, **attacks}
    limits = [(None, value, label) for value, label in _limits(run, "robustness", "robust_accuracy")]
    return line_chart_svg("Accuracy under attack, all attacked rows and per group",
                          "eps (L-inf, model input space)", "accuracy", panels, thresholds=limits)


def _privacy(run: AuditRun) -> str:
    result = _measured(run, "privacy")
    auc, epsilon = [], []
    for m in result.measurements:
        who = (m.subject or "canaries").replace("_", " ")
        if m.metric == "membership_auc":
            auc.append(Interval(who, _number(m.value), m.ci_low, m.ci_high))
        elif m.metric.endswith("epsilon_lower_bound"):
            epsilon.append(Interval(who, _number(m.value), m.ci_low, m.ci_high))
    dp = run.training.dp or {}
    limits = {"membership-inference AUC": [(0.5, "0.5: chance")]}
    accounted = _number(dp.get("epsilon"))
    if accounted is not None:
        limits["epsilon, empirical lower bound"] = [(accounted, f"epsilon accounted: {accounted:.3g}")]
    top = max([i.value for i in epsilon if i.value is not None] + [accounted or 0.0, 0.1])
    panels = {"membership-inference AUC": auc, "epsilon, empirical lower bound": epsilon}
    ranges = {"membership-inference AUC": (0.0, 1.0), "epsilon, empirical lower bound": (0.0, top * 1.15)}
    return interval_chart_svg("Privacy: membership inference and epsilon", panels, "", limits, ranges)


def chart_svg(run: AuditRun, name: str) -> str:
    """The chart ``name`` (a key of :data:`CHARTS`) of the run, as an SVG document."""
    return {"fairness": _fairness, "robustness": _robustness, "privacy": _privacy}[name](run)
