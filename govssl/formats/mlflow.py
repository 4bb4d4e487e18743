"""A stored audit run logged to an MLflow tracking store (``govssl audit PLAN --mlflow [URI]``).

One MLflow run per audit, in the experiment named after the plan, named after the govssl run id:

- params: the plan, flattened to dotted keys (``training.pretrain.epochs``; characters MLflow
  refuses in a key become "_"); values are JSON except plain strings, cut to MLflow's limit of
  6,000 characters (the whole plan is logged as the artifact ``govssl/plan.json`` too);
- metrics: every model-wide measurement (subject "") with a number or true/false as value, as
  ``check.metric`` (true/false as 1/0), and its confidence bounds as ``check.metric.ci_low`` /
  ``.ci_high``; a model-wide measurement with a text value is the tag ``govssl.value.check.metric``;
- tags: ``govssl.run_id``, ``govssl.decision`` (pass / blocked), ``govssl.model_sha256``, the
  policy's and the plan's name and sha256, the blocking rules, the data files' sha256;
- artifacts, under ``govssl/``: the run's documents, charts, evidence.json and its signed
  statements (each checked against the sha256 the store records before it is sent).

The tracking URI is the one given, else ``MLFLOW_TRACKING_URI``, else MLflow's own default, a
SQLite store ``mlflow.db`` in the working folder (artifacts then go to ``mlruns/`` beside it).
MLflow is an optional dependency: ``pip install 'govssl[mlflow]'``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

from govssl.errors import ConfigError, StoreError
from govssl.formats._common import check_files, model_artifact
from govssl.records import AuditRun

__all__ = ["DEFAULT_URI", "MAX_PARAM_LENGTH", "Tracker", "metrics", "params", "resolve_uri"]

DEFAULT_URI = "sqlite:///mlflow.db"  # MLflow's own default tracking store
MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param's value
MAX_BATCH = 100  # params / metrics / tags per log_batch call, MLflow's limit on params
SENT_KINDS_SKIPPED = ("model", "predictions", "data")  # large files, named by sha256 in the tags
NOT_INSTALLED = ("--mlflow: MLflow is not installed in this environment; install govssl with its "
                 "mlflow extra: pip install 'govssl[mlflow]'")


_NOT_IN_KEYS = re.compile(r"[^\w.\- ]")  # MLflow's names: letters, digits, _ - . space (and / :)
MAX_KEY_LENGTH = 250


def _key(name: str) -> str:
    """``name`` as an MLflow param, metric or tag key: other characters (a slash too, which MLflow
    reads as a path) become "_", and the key is cut at MLflow's 250 characters."""
    return _NOT_IN_KEYS.sub("_", name)[:MAX_KEY_LENGTH]


