"""The deploy service: its catalog of model versions (with their latest evaluation), the deployment list,
and the gateway's record of which model version answered each request.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deploy_model_catalog",
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("model_version_id", sa.String(255), primary_key=True),
        sa.Column("model_name", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("artifact_uri", sa.Text, nullable=False),
        sa.Column("artifact_sha256", sa.String(64), nullable=False),
        sa.Column("base_model_id", sa.String(255), nullable=False),
        sa.Column("base_model_sha256", sa.String(64), nullable=False),
        sa.Column("evaluation_suite_id", sa.String(64), nullable=False),
        sa.Column("dataset_uri", sa.Text, nullable=False),
        sa.Column("eval_id", sa.String(64), nullable=False),
        sa.Column("eval_passed", sa.Integer, nullable=False),
        sa.Column("eval_reason", sa.Text, nullable=False),
        sa.Column("eval_at_ms", sa.BigInteger, nullable=False),
        sa.Column("registered_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "deployment_view",
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("deployment_id", sa.String(64), primary_key=True),
        sa.Column("model_version_id", sa.String(255), nullable=False),
        sa.Column("environment", sa.String(64), nullable=False),
        sa.Column("endpoint_name", sa.String(255), nullable=False),
        sa.Column("strategy", sa.Integer, nullable=False),
        sa.Column("state", sa.Integer, nullable=False),
        sa.Column("requested_by", sa.String(128), nullable=False),
        sa.Column("approver", sa.String(128), nullable=False),
        sa.Column("pool", sa.String(64), nullable=False),
        sa.Column("weight_percent", sa.Integer, nullable=False),
        sa.Column("previous_model_version_id", sa.String(255), nullable=False),
        sa.Column("rollback_trigger", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("error_code", sa.String(64), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_deployment_view_created", "deployment_view", ["tenant_id", "created_at_ms", "deployment_id"])
    op.create_table(
        "served_requests",
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("endpoint_name", sa.String(255), nullable=False),
        sa.Column("model_version_id", sa.String(255), nullable=False),
        sa.Column("deployment_id", sa.String(64), nullable=False),
        sa.Column("pool", sa.String(64), nullable=False),
        sa.Column("routing_version", sa.BigInteger, nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("seconds", sa.Float, nullable=False),
        sa.Column("stream", sa.Integer, nullable=False),
        sa.Column("principal", sa.String(128), nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_served_requests_version", "served_requests", ["tenant_id", "model_version_id", "at_ms"])


def downgrade() -> None:
    op.drop_table("served_requests")
    op.drop_table("deployment_view")
    op.drop_table("deploy_model_catalog")
