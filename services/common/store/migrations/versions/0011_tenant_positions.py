"""A tenant's newest event-store position in one index lookup (read-your-writes on the job list).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Builds in the migration's transaction, so it blocks writes to stored_events while it runs (seconds per
    # few million events). On a large PostgreSQL store, build it first without blocking:
    #   CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_stored_events_tenant_seq ON stored_events (tenant_id, seq);
    # this migration then finds it and only records the step.
    bind = op.get_bind()
    exists = any(ix["name"] == "ix_stored_events_tenant_seq" for ix in sa.inspect(bind).get_indexes("stored_events"))
    if not exists:
        op.create_index("ix_stored_events_tenant_seq", "stored_events", ["tenant_id", "seq"])


def downgrade() -> None:
    op.drop_index("ix_stored_events_tenant_seq", table_name="stored_events")
