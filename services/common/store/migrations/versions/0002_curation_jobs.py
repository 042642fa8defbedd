"""Curation job read model.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
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
        "curation_job_view",
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("job_id", sa.String(128), primary_key=True),
        sa.Column("dataset_id", sa.String(128), nullable=False),
        sa.Column("recipe", sa.String(64), nullable=False),
        sa.Column("state", sa.Integer, nullable=False),
        sa.Column("dataset_version_id", sa.String(128), nullable=False),
        sa.Column("error_code", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_curation_job_view_dataset", "curation_job_view", ["tenant_id", "dataset_id"])


def downgrade() -> None:
    op.drop_table("curation_job_view")
