"""messages.receipt_waiting: a flag set when a receipt is parked for the message

The set-based sender (issue 6) finds messages with kept receipts from the rows its outcome
update returns, instead of one receipts query per SMS.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 08:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(
            sa.Column("receipt_waiting", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    # receipts already parked before this revision must still be found after the send
    messages = sa.table("messages", sa.column("id"), sa.column("receipt_waiting", sa.Boolean))
    receipts = sa.table("receipts", sa.column("message_id"), sa.column("outcome"))
    parked = sa.select(receipts.c.message_id).where(receipts.c.outcome == "pending")
    op.execute(messages.update().where(messages.c.id.in_(parked)).values(receipt_waiting=True))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("receipt_waiting")
