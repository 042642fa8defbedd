"""The eval run list carries what triage needs: the judge, the trigger, the item count and the failure's code.

Rows written before this revision get empty values; `privtune replay` fills them from the events.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("eval_run_view", sa.Column("judge", sa.Text, nullable=False, server_default=""))
    op.add_column("eval_run_view", sa.Column("trigger", sa.String(32), nullable=False, server_default=""))
    op.add_column("eval_run_view", sa.Column("item_count", sa.Integer, nullable=False, server_default="0"))
    op.add_column("eval_run_view", sa.Column("error_code", sa.Text, nullable=False, server_default=""))


def downgrade() -> None:
    for column in ("error_code", "item_count", "trigger", "judge"):
        op.drop_column("eval_run_view", column)
