"""The tables of the audit store, declared with SQLModel (DESIGN.md, "The audit store").

Record tables hold what a run is made of, one row per record; every record row has a text
primary key so the ledger can point at it by ``(record_table, record_id)``. Values whose type
must survive exactly (measurement values, CI bounds, observed values) and nested data
(plan, dataset, training, details) are JSON text columns, named ``*_json``.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Integer, Table, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

__all__ = [
    "RunRow",
    "CheckResultRow",
    "MeasurementRow",
    "RuleOutcomeRow",
    "ArtifactRow",
    "AttestationRow",
    "WaiverRow",
    "RenderingRow",
    "MonitoringRow",
    "LedgerRow",
    "ChainHeadRow",
    "RECORD_TABLES",
    "ALL_TABLES",
    "primary_key_of",
]


# 64-bit integers (file sizes past 2 GiB, long ledgers); on SQLite every INTEGER is 64-bit
# and only "INTEGER PRIMARY KEY" is the fast rowid key.
_INT64 = BigInteger().with_variant(Integer, "sqlite")


def _text(**kwargs) -> object:
    return Field(sa_type=Text, **kwargs)


class RunRow(SQLModel, table=True):
    """One audit run; the run-level data that has no table of its own is JSON text."""

    __tablename__ = "runs"

    run_id: str = Field(primary_key=True)
    created_at: str = Field(index=True)
    govssl_version: str
    plan_name: str = Field(index=True)
    plan_path: str = _text()
    plan_sha256: str
    plan_json: str = _text()
    policy_name: str
    policy_version: int
    policy_path: str = _text()
    policy_sha256: str
    dataset_name: str
    dataset_json: str = _text()
    model_sha256: str = Field(index=True)
    training_json: str = _text()
    verdict: str
    n_measurements: int
    n_blocking: int
    out_dir: str = _text()
    seconds: float


class CheckResultRow(SQLModel, table=True):
    """One CheckResult without its measurements; skipped and errored checks live only here."""

    __tablename__ = "check_results"

    id: str = Field(primary_key=True)  # "<run_id>/c<position>"
    run_id: str = Field(foreign_key="runs.run_id", index=True)
    position: int
    check_name: str
    status: str
    reason: str = _text()
    seconds: float


class MeasurementRow(SQLModel, table=True):
    """One Measurement; ``check_position`` is the position of its CheckResult in the run."""

    __tablename__ = "measurements"

    id: str = Field(primary_key=True)  # "<run_id>/m<position over the whole run>"
    run_id: str = Field(foreign_key="runs.run_id", index=True)
    check_position: int
    position: int
    check_name: str
    metric: str
    subject: str = _text()
    value_json: str = _text()
    ci_low_json: str = _text()
    ci_high_json: str = _text()
    n: int | None = Field(default=None, sa_type=_INT64)
    details_json: str = _text()


class RuleOutcomeRow(SQLModel, table=True):
    """One RuleOutcome of the run's Decision, in decision order."""

    __tablename__ = "rule_outcomes"

    id: str = Field(primary_key=True)  # "<run_id>/o<position>"
    run_id: str = Field(foreign_key="runs.run_id", index=True)
    position: int
    rule_id: str
    check_name: str
    metric: str
    severity: str
    status: str
    observed_json: str = _text()
    subject: str = _text()
    threshold: str = _text()
    message: str = _text()
    rmf_json: str = _text()
    waiver_json: str = _text()


class ArtifactRow(SQLModel, table=True):
    """A file of the run, stored by path with its sha256 and size (the file itself stays put)."""

    __tablename__ = "artifacts"

    id: str = Field(primary_key=True)  # "<run_id>/a<position>"
    run_id: str = Field(foreign_key="runs.run_id", index=True)
    position: int
    kind: str
    path: str = _text()
    sha256: str
    size: int = Field(sa_type=_INT64)


class AttestationRow(SQLModel, table=True):
    """A person's statement for an RMF subcategory; ``added_at`` is '' when saved with the run,
    the time it was added otherwise (attestations made after the run)."""

    __tablename__ = "attestations"

    id: str = Field(primary_key=True)  # "<run_id>/t<position>"
    run_id: str = Field(foreign_key="runs.run_id", index=True)
    position: int
    subcategory: str
    attested_by: str = _text()
    date: str
    statement: str = _text()
    added_at: str


