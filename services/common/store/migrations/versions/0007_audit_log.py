"""The audit log: chained records, chain state, signed heads, sealed segments, public keys, counters.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_records",
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("position", sa.BigInteger, nullable=False, unique=True),
        sa.Column("record_id", sa.String(200), nullable=False),
        sa.Column("time_ms", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("resource", sa.String(300), nullable=False),
        sa.Column("record_json", sa.Text, nullable=False),
        sa.UniqueConstraint("tenant_id", "record_id", name="uq_audit_records_record_id"),
    )
    op.create_index("ix_audit_records_time", "audit_records", ["tenant_id", "time_ms"])
    op.create_index("ix_audit_records_actor", "audit_records", ["tenant_id", "actor", "seq"])
    op.create_index("ix_audit_records_resource", "audit_records", ["tenant_id", "resource", "seq"])
    op.create_table(
        "audit_chains",
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
        sa.Column("sealed_size", sa.BigInteger, nullable=False),
        sa.Column("first_unsealed_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "audit_heads",
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("signed_json", sa.Text, nullable=False),
        sa.Column("frontier", sa.Text, nullable=False),
    )
    op.create_table(
        "audit_segments",
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("first_seq", sa.BigInteger, nullable=False),
        sa.Column("last_seq", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("sealed_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "audit_public_keys",
        sa.Column("key_id", sa.String(16), primary_key=True),
        sa.Column("public_key_pem", sa.Text, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "audit_counters",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in ("audit_counters", "audit_public_keys", "audit_segments", "audit_heads", "audit_chains"):
        op.drop_table(table)
    op.drop_index("ix_audit_records_resource", "audit_records")
    op.drop_index("ix_audit_records_actor", "audit_records")
    op.drop_index("ix_audit_records_time", "audit_records")
    op.drop_table("audit_records")
