"""AuditRun <-> table rows, exactly: what :meth:`AuditStore.save` writes, ``load_run`` rebuilds.

Values whose type matters (``0.5`` vs ``True`` vs ``"0.5"``) are JSON text. JSON has no NaN or
infinity, so a non-finite float is written as ``{"$float": "NaN"}`` (or ``"Infinity"``,
``"-Infinity"``); that keeps every stored text valid for the ledger's canonical JSON and brings
the float back on load (a free-form dict that is exactly ``{"$float": "NaN"}`` would come back
as the float too). JSON keeps floats bit-exact (``repr`` is the shortest round-trip form);
tuples inside free-form dicts (plan, details, history) come back as lists, numpy scalars and
arrays as Python numbers and lists.
"""

from __future__ import annotations

import json
import math
import typing
from dataclasses import asdict, fields
from typing import Any

from sqlalchemy import Float, Integer, Table

from govssl.evidence import CheckResult, Measurement
from govssl.policy.model import Decision, RuleOutcome
from govssl.records import Artifact, Attestation, AuditRun, DatasetSummary, TrainRecord, Waiver
from govssl.store._tables import RECORD_TABLES, RUN_TABLES

__all__ = [
    "dumps", "loads", "run_to_rows", "rows_to_run", "attestation_rows", "waiver_row",
    "row_to_waiver", "monitoring_row", "row_to_monitoring",
]

_FLOAT_TAG = "$float"
_NON_FINITE = {"NaN", "Infinity", "-Infinity"}


