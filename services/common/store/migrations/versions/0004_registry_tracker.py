"""Model registry and experiment tracker read models; stored events by type (lineage).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_version_view",
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("model_version_id", sa.String(128), primary_key=True),
        sa.Column("version_key", sa.String(128), nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("artifact_uri", sa.Text, nullable=False),
        sa.Column("artifact_sha256", sa.String(64), nullable=False),
        sa.Column("job_id", sa.String(128), nullable=False),
        sa.Column("base_model_id", sa.String(255), nullable=False),
        sa.Column("base_model_sha256", sa.String(64), nullable=False),
        sa.Column("dataset_id", sa.String(128), nullable=False),
        sa.Column("dataset_version_id", sa.String(128), nullable=False),
        sa.Column("dataset_manifest_sha256", sa.String(64), nullable=False),
        sa.Column("config_sha256", sa.String(64), nullable=False),
        sa.Column("code_version", sa.String(255), nullable=False),
        sa.Column("metrics_json", sa.Text, nullable=False),
        sa.Column("aliases_json", sa.Text, nullable=False),
        sa.Column("evaluation_json", sa.Text, nullable=False),
        sa.Column("evaluation_passed", sa.Boolean, nullable=False),
        sa.Column("eval_id", sa.String(128), nullable=False),
        sa.Column("evaluated_at_ms", sa.BigInteger, nullable=False),
        sa.Column("registered_by", sa.String(255), nullable=False),
        sa.Column("registered_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_model_version_view_key", "model_version_view", ["tenant_id", "version_key"])
    op.create_index("ix_model_version_view_job", "model_version_view", ["tenant_id", "job_id"])

    op.create_table(
        "run_view",
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("job_id", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("params_json", sa.Text, nullable=False),
        sa.Column("tags_json", sa.Text, nullable=False),
        sa.Column("step", sa.BigInteger, nullable=False),
        sa.Column("loss", sa.Float, nullable=False),
        sa.Column("eval_loss", sa.Float, nullable=False),
        sa.Column("initial_eval_loss", sa.Float, nullable=False),
        sa.Column("epsilon_spent", sa.Float, nullable=False),
        sa.Column("duration_seconds", sa.Float, nullable=False),
        sa.Column("dataset_id", sa.String(128), nullable=False),
        sa.Column("dataset_version_id", sa.String(128), nullable=False),
        sa.Column("dataset_manifest_sha256", sa.String(64), nullable=False),
        sa.Column("base_model_id", sa.String(255), nullable=False),
        sa.Column("base_model_sha256", sa.String(64), nullable=False),
        sa.Column("code_version", sa.String(255), nullable=False),
        sa.Column("library_versions_json", sa.Text, nullable=False),
        sa.Column("seed", sa.BigInteger, nullable=False),
        sa.Column("hardware", sa.Text, nullable=False),
        sa.Column("config_sha256", sa.String(64), nullable=False),
        sa.Column("requested_by", sa.String(255), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("started_at_ms", sa.BigInteger, nullable=False),
        sa.Column("ended_at_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
    )

    op.create_table(
        "run_tags",
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("job_id", sa.String(128), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("value", sa.String(1024), nullable=False),
    )
    op.create_index("ix_run_tags_key_value", "run_tags", ["tenant_id", "key", "value"])

    op.create_table(
        "run_metric_points",
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("job_id", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("step", sa.BigInteger, primary_key=True),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("recorded_at_ms", sa.BigInteger, nullable=False),
    )

    op.create_index("ix_stored_events_tenant_type", "stored_events", ["tenant_id", "event_type"])


def downgrade() -> None:
    op.drop_index("ix_stored_events_tenant_type", table_name="stored_events")
    op.drop_table("run_metric_points")
    op.drop_table("run_tags")
    op.drop_table("run_view")
    op.drop_table("model_version_view")
