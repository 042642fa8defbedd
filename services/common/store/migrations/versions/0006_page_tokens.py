"""Signed page tokens: the store's signing key, and the (created_at, id) indexes lists page on.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_ORDERED = (("dataset_view", "dataset_id"), ("curation_job_view", "job_id"), ("training_job_view", "job_id"))


def upgrade() -> None:
    op.create_table(
        "signing_keys",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("secret", sa.LargeBinary, nullable=False),
    )
    for table, key in _ORDERED:
        op.create_index(f"ix_{table}_created", table, ["tenant_id", "created_at_ms", key])


def downgrade() -> None:
    for table, _ in _ORDERED:
        op.drop_index(f"ix_{table}_created", table)
    op.drop_table("signing_keys")
