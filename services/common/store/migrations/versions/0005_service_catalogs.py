"""Each service's own projection of another's events: the orchestrator's dataset-version catalog
and curation's dataset catalog (services share contracts, not state).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dataset_version_catalog",
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("dataset_version_id", sa.String(128), primary_key=True),
        sa.Column("dataset_id", sa.String(128), nullable=False),
        sa.Column("curation_job_id", sa.String(128), nullable=False),
        sa.Column("manifest_uri", sa.Text, nullable=False),
        sa.Column("manifest_sha256", sa.String(64), nullable=False),
        sa.Column("record_count", sa.BigInteger, nullable=False),
        sa.Column("train_count", sa.BigInteger, nullable=False),
        sa.Column("holdout_count", sa.BigInteger, nullable=False),
        sa.Column("recipe", sa.String(64), nullable=False),
        sa.Column("classification", sa.Integer, nullable=False),
        sa.Column("labels_json", sa.Text, nullable=False),
        sa.Column("dataset_checksum_sha256", sa.String(64), nullable=False),
        sa.Column("dataset_storage_uri", sa.Text, nullable=False),
        sa.Column("curation_config_sha256", sa.String(64), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "curation_dataset_catalog",
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("dataset_id", sa.String(128), primary_key=True),
        sa.Column("storage_uri", sa.Text, nullable=False),
        sa.Column("classification", sa.Integer, nullable=False),
        sa.Column("checksum_sha256", sa.String(64), nullable=False),
        sa.Column("labels_json", sa.Text, nullable=False),
        sa.Column("registered_at_ms", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("curation_dataset_catalog")
    op.drop_table("dataset_version_catalog")