def resolve_uri(uri: str | None) -> str:
    """The tracking URI: ``uri`` unless empty, else ``MLFLOW_TRACKING_URI``, else :data:`DEFAULT_URI`."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def _flatten(value, prefix: str = "") -> dict[str, str]:
    if isinstance(value, dict) and value:
        out: dict[str, str] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return {_key(prefix): text[:MAX_PARAM_LENGTH]}


def params(run: AuditRun) -> dict[str, str]:
    """The plan as MLflow params (see the module docstring)."""
    return _flatten(run.plan or {})


def _number(value) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        return float(value)
    return None


def metrics(run: AuditRun) -> tuple[dict[str, float], dict[str, str]]:
    """The model-wide measurements: ``({check.metric: number, ...ci bounds}, {tag: text value})``.
    A non-finite number stays a metric (MLflow stores NaN and infinities as such)."""
    numbers: dict[str, float] = {}
    texts: dict[str, str] = {}
    for m in run.measurements:
        if m.subject != "":
            continue
        key = _key(f"{m.check}.{m.metric}")
        value = _number(m.value)
        if value is None:
            texts.setdefault(f"govssl.value.{key}", str(m.value))
            continue
        numbers.setdefault(key, value)
        for bound in ("ci_low", "ci_high"):
            if getattr(m, bound) is not None:
                numbers.setdefault(f"{key}.{bound}", float(getattr(m, bound)))
    return numbers, texts


def _tags(run: AuditRun) -> dict[str, str]:
    model = model_artifact(run)
    tags = {
        "mlflow.runName": run.run_id,
        "govssl.run_id": run.run_id,
        "govssl.decision": run.decision.verdict,
        "govssl.model_sha256": model.sha256 if model is not None else "",
        "govssl.policy": f"{run.policy_name} v{run.policy_version}",
        "govssl.policy_sha256": run.policy_sha256,
        "govssl.plan": run.plan_name,
        "govssl.plan_sha256": run.plan_sha256,
        "govssl.blocking_rules": ", ".join(o.rule_id for o in run.decision.blockers),
        "govssl.version": run.govssl_version,
    }
    for f in run.dataset.files:
        tags[_key(f"govssl.data.{Path(str(f['path'])).name}.sha256")] = str(f["sha256"])
    return {key: value for key, value in tags.items() if value != ""}


@contextmanager
def _quiet():
    """MLflow and its database migrations talk on stderr at INFO level; govssl prints its own lines."""
    loggers = [logging.getLogger(name) for name in ("mlflow", "alembic")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


class Tracker:
    """An MLflow tracking store to log audit runs to. Creating one imports MLflow (ConfigError
    saying to install ``govssl[mlflow]`` when it is missing) and opens the store (StoreError
    naming the URI when it cannot be reached), so that a bad ``--mlflow`` is refused before an
    audit trains anything."""

    def __init__(self, uri: str | None = None):
        self.uri = resolve_uri(uri)
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise ConfigError(NOT_INSTALLED) from None
        try:
            with _quiet():
                self.client = MlflowClient(tracking_uri=self.uri)
                self.client.search_experiments(max_results=1)
        except Exception as exc:  # noqa: BLE001  MLflow raises many kinds; all mean "cannot use it"
            raise StoreError(f"--mlflow: cannot open the MLflow tracking store {self.uri}: "
                             f"{type(exc).__name__}: {exc}") from None

    def _artifact_location(self) -> str | None:
        """For a SQLite store, artifacts go to ``mlruns/`` beside the database file (MLflow's
        default is the working folder's, wherever the database is)."""
        if not self.uri.startswith("sqlite:///"):
            return None
        db = Path(self.uri[len("sqlite:///"):])
        return (db.resolve().parent / "mlruns").as_uri()

    def _experiment(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        return self.client.create_experiment(name, artifact_location=self._artifact_location())

    def log(self, run: AuditRun) -> str:
        """Log one stored run (see the module docstring); returns the MLflow run id. On any
        failure the MLflow run is deleted again and StoreError names the URI."""
        from mlflow.entities import Metric, Param

        check_files(run)  # the artifacts sent are the ones the store records
        numbers, texts = metrics(run)
        stamp = int(datetime_ms(run.created_at))
        mlflow_run = None
        try:
            with _quiet():
                experiment = self._experiment(run.plan_name)
                mlflow_run = self.client.create_run(experiment, start_time=stamp, tags={**_tags(run), **texts},
                                                    run_name=run.run_id)
                run_id = mlflow_run.info.run_id
                items = [Param(k, v) for k, v in params(run).items()]
                for i in range(0, len(items), MAX_BATCH):
                    self.client.log_batch(run_id, params=items[i:i + MAX_BATCH])
                values = [Metric(k, v, stamp, 0) for k, v in numbers.items()]
                for i in range(0, len(values), MAX_BATCH):
                    self.client.log_batch(run_id, metrics=values[i:i + MAX_BATCH])
                self._log_artifacts(run_id, run)
                self.client.set_terminated(run_id, "FINISHED")
        except BaseException as exc:
            if mlflow_run is not None:
                try:
                    with _quiet():
                        self.client.delete_run(mlflow_run.info.run_id)
                except Exception:  # noqa: BLE001, S110  the first error is the one to report
                    pass
            if not isinstance(exc, Exception):
                raise
            raise StoreError(f"--mlflow: cannot log run {run.run_id} to the MLflow tracking store "
                             f"{self.uri}: {type(exc).__name__}: {exc}; the MLflow run it had begun was deleted") from None
        return run_id

    def _log_artifacts(self, run_id: str, run: AuditRun) -> None:
        out_dir = Path(run.out_dir)
        for artifact in run.artifacts:
            path = Path(artifact.path)
            if artifact.kind in SENT_KINDS_SKIPPED or not path.is_file():
                continue
            inside = path.parent.relative_to(out_dir).as_posix() if path.is_relative_to(out_dir) else ""
            folder = "govssl" if inside in ("", ".") else f"govssl/{inside}"
            self.client.log_artifact(run_id, str(path), artifact_path=folder)
        with tempfile.TemporaryDirectory() as tmp:
            plan = Path(tmp) / "plan.json"
            plan.write_text(json.dumps(run.plan, indent=2, default=str) + "\n", encoding="utf-8")
            self.client.log_artifact(run_id, str(plan), artifact_path="govssl")


def datetime_ms(iso: str) -> float:
    """Milliseconds since the epoch of an ISO 8601 time (naive: UTC)."""
    from datetime import datetime, timezone

    moment = datetime.fromisoformat(iso)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    value = moment.timestamp() * 1000
    return value if math.isfinite(value) else 0.0
