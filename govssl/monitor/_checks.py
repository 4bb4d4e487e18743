"""The measurements `govssl monitor` makes, by check name and metric (what a monitoring pack's
rules may name). Light on purpose: the policy loader reads it to validate a pack.

With ``--labels`` the monitor also runs the audit's own ``performance`` and ``fairness`` checks on
the batch, so their metrics are valid in a monitoring pack too (they are registered checks).
"""

from __future__ import annotations

__all__ = ["MONITOR_CHECKS", "MonitorCheck"]


class MonitorCheck:
    """A check name and the metrics it emits, for policy validation (no ``measure``: the
    monitor measures them all at once, see :mod:`govssl.monitor._measure`)."""

    def __init__(self, name: str, metrics: tuple[str, ...]):
        self.name, self.metrics = name, metrics


MONITOR_CHECKS: dict[str, MonitorCheck] = {c.name: c for c in (
    MonitorCheck("feature_drift", ("drift_p_value", "statistic", "psi", "jensen_shannon", "unseen_share")),
    MonitorCheck("prediction_drift", ("drift_p_value", "statistic", "psi", "mean_score_shift")),
    MonitorCheck("embedding_drift", ("drift_p_value", "mmd2")),
    MonitorCheck("ood", ("drift_p_value", "ood_share")),
    MonitorCheck("performance_estimate", ("estimated_accuracy", "estimated_accuracy_drop",
                                          "realised_accuracy_drop")),
    MonitorCheck("group_mix", ("drift_p_value", "total_variation", "share", "selection_rate")),
)}
