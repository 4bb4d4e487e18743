"""Monitoring results: production batches measured against a run's reference profile, ledgered.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

INT64 = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "monitoring",
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("run_id", sa.String, sa.ForeignKey("runs.run_id"), nullable=False, index=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("monitor_id", sa.String, nullable=False),
        sa.Column("model_sha256", sa.String, nullable=False, index=True),
        sa.Column("created_at", sa.String, nullable=False, index=True),
        sa.Column("govssl_version", sa.String, nullable=False),
        sa.Column("batch_path", sa.Text, nullable=False),
        sa.Column("batch_sha256", sa.String, nullable=False),
        sa.Column("n_rows", INT64, nullable=False),
        sa.Column("labels", sa.Text, nullable=False),
        sa.Column("policy_name", sa.String, nullable=False),
        sa.Column("policy_version", sa.Integer, nullable=False),
        sa.Column("policy_path", sa.Text, nullable=False),
        sa.Column("policy_sha256", sa.String, nullable=False),
        sa.Column("profile_sha256", sa.String, nullable=False),
        sa.Column("verdict", sa.String, nullable=False),
        sa.Column("n_blocking", sa.Integer, nullable=False),
        sa.Column("results_json", sa.Text, nullable=False),
        sa.Column("outcomes_json", sa.Text, nullable=False),
        sa.Column("seconds", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("monitoring")
