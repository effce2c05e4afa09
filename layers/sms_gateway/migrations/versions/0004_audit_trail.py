"""message_events outlive their message; messages.generation (issue 11)

**The audit trail survives retention's deletion.**

Retention (issue 11) deletes a message and its rows after ``DeleteAfterDays``; the audit trail
(``message_events``: ids, states, reason codes, times) is kept for ``AuditAfterDays`` instead.
So the foreign key from ``message_events.message_id`` to ``messages.id`` goes, and an event
gets a ``tenant_id``, written when its message is deleted (until then the message row names the
tenant), and an index on ``at`` for the audit trail's own expiry.

**messages.generation**: the replay generation a message is on (0 until an operator replays
its dead letter), set by the replay; the sender acknowledges a SendQueue record of an older
generation without effect. Backfilled from the replayed dead letters.

Expand only (docs/migrations.md): the dropped foreign key only relaxes a constraint (release
0003's code inserts events with a message that exists and never relied on the key's errors),
the new columns are nullable or have a server default (0003's code inserts messages without
``generation``), so that code keeps working on this schema. The backfill is idempotent and
touches replayed messages only.

Downgrade deletes the events whose message is gone (the foreign key cannot come back over
them).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 14:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FK = "fk_message_events_message_id_messages"


def upgrade() -> None:
    with op.batch_alter_table("message_events") as batch:
        batch.drop_constraint(FK, type_="foreignkey")
        batch.add_column(sa.Column("tenant_id", sa.String(128), nullable=True))
        batch.create_index("ix_message_events_at", ["at"], unique=False)
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("generation", sa.Integer(), nullable=False, server_default="0"))
    # a message replayed before this revision is on the generation after its last replay
    messages = sa.table("messages", sa.column("id"), sa.column("generation", sa.Integer))
    letters = sa.table(
        "dead_letters",
        sa.column("message_id"),
        sa.column("generation", sa.Integer),
        sa.column("replayed_at"),
    )
    replayed = letters.c.replayed_at.is_not(None)
    latest = (
        sa.select(sa.func.max(letters.c.generation) + 1)
        .where(letters.c.message_id == messages.c.id, replayed)
        .scalar_subquery()
    )
    op.execute(
        messages.update()
        .where(messages.c.id.in_(sa.select(letters.c.message_id).where(replayed)))
        .values(generation=latest)
    )


def downgrade() -> None:
    events = sa.table("message_events", sa.column("message_id"))
    messages = sa.table("messages", sa.column("id"))
    op.execute(events.delete().where(events.c.message_id.not_in(sa.select(messages.c.id))))
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("generation")
    with op.batch_alter_table("message_events") as batch:
        batch.drop_index("ix_message_events_at")
        batch.drop_column("tenant_id")
        batch.create_foreign_key(FK, "messages", ["message_id"], ["id"])
