"""The eval service: its run list and its catalogs of model versions and dataset versions.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "eval_run_view",
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("eval_id", sa.String(64), primary_key=True),
        sa.Column("model_version_id", sa.String(255), nullable=False),
        sa.Column("suite_id", sa.String(64), nullable=False),
        sa.Column("job_id", sa.String(128), nullable=False),
        sa.Column("state", sa.Integer, nullable=False),
        sa.Column("shards_total", sa.Integer, nullable=False),
        sa.Column("shards_done", sa.Integer, nullable=False),
        sa.Column("passed", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("report_uri", sa.Text, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_eval_run_view_created", "eval_run_view", ["tenant_id", "created_at_ms", "eval_id"])
    op.create_index("ix_eval_run_view_model", "eval_run_view", ["tenant_id", "model_version_id", "created_at_ms"])
    op.create_table(
        "eval_model_catalog",
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("model_version_id", sa.String(255), primary_key=True),
        sa.Column("job_id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("artifact_uri", sa.Text, nullable=False),
        sa.Column("artifact_sha256", sa.String(64), nullable=False),
        sa.Column("base_model_id", sa.String(255), nullable=False),
        sa.Column("base_model_sha256", sa.String(64), nullable=False),
        sa.Column("dataset_version_id", sa.String(128), nullable=False),
        sa.Column("dataset_uri", sa.Text, nullable=False),
        sa.Column("evaluation_suite_id", sa.String(64), nullable=False),
        sa.Column("gates_json", sa.Text, nullable=False),
        sa.Column("dataset_manifest_sha256", sa.String(64), nullable=False),
        sa.Column("registered_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "eval_dataset_catalog",
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("dataset_version_id", sa.String(128), primary_key=True),
        sa.Column("manifest_uri", sa.Text, nullable=False),
        sa.Column("manifest_sha256", sa.String(64), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("eval_dataset_catalog")
    op.drop_table("eval_model_catalog")
    op.drop_index("ix_eval_run_view_model", "eval_run_view")
    op.drop_index("ix_eval_run_view_created", "eval_run_view")
    op.drop_table("eval_run_view")
