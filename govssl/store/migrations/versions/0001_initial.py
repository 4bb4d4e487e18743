"""The first schema: runs and their records, the ledger and the chain head (govssl 0.1).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

INT64 = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def _run_fk() -> sa.Column:
    return sa.Column("run_id", sa.String, sa.ForeignKey("runs.run_id"), nullable=False, index=True)


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String, primary_key=True),
        sa.Column("created_at", sa.String, nullable=False, index=True),
        sa.Column("govssl_version", sa.String, nullable=False),
        sa.Column("plan_name", sa.String, nullable=False),
        sa.Column("plan_path", sa.Text, nullable=False),
        sa.Column("plan_sha256", sa.String, nullable=False),
        sa.Column("plan_json", sa.Text, nullable=False),
        sa.Column("policy_name", sa.String, nullable=False),
        sa.Column("policy_version", sa.Integer, nullable=False),
        sa.Column("policy_path", sa.Text, nullable=False),
        sa.Column("policy_sha256", sa.String, nullable=False),
        sa.Column("dataset_name", sa.String, nullable=False),
        sa.Column("dataset_json", sa.Text, nullable=False),
        sa.Column("model_sha256", sa.String, nullable=False),
        sa.Column("training_json", sa.Text, nullable=False),
        sa.Column("verdict", sa.String, nullable=False),
        sa.Column("n_measurements", sa.Integer, nullable=False),
        sa.Column("n_blocking", sa.Integer, nullable=False),
        sa.Column("out_dir", sa.Text, nullable=False),
        sa.Column("seconds", sa.Float, nullable=False),
    )
    op.create_table(
        "check_results",
        sa.Column("id", sa.String, primary_key=True),
        _run_fk(),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("check_name", sa.String, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("seconds", sa.Float, nullable=False),
    )
    op.create_table(
        "measurements",
        sa.Column("id", sa.String, primary_key=True),
        _run_fk(),
        sa.Column("check_position", sa.Integer, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("check_name", sa.String, nullable=False),
        sa.Column("metric", sa.String, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("value_json", sa.Text, nullable=False),
        sa.Column("ci_low_json", sa.Text, nullable=False),
        sa.Column("ci_high_json", sa.Text, nullable=False),
        sa.Column("n", INT64, nullable=True),
        sa.Column("details_json", sa.Text, nullable=False),
    )
    op.create_table(
        "rule_outcomes",
        sa.Column("id", sa.String, primary_key=True),
        _run_fk(),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("rule_id", sa.String, nullable=False),
        sa.Column("check_name", sa.String, nullable=False),
        sa.Column("metric", sa.String, nullable=False),
        sa.Column("severity", sa.String, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("observed_json", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("threshold", sa.Text, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("rmf_json", sa.Text, nullable=False),
        sa.Column("waiver_json", sa.Text, nullable=False),
    )
    op.create_table(
        "artifacts",
        sa.Column("id", sa.String, primary_key=True),
        _run_fk(),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("kind", sa.String, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("sha256", sa.String, nullable=False),
        sa.Column("size", INT64, nullable=False),
    )
    op.create_table(
        "ledger",
        sa.Column("seq", INT64, primary_key=True, autoincrement=False),
        sa.Column("prev_hash", sa.String, nullable=False),
        sa.Column("entry_hash", sa.String, nullable=False),
        sa.Column("record_table", sa.String, nullable=False),
        sa.Column("record_id", sa.String, nullable=False),
        sa.Column("created_at", sa.String, nullable=False),
        sa.UniqueConstraint("record_table", "record_id"),
    )
    op.create_table(
        "chain_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", INT64, nullable=False),
        sa.Column("entry_hash", sa.String, nullable=False),
    )


def downgrade() -> None:
    for table in ("chain_head", "ledger", "artifacts", "rule_outcomes", "measurements",
                  "check_results", "runs"):
        op.drop_table(table)
