"""Attestations (with a run or made after it) and waivers, both ledgered records.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "attestations",
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("run_id", sa.String, sa.ForeignKey("runs.run_id"), nullable=False, index=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("subcategory", sa.String, nullable=False),
        sa.Column("attested_by", sa.Text, nullable=False),
        sa.Column("date", sa.String, nullable=False),
        sa.Column("statement", sa.Text, nullable=False),
        sa.Column("added_at", sa.String, nullable=False),
    )
    op.create_table(
        "waivers",
        sa.Column("waiver_id", sa.String, primary_key=True),
        sa.Column("rule_id", sa.String, nullable=False, index=True),
        sa.Column("approver", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("expires", sa.String, nullable=False),
        sa.Column("created_at", sa.String, nullable=False),
        sa.Column("run_id", sa.String, nullable=True, index=True),
        sa.Column("model_sha256", sa.String, nullable=True, index=True),
    )
    # find_runs filters on these
    op.create_index("ix_runs_model_sha256", "runs", ["model_sha256"])
    op.create_index("ix_runs_plan_name", "runs", ["plan_name"])


def downgrade() -> None:
    op.drop_index("ix_runs_plan_name", "runs")
    op.drop_index("ix_runs_model_sha256", "runs")
    op.drop_table("waivers")
    op.drop_table("attestations")
