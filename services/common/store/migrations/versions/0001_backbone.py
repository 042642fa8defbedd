"""Backbone: event store, outbox, processed events, relay leases, names, dataset view.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_SEQ = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "stored_events",
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(64), nullable=False, unique=True),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("stream_type", sa.String(64), nullable=False),
        sa.Column("stream_id", sa.String(128), nullable=False),
        sa.Column("stream_version", sa.Integer, nullable=False),
        sa.Column("event_type", sa.String(128), nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("recorded_at_ms", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("stream_id", "stream_version", name="uq_stored_events_stream_version"),
    )
    op.create_index("ix_stored_events_tenant_stream", "stored_events", ["tenant_id", "stream_id"])
    op.create_table(
        "outbox",
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(64), nullable=False, unique=True),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("published_at_ms", sa.BigInteger, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text, nullable=True),
    )
    op.create_index("ix_outbox_unpublished", "outbox", ["published_at_ms", "seq"])
    op.create_table(
        "processed_events",
        sa.Column("consumer", sa.String(128), primary_key=True),
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("processed_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "relay_leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("lease_until_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "unique_names",
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("kind", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("aggregate_id", sa.String(128), nullable=False),
    )
    op.create_table(
        "dataset_view",
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("dataset_id", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("storage_uri", sa.Text, nullable=False),
        sa.Column("format_hint", sa.Integer, nullable=False),
        sa.Column("classification", sa.Integer, nullable=False),
        sa.Column("checksum_sha256", sa.String(64), nullable=False),
        sa.Column("file_count", sa.BigInteger, nullable=False),
        sa.Column("total_bytes", sa.BigInteger, nullable=False),
        sa.Column("labels_json", sa.Text, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    for table in ("dataset_view", "unique_names", "relay_leases", "processed_events", "outbox", "stored_events"):
        op.drop_table(table)
