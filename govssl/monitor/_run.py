"""run_monitor: one production batch from file to stored, decided monitoring result.

No printing, no exit: the CLI (`govssl monitor`) and Python callers share it.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from govssl import __version__
from govssl.errors import ConfigError, DataError
from govssl.evidence import CheckResult
from govssl.policy.model import Decision

__all__ = ["run_monitor", "MonitoringResult", "load_model", "BATCH_SUFFIXES"]

BATCH_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zip", ".csv.xz", ".parquet", ".pq")


@dataclass
class MonitoringResult:
    """One monitored batch: what was read (by hash), the measurements, the decision."""

    monitor_id: str
    run_id: str
    model_sha256: str
    created_at: str  # ISO 8601, UTC
    govssl_version: str
    batch_path: str
    batch_sha256: str
    n_rows: int
    labels: str  # the labels column, '' without labels
    policy_name: str
    policy_version: int
    policy_path: str
    policy_sha256: str
    profile_sha256: str
    results: list[CheckResult]
    decision: Decision
    seconds: float = 0.0
    position: int = 0  # its place among the run's monitoring results (set by the store)
    extra: dict = field(default_factory=dict)

    @property
    def measurements(self):
        return [m for r in self.results for m in r.measurements]

    def to_dict(self) -> dict:
        return {
            "monitor_id": self.monitor_id,
            "run_id": self.run_id,
            "model_sha256": self.model_sha256,
            "created_at": self.created_at,
            "govssl_version": self.govssl_version,
            "batch": {"path": self.batch_path, "sha256": self.batch_sha256, "rows": self.n_rows,
                      "labels": self.labels or None},
            "policy": {"name": self.policy_name, "version": self.policy_version, "path": self.policy_path,
                       "sha256": self.policy_sha256},
            "profile_sha256": self.profile_sha256,
            "checks": [r.to_dict() for r in self.results],
            "decision": self.decision.to_dict(),
            "seconds": round(self.seconds, 3),
        }


def load_model(path: str, expected_sha256: str):
    """The run's classifier from its safetensors file, after checking the file's sha256."""
    from safetensors.torch import load_file

    from govssl.monitor._profile import check_recorded
    from govssl.train.models import Architecture, build_classifier

    check_recorded(path, expected_sha256, "model file")
    from safetensors import safe_open
    import json

    with safe_open(path, framework="pt") as fh:
        arch = Architecture(json.loads(fh.metadata()["govssl_architecture"]))
    model = build_classifier(arch)
    model.load_state_dict(load_file(path))
    model.eval()
    return model


def _read_batch(path: Path):
    from govssl.data import read_table

    name = path.name.lower()
    if not name.endswith(BATCH_SUFFIXES):
        raise DataError(f"{path}: a batch is a CSV or Parquet file of the audited table's columns "
                        f"(suffixes {', '.join(BATCH_SUFFIXES)}); image or array files cannot be monitored")
    return read_table(path)


def run_monitor(run_id: str, data: str | Path, labels: str | None = None, policy=None, *,
                db_url: str | None = None, store=None, save: bool = True) -> MonitoringResult:
    """Measure ``data`` against the stored run's reference profile, decide with the monitoring
    pack (``policy``: a Policy, a path, or None for the built-in ``monitoring`` pack) and store the
    result in the run's chain. Raises a GovsslError for bad input; nothing is stored then."""
    from govssl.monitor import PROFILE_KIND
    from govssl.monitor._measure import check_batch, measure
    from govssl.monitor._profile import load_profile
    from govssl.policy import Policy, builtin_policy_path, decide, load_policy
    from govssl.records import sha256_file
    from govssl.store import AuditStore

    started = time.perf_counter()
    if policy is None:
        policy = load_policy(builtin_policy_path("monitoring"))
    elif not isinstance(policy, Policy):
        policy = load_policy(policy)
    store = store or AuditStore(db_url, create=False)
    (run,), _ = store.read_runs([run_id])
    if not run.training.trained:
        raise ConfigError(f"run {run.run_id} ended at preflight and trained no model; there is nothing to monitor")
    if run.dataset.task != "tabular-classification":
        raise ConfigError(f"run {run.run_id} audited an image model ({run.dataset.task}); govssl monitor "
                          f"measures tables (CSV or Parquet batches) only")
    profiles = [a for a in run.artifacts if a.kind == PROFILE_KIND]
    models = [a for a in run.artifacts if a.kind == "model"]
    if not profiles or not models:
        raise ConfigError(f"run {run.run_id} has no reference profile (it was audited before govssl stored "
                          f"one); audit the model again to monitor it")
    path = Path(data)
    frame = _read_batch(path)
    profile = load_profile(profiles[-1].path, profiles[-1].sha256)
    check_batch(path, frame, profile, labels)
    model = load_model(models[0].path, run.training.model_sha256)
    batch_sha = sha256_file(path)
    seed = int(batch_sha[:8], 16)  # the same batch is measured the same way (samples, permutations)
    check_params = (run.plan.get("checks") or {}) if isinstance(run.plan, dict) else {}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        results = measure(profile, model, frame, labels, seed, check_params)
    decision = decide(policy, results)
    now = datetime.now(timezone.utc)
    result = MonitoringResult(
        monitor_id=now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3),
        run_id=run.run_id, model_sha256=run.training.model_sha256,
        created_at=now.isoformat(timespec="seconds"), govssl_version=__version__,
        batch_path=str(path.resolve()), batch_sha256=batch_sha, n_rows=len(frame), labels=labels or "",
        policy_name=policy.name, policy_version=policy.version, policy_path=policy.path,
        policy_sha256=policy.sha256, profile_sha256=profile.sha256, results=results, decision=decision,
    )
    result.seconds = time.perf_counter() - started
    if save:
        result.position = store.add_monitoring(result)
    return result