def _plain(obj: Any) -> Any:
    """numpy scalars and arrays become Python numbers and lists; anything else is not JSON."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _tag_non_finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {_FLOAT_TAG: json.dumps(obj)}
    if isinstance(obj, dict):
        return {key: _tag_non_finite(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_tag_non_finite(value) for value in obj]
    if not isinstance(obj, (str, int, type(None))) and hasattr(obj, "tolist"):
        return _tag_non_finite(obj.tolist())
    return obj


def dumps(obj: Any) -> str:
    """JSON text of plain data, with non-finite floats tagged (see the module docstring)."""
    options = dict(ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_plain)
    try:
        return json.dumps(obj, **options)
    except ValueError:  # a NaN or an infinity somewhere: the rare path walks the data
        return json.dumps(_tag_non_finite(obj), **options)


def _untag(obj: dict) -> Any:
    if len(obj) == 1 and obj.get(_FLOAT_TAG) in _NON_FINITE:
        return float(obj[_FLOAT_TAG])
    return obj


def loads(text: str) -> Any:
    """Inverse of :func:`dumps`."""
    return json.loads(text, object_hook=_untag)


def _typed_row(table: Table, values: dict[str, Any]) -> dict[str, Any]:
    """Every column of ``table``, each value of its column's Python type, as it will read back.

    The ledger hashes this dict at save time and the row as read at verify time; giving the
    values their column types here (``3`` into a REAL column reads back as ``3.0``) makes the
    two agree.
    """
    row = {}
    for column in table.columns:
        value = values[column.name]
        if value is None:
            pass
        elif isinstance(column.type, Float):
            value = float(value)
            if not math.isfinite(value):
                raise ValueError(f"{table.name}.{column.name} must be a finite number; got {value}")
        elif isinstance(column.type, Integer):
            value = int(value)
            if not -(2**63) <= value < 2**63:
                raise ValueError(f"{table.name}.{column.name} does not fit in 64 bits: {value}")
        else:
            value = str(value)
        row[column.name] = value
    return row


def _encode(where: str, obj: Any) -> str:
    try:
        return dumps(obj)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where} is not JSON data: {exc}") from None


#: prefix of an EU AI Act article in a rule outcome's ``rmf_json`` list (see ``_framework_ids``)
EU_AI_ACT_PREFIX = "eu-ai-act:"


def _framework_ids(outcome: RuleOutcome) -> list[str]:
    """The framework ids of a rule outcome as one stored list: its NIST AI RMF subcategories as
    they are, then its EU AI Act articles prefixed ``eu-ai-act:`` ("eu-ai-act:Art. 15"). An
    outcome without articles is stored exactly as before the articles existed, so no migration
    and no change to the rows (and ledger hashes) of stored runs."""
    return [*outcome.rmf, *(EU_AI_ACT_PREFIX + article for article in outcome.eu_ai_act)]


def _split_framework_ids(ids: list) -> dict[str, tuple[str, ...]]:
    """``_framework_ids`` read back: ``{"rmf": (...), "eu_ai_act": (...)}``."""
    rmf = tuple(i for i in ids if not (isinstance(i, str) and i.startswith(EU_AI_ACT_PREFIX)))
    eu = tuple(i[len(EU_AI_ACT_PREFIX):] for i in ids if isinstance(i, str) and i.startswith(EU_AI_ACT_PREFIX))
    return {"rmf": rmf, "eu_ai_act": eu}


def run_to_rows(run: AuditRun) -> dict[str, list[dict[str, Any]]]:
    """The rows of every record table for ``run``, keyed by table name, in writing order.

    Raises ValueError naming the record when a value cannot be stored.
    """
    rid = run.run_id
    checks, measurements = [], []
    for check_position, result in enumerate(run.results):
        checks.append(
            {
                "id": f"{rid}/c{check_position}",
                "run_id": rid,
                "position": check_position,
                "check_name": result.check,
                "status": result.status,
                "reason": result.reason,
                "seconds": result.seconds,
            }
        )
        for position, m in enumerate(result.measurements):
            where = f"measurement {position} of check '{result.check}' ({m.metric})"
            measurements.append(
                {
                    "id": f"{rid}/m{len(measurements)}",
                    "run_id": rid,
                    "check_position": check_position,
                    "position": position,
                    "check_name": m.check,
                    "metric": m.metric,
                    "subject": m.subject,
                    "value_json": _encode(f"{where}: value", m.value),
                    "ci_low_json": _encode(f"{where}: ci_low", m.ci_low),
                    "ci_high_json": _encode(f"{where}: ci_high", m.ci_high),
                    "n": m.n,
                    "details_json": _encode(f"{where}: details", m.details),
                }
            )
    outcomes = []
    for position, o in enumerate(run.decision.outcomes):
        where = f"rule outcome {position} ('{o.rule_id}')"
        outcomes.append(
            {
                "id": f"{rid}/o{position}",
                "run_id": rid,
                "position": position,
                "rule_id": o.rule_id,
                "check_name": o.check,
                "metric": o.metric,
                "severity": o.severity,
                "status": o.status,
                "observed_json": _encode(f"{where}: observed", o.observed),
                "subject": o.subject,
                "threshold": o.threshold,
                "message": o.message,
                "rmf_json": _encode(f"{where}: rmf", _framework_ids(o)),
                "waiver_json": _encode(f"{where}: waiver", o.waiver),
            }
        )
    artifacts = [
        {
            "id": f"{rid}/a{position}",
            "run_id": rid,
            "position": position,
            "kind": a.kind,
            "path": a.path,
            "sha256": a.sha256,
            "size": a.size,
        }
        for position, a in enumerate(run.artifacts)
    ]
    attestations = attestation_rows(rid, 0, run.attestations, added_at="")
    run_row = {
        "run_id": rid,
        "created_at": run.created_at,
        "govssl_version": run.govssl_version,
        "plan_name": run.plan_name,
        "plan_path": run.plan_path,
        "plan_sha256": run.plan_sha256,
        "plan_json": _encode("the plan", run.plan),
        "policy_name": run.policy_name,
        "policy_version": run.policy_version,
        "policy_path": run.policy_path,
        "policy_sha256": run.policy_sha256,
        "dataset_name": run.dataset.name,
        "dataset_json": _encode("the dataset summary", asdict(run.dataset)),
        "model_sha256": run.training.model_sha256,
        "training_json": _encode("the training record", asdict(run.training)),
        "verdict": run.decision.verdict,
        "n_measurements": len(measurements),
        "n_blocking": len(run.decision.blockers),
        "out_dir": run.out_dir,
        "seconds": run.seconds,
    }
    rows_of = ([run_row], checks, measurements, outcomes, artifacts, attestations)
    by_table = dict(zip(RUN_TABLES, rows_of))
    return {
        name: [_typed_row(RECORD_TABLES[name], row) for row in rows]
        for name, rows in by_table.items()
    }


def attestation_rows(
    run_id: str, first_position: int, attestations: list[Attestation], added_at: str
) -> list[dict[str, Any]]:
    """Rows of the attestations table; ``added_at`` is '' for those saved with the run."""
    rows = []
    for offset, a in enumerate(attestations):
        position = first_position + offset
        if not isinstance(a, Attestation):
            raise ValueError(f"attestation {position} is a {type(a).__name__}, not an Attestation")
        row = {
            "id": f"{run_id}/t{position}",
            "run_id": run_id,
            "position": position,
            "subcategory": a.subcategory,
            "attested_by": a.by,
            "date": a.date,
            "statement": a.statement,
            "added_at": added_at,
        }
        rows.append(_typed_row(RECORD_TABLES["attestations"], row))
    return rows


def artifact_rows(run_id: str, first_position: int, artifacts: list[Artifact]) -> list[dict[str, Any]]:
    """Rows of the artifacts table for files added to a run after it was saved."""
    rows = []
    for offset, a in enumerate(artifacts):
        position = first_position + offset
        if not isinstance(a, Artifact):
            raise ValueError(f"artifact {position} is a {type(a).__name__}, not an Artifact")
        row = {"id": f"{run_id}/a{position}", "run_id": run_id, "position": position, "kind": a.kind,
               "path": a.path, "sha256": a.sha256, "size": a.size}
        rows.append(_typed_row(RECORD_TABLES["artifacts"], row))
    return rows


def rendering_row(
    run_id: str, position: int, rendered_at: str, folder: str, artifact_positions: list[int],
    waiver_ids: list[str], attestation_positions: list[int],
) -> dict[str, Any]:
    """The renderings row of documents re-rendered after the run."""
    row = {
        "id": f"{run_id}/r{position}",
        "run_id": run_id,
        "position": position,
        "rendered_at": rendered_at,
        "folder": folder,
        "artifact_positions_json": _encode("rendering: artifact positions", list(artifact_positions)),
        "waiver_ids_json": _encode("rendering: waiver ids", list(waiver_ids)),
        "attestation_positions_json": _encode("rendering: attestation positions", list(attestation_positions)),
    }
    return _typed_row(RECORD_TABLES["renderings"], row)


def row_to_rendering(row: dict[str, Any]) -> dict[str, Any]:
    """A renderings row as plain data (the JSON columns decoded)."""
    return {
        "position": row["position"], "rendered_at": row["rendered_at"], "folder": row["folder"],
        "artifact_positions": loads(row["artifact_positions_json"]),
        "waiver_ids": loads(row["waiver_ids_json"]),
        "attestation_positions": loads(row["attestation_positions_json"]),
    }


def waiver_row(waiver: Waiver) -> dict[str, Any]:
    return _typed_row(RECORD_TABLES["waivers"], asdict(waiver))


def row_to_waiver(row: dict[str, Any]) -> Waiver:
    return Waiver(**{f.name: row[f.name] for f in fields(Waiver)})


def _from_fields(cls: type, data: dict) -> Any:
    """Rebuild a frozen dataclass from JSON data, turning lists back into declared tuples."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        if typing.get_origin(hints[f.name]) is tuple and isinstance(value, list):
            value = tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs)


