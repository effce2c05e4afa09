"""Retention in SQL (issue 11, item 5): redact, then delete, in bounded batches.

- **Redact** a message created before a cutoff that can no longer be sent (any status but
  ``queued``/``sending``): ``body`` and ``to_number`` become ``''`` (never a value ingest
  accepts, so a redacted row is recognizable), and so do the raw texts that carry them: its
  receipts' ``raw`` and its dead letters' ``raw_payload``. Ids, statuses, times, reason codes,
  attempts and the audit trail (``message_events``) stay.
- **Delete** a message created before a (longer) cutoff with everything that names it:
  attempts, audit events, receipts, dead letters. Receipts and dead letters that name no
  message (unmatched, malformed) follow the same two cutoffs by their own time.

Each batch is one transaction over at most ``batch_size`` messages, picked by id in the
batch's first statement, so a run holds locks briefly and a long backlog is worked off over
several runs (and several invocations).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Connection, delete, select, update

from sms_gateway.domain.states import MessageStatus
from sms_gateway.storage.sql import Database
from sms_gateway.storage.tables import (
    dead_letters,
    message_attempts,
    message_events,
    messages,
    receipts,
)

REDACTED = ""
# Statuses in which a message may still be sent: never redacted (the sender reads the body).
LIVE_STATUSES = (MessageStatus.QUEUED.value, MessageStatus.SENDING.value)


@dataclass(frozen=True, slots=True)
class BatchResult:
    """One batch: ``messages`` rows redacted or deleted, ``others``: receipts and dead
    letters without a message that were redacted or deleted alongside."""

    messages: int
    others: int

    @property
    def total(self) -> int:
        """Rows this batch changed, all tables' primary rows together."""
        return self.messages + self.others


class SqlRetentionStore:
    """Redaction and deletion batches over SQL.

    Errors: :class:`~sms_gateway.storage.errors.StorageUnavailable` when the database cannot
    be reached.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    def redact_batch(self, before: datetime, batch_size: int) -> BatchResult:
        """Redact up to ``batch_size`` messages created before ``before`` (aware UTC), and up
        to ``batch_size`` unmatched receipts and malformed dead letters older than it."""

        def unit(conn: Connection) -> BatchResult:
            ids = list(
                conn.execute(
                    select(messages.c.id)
                    .where(
                        messages.c.created_at < before,
                        messages.c.status.not_in(LIVE_STATUSES),
                        messages.c.body != REDACTED,
                    )
                    .order_by(messages.c.created_at, messages.c.id)
                    .limit(batch_size)
                ).scalars()
            )
            if ids:
                conn.execute(
                    update(messages)
                    .where(messages.c.id.in_(ids))
                    .values(body=REDACTED, to_number=REDACTED)
                )
                conn.execute(
                    update(receipts).where(receipts.c.message_id.in_(ids)).values(raw=REDACTED)
                )
                conn.execute(
                    update(dead_letters)
                    .where(dead_letters.c.message_id.in_(ids))
                    .values(raw_payload=REDACTED)
                )
            others = self._redact_orphans(conn, before, batch_size)
            return BatchResult(len(ids), others)

        return self._db.tx(unit)

    def _redact_orphans(self, conn: Connection, before: datetime, batch_size: int) -> int:
        """Blank up to ``batch_size`` unmatched receipts and up to ``batch_size`` malformed
        dead letters (rows naming no message) older than ``before``; their count."""
        return _redact_unowned(
            conn, receipts.c.received_at, receipts.c.raw, before, batch_size
        ) + _redact_unowned(
            conn, dead_letters.c.created_at, dead_letters.c.raw_payload, before, batch_size
        )

    def delete_batch(self, before: datetime, batch_size: int) -> BatchResult:
        """Delete up to ``batch_size`` messages created before ``before`` (aware UTC) that can
        no longer be sent, with their attempts, events, receipts and dead letters; and up to
        ``batch_size`` unmatched receipts and malformed dead letters older than it."""

        def unit(conn: Connection) -> BatchResult:
            ids = list(
                conn.execute(
                    select(messages.c.id)
                    .where(
                        messages.c.created_at < before,
                        messages.c.status.not_in(LIVE_STATUSES),
                    )
                    .order_by(messages.c.created_at, messages.c.id)
                    .limit(batch_size)
                ).scalars()
            )
            if ids:
                for table in (message_attempts, message_events, receipts, dead_letters):
                    conn.execute(delete(table).where(table.c.message_id.in_(ids)))
                conn.execute(delete(messages).where(messages.c.id.in_(ids)))
            receipt_ids = list(
                conn.execute(
                    select(receipts.c.id)
                    .where(receipts.c.message_id.is_(None), receipts.c.received_at < before)
                    .limit(batch_size)
                ).scalars()
            )
            if receipt_ids:
                conn.execute(delete(receipts).where(receipts.c.id.in_(receipt_ids)))
            letter_ids = list(
                conn.execute(
                    select(dead_letters.c.id)
                    .where(dead_letters.c.message_id.is_(None), dead_letters.c.created_at < before)
                    .limit(batch_size)
                ).scalars()
            )
            if letter_ids:
                conn.execute(delete(dead_letters).where(dead_letters.c.id.in_(letter_ids)))
            return BatchResult(len(ids), len(receipt_ids) + len(letter_ids))

        return self._db.tx(unit)


def _redact_unowned(
    conn: Connection, stamp: Column[Any], payload: Column[Any], before: datetime, limit: int
) -> int:
    """Blank ``payload`` in up to ``limit`` rows of its table that name no message and whose
    ``stamp`` is before ``before``; the number of rows blanked."""
    table = payload.table
    ids = list(
        conn.execute(
            select(table.c.id)
            .where(table.c.message_id.is_(None), stamp < before, payload != REDACTED)
            .limit(limit)
        ).scalars()
    )
    if ids:
        conn.execute(update(table).where(table.c.id.in_(ids)).values({payload.name: REDACTED}))
    return len(ids)
