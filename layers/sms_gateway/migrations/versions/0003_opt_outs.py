"""opt_outs: numbers that answered "opted out", per tenant and sender ID (issue 7)

Expand only (docs/migrations.md): a new table. Release 0002's code never reads it, so it keeps
working on this schema; this release's sender checks it in its intake.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from sms_gateway.storage.tables import UTCDateTime

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "opt_outs",
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("number", sa.String(16), nullable=False),
        sa.Column("sender_id", sa.String(16), nullable=False),
        sa.Column("message_id", sa.String(64)),
        sa.Column("provider", sa.String(64)),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "number", "sender_id", name=op.f("pk_opt_outs")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
        mysql_engine="InnoDB",
    )


def downgrade() -> None:
    op.drop_table("opt_outs")