def rows_to_run(
    run_row: dict,
    check_rows: list[dict],
    measurement_rows: list[dict],
    outcome_rows: list[dict],
    artifact_rows: list[dict],
    attestation_rows: list[dict] = (),
) -> AuditRun:
    """Rebuild the AuditRun; child rows must come in (check_)position order."""
    measurements_of: dict[int, list[Measurement]] = {}
    for m in measurement_rows:
        measurements_of.setdefault(m["check_position"], []).append(
            Measurement(
                check=m["check_name"],
                metric=m["metric"],
                value=loads(m["value_json"]),
                subject=m["subject"],
                ci_low=loads(m["ci_low_json"]),
                ci_high=loads(m["ci_high_json"]),
                n=m["n"],
                details=loads(m["details_json"]),
            )
        )
    results = [
        CheckResult(
            check=c["check_name"],
            status=c["status"],
            measurements=tuple(measurements_of.get(c["position"], ())),
            reason=c["reason"],
            seconds=c["seconds"],
        )
        for c in check_rows
    ]
    outcomes = tuple(
        RuleOutcome(
            rule_id=o["rule_id"],
            check=o["check_name"],
            metric=o["metric"],
            severity=o["severity"],
            status=o["status"],
            observed=loads(o["observed_json"]),
            subject=o["subject"],
            threshold=o["threshold"],
            message=o["message"],
            **_split_framework_ids(loads(o["rmf_json"])),
            waiver=loads(o["waiver_json"]),
        )
        for o in outcome_rows
    )
    artifacts = [
        Artifact(kind=a["kind"], path=a["path"], sha256=a["sha256"], size=a["size"])
        for a in artifact_rows
    ]
    r = run_row
    return AuditRun(
        run_id=r["run_id"],
        created_at=r["created_at"],
        govssl_version=r["govssl_version"],
        plan_name=r["plan_name"],
        plan_path=r["plan_path"],
        plan_sha256=r["plan_sha256"],
        plan=loads(r["plan_json"]),
        policy_name=r["policy_name"],
        policy_version=r["policy_version"],
        policy_path=r["policy_path"],
        policy_sha256=r["policy_sha256"],
        dataset=_from_fields(DatasetSummary, loads(r["dataset_json"])),
        training=_from_fields(TrainRecord, loads(r["training_json"])),
        results=results,
        decision=Decision(outcomes),
        out_dir=r["out_dir"],
        artifacts=artifacts,
        attestations=[
            Attestation(
                subcategory=a["subcategory"], by=a["attested_by"], date=a["date"],
                statement=a["statement"],
            )
            for a in attestation_rows
        ],
        seconds=r["seconds"],
    )


