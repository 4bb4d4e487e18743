"""Monitoring after release (DESIGN.md, "govssl monitor"): the reference profile an audit stores
with its run, and the drift, out-of-distribution, estimated-performance and group-mix measurements
of a production batch against it, decided by a monitoring policy pack and stored in the same
hash chain as the run.

Light to import: the heavy parts load when used (:func:`run_monitor`, :func:`build_profile`).
"""

from __future__ import annotations

__all__ = ["run_monitor", "MonitoringResult", "build_profile", "PROFILE_KIND"]

PROFILE_KIND = "reference_profile"  # the artifact kind of a run's reference profile


def __getattr__(name: str):
    if name in ("run_monitor", "MonitoringResult"):
        from govssl.monitor import _run

        return getattr(_run, name)
    if name == "build_profile":
        from govssl.monitor._profile import build_profile

        return build_profile
    raise AttributeError(name)
