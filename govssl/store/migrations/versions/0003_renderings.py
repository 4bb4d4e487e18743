"""Renderings: documents re-rendered after the run, with the waivers and attestations they reflect.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "renderings",
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("run_id", sa.String, sa.ForeignKey("runs.run_id"), nullable=False, index=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("rendered_at", sa.String, nullable=False),
        sa.Column("folder", sa.Text, nullable=False),
        sa.Column("artifact_positions_json", sa.Text, nullable=False),
        sa.Column("waiver_ids_json", sa.Text, nullable=False),
        sa.Column("attestation_positions_json", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("renderings")