class WaiverRow(SQLModel, table=True):
    """An approved exception to a rule, for one run or for every audit of one model."""

    __tablename__ = "waivers"

    waiver_id: str = Field(primary_key=True)
    rule_id: str = Field(index=True)
    approver: str = _text()
    reason: str = _text()
    expires: str
    created_at: str
    run_id: str | None = Field(default=None, index=True)
    model_sha256: str | None = Field(default=None, index=True)


class RenderingRow(SQLModel, table=True):
    """Documents re-rendered after the run (`govssl report`): which artifacts of the run they
    are (``artifact_positions_json``), the folder they went to, and the waivers and
    attestations in force that they reflect (waiver ids, attestation positions)."""

    __tablename__ = "renderings"

    id: str = Field(primary_key=True)  # "<run_id>/r<position>"
    run_id: str = Field(foreign_key="runs.run_id", index=True)
    position: int
    rendered_at: str
    folder: str = _text()
    artifact_positions_json: str = _text()
    waiver_ids_json: str = _text()
    attestation_positions_json: str = _text()


class MonitoringRow(SQLModel, table=True):
    """One production batch measured by `govssl monitor` against the run's reference profile:
    the batch (path, sha256, rows), the monitoring pack it was decided with, the check results
    with their measurements (``results_json``, as in evidence.json) and the rule outcomes
    (``outcomes_json``); ``verdict`` is "pass" or "blocked"."""

    __tablename__ = "monitoring"

    id: str = Field(primary_key=True)  # "<run_id>/w<position>"
    run_id: str = Field(foreign_key="runs.run_id", index=True)
    position: int
    monitor_id: str
    model_sha256: str = Field(index=True)
    created_at: str = Field(index=True)
    govssl_version: str
    batch_path: str = _text()
    batch_sha256: str
    n_rows: int = Field(sa_type=_INT64)
    labels: str = _text()
    policy_name: str
    policy_version: int
    policy_path: str = _text()
    policy_sha256: str
    profile_sha256: str
    verdict: str
    n_blocking: int
    results_json: str = _text()
    outcomes_json: str = _text()
    seconds: float


class LedgerRow(SQLModel, table=True):
    """The hash chain: one entry per record, ``entry_hash = sha256(prev_hash || record)``."""

    __tablename__ = "ledger"
    __table_args__ = (UniqueConstraint("record_table", "record_id"),)

    seq: int = Field(primary_key=True, sa_type=_INT64, sa_column_kwargs={"autoincrement": False})
    prev_hash: str
    entry_hash: str
    record_table: str
    record_id: str
    created_at: str


class ChainHeadRow(SQLModel, table=True):
    """One row (id 1): the last entry of the chain. Writers lock it to append one at a time."""

    __tablename__ = "chain_head"

    id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    seq: int = Field(sa_type=_INT64)
    entry_hash: str


def _table(model: type[SQLModel]) -> Table:
    return model.__table__  # type: ignore[attr-defined]


#: record tables in the order a run is written (and its ledger entries appended)
RECORD_TABLES: dict[str, Table] = {
    _table(m).name: _table(m)
    for m in (
        RunRow, CheckResultRow, MeasurementRow, RuleOutcomeRow, ArtifactRow, AttestationRow,
        WaiverRow, RenderingRow, MonitoringRow,
    )
}
#: the record tables a run is made of (``save`` writes these, in this order)
RUN_TABLES: tuple[str, ...] = (
    "runs", "check_results", "measurements", "rule_outcomes", "artifacts", "attestations"
)
ALL_TABLES: list[Table] = [*RECORD_TABLES.values(), _table(LedgerRow), _table(ChainHeadRow)]
LEDGER: Table = _table(LedgerRow)
CHAIN_HEAD: Table = _table(ChainHeadRow)


def primary_key_of(table: Table) -> Column:
    """The single text primary key a ledger entry's ``record_id`` refers to."""
    (column,) = table.primary_key.columns
    return column