def monitoring_row(result, position: int) -> dict[str, Any]:
    """The monitoring row of a :class:`govssl.monitor.MonitoringResult` at ``position`` among its
    run's monitoring results."""
    row = {
        "id": f"{result.run_id}/w{position}",
        "run_id": result.run_id,
        "position": position,
        "monitor_id": result.monitor_id,
        "model_sha256": result.model_sha256,
        "created_at": result.created_at,
        "govssl_version": result.govssl_version,
        "batch_path": result.batch_path,
        "batch_sha256": result.batch_sha256,
        "n_rows": result.n_rows,
        "labels": result.labels,
        "policy_name": result.policy_name,
        "policy_version": result.policy_version,
        "policy_path": result.policy_path,
        "policy_sha256": result.policy_sha256,
        "profile_sha256": result.profile_sha256,
        "verdict": result.decision.verdict,
        "n_blocking": len(result.decision.blockers),
        "results_json": _encode("monitoring: results", [r.to_dict() for r in result.results]),
        "outcomes_json": _encode("monitoring: rule outcomes", [o.to_dict() for o in result.decision.outcomes]),
        "seconds": result.seconds,
    }
    return _typed_row(RECORD_TABLES["monitoring"], row)


def row_to_monitoring(row: dict[str, Any]):
    """A monitoring row back as a MonitoringResult (the JSON columns decoded)."""
    from govssl.monitor._run import MonitoringResult

    return MonitoringResult(
        monitor_id=row["monitor_id"], run_id=row["run_id"], model_sha256=row["model_sha256"],
        created_at=row["created_at"], govssl_version=row["govssl_version"], batch_path=row["batch_path"],
        batch_sha256=row["batch_sha256"], n_rows=row["n_rows"], labels=row["labels"],
        policy_name=row["policy_name"], policy_version=row["policy_version"], policy_path=row["policy_path"],
        policy_sha256=row["policy_sha256"], profile_sha256=row["profile_sha256"],
        results=[CheckResult.from_dict(r) for r in loads(row["results_json"])],
        decision=Decision(tuple(RuleOutcome.from_dict(o) for o in loads(row["outcomes_json"]))),
        seconds=row["seconds"], position=row["position"],
    )
