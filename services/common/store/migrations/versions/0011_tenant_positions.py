"""A tenant's newest event-store position in one index lookup (read-your-writes on the job list).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_stored_events_tenant_seq", "stored_events", ["tenant_id", "seq"])


def downgrade() -> None:
    op.drop_index("ix_stored_events_tenant_seq", table_name="stored_events")
