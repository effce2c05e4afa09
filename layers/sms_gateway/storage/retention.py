"""Retention in SQL (issue 11, item 5): redact, then delete, in bounded batches; the audit
trail outlives both.

- **Redact** a message created before its tenant's cutoff that can no longer be sent (any
  status but ``queued``/``sending``): ``body`` and ``to_number`` become ``''`` (never a value
  ingest accepts, so a redacted row is recognizable), and so do the raw texts that carry them:
  its receipts' ``raw`` and its dead letters' ``raw_payload``. The free texts where a
  provider's error may quote the number become NULL: ``messages.reason_detail``,
  ``message_attempts.error_detail``, ``dead_letters.detail`` and ``message_events.detail``.
  Ids, statuses, times, reason codes and attempts stay.
- **Delete** a message created before its tenant's (longer) cutoff with its attempts,
  receipts and dead letters. Its audit trail (``message_events``: ids, states, reason codes,
  times) stays, with the tenant written into it and its ``detail`` blanked; it is deleted by
  :meth:`SqlRetentionStore.expire_audit_batch` after the audit period (``AuditAfterDays``).
  Receipts and dead letters that name no message (unmatched, malformed) follow the stack's
  default cutoffs by their own time.

Each batch is one transaction over at most ``batch_size`` messages, picked by id in the
batch's first statement, so a run holds locks briefly and a long backlog is worked off over
several runs (and several invocations).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Column, ColumnElement, Connection, and_, delete, or_, select, update

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
class Cutoffs:
    """Creation-time cutoffs (aware UTC) of one kind of retention work: ``default`` for every
    tenant not in ``tenants``, whose own cutoff is there (their route policy's periods)."""

    default: datetime
    tenants: Mapping[str, datetime] = field(default_factory=dict)

    def older(self) -> ColumnElement[bool]:
        """``messages`` rows created before their tenant's cutoff (one SQL condition)."""
        created, tenant = messages.c.created_at, messages.c.tenant_id
        if not self.tenants:
            return created < self.default
        own = [
            and_(tenant == name, created < cutoff) for name, cutoff in sorted(self.tenants.items())
        ]
        return or_(*own, and_(tenant.not_in(sorted(self.tenants)), created < self.default))


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


def _as_cutoffs(before: datetime | Cutoffs) -> Cutoffs:
    return before if isinstance(before, Cutoffs) else Cutoffs(before)


class SqlRetentionStore:
    """Redaction and deletion batches over SQL.

    Errors: :class:`~sms_gateway.storage.errors.StorageUnavailable` when the database cannot
    be reached.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    def redact_batch(self, before: datetime | Cutoffs, batch_size: int) -> BatchResult:
        """Redact up to ``batch_size`` messages created before their cutoff (an aware UTC
        time for every tenant, or :class:`Cutoffs`), and up to ``batch_size`` unmatched
        receipts and malformed dead letters older than the default cutoff."""
        cutoffs = _as_cutoffs(before)

        def unit(conn: Connection) -> BatchResult:
            ids = list(
                conn.execute(
                    select(messages.c.id)
                    .where(
                        cutoffs.older(),
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
                    .values(body=REDACTED, to_number=REDACTED, reason_detail=None)
                )
                conn.execute(
                    update(message_attempts)
                    .where(message_attempts.c.message_id.in_(ids))
                    .values(error_detail=None)
                )
                conn.execute(
                    update(message_events)
                    .where(message_events.c.message_id.in_(ids))
                    .values(detail=None)
                )
                conn.execute(
                    update(receipts).where(receipts.c.message_id.in_(ids)).values(raw=REDACTED)
                )
                conn.execute(
                    update(dead_letters)
                    .where(dead_letters.c.message_id.in_(ids))
                    .values(raw_payload=REDACTED, detail=None)
                )
            others = self._redact_orphans(conn, cutoffs.default, batch_size)
            return BatchResult(len(ids), others)

        return self._db.tx(unit)

    def _redact_orphans(self, conn: Connection, before: datetime, batch_size: int) -> int:
        """Blank up to ``batch_size`` unmatched receipts and up to ``batch_size`` malformed
        dead letters (rows naming no message) older than ``before``; their count."""
        return _redact_unowned(
            conn, receipts.c.received_at, receipts.c.raw, before, batch_size
        ) + _redact_unowned(
            conn,
            dead_letters.c.created_at,
            dead_letters.c.raw_payload,
            before,
            batch_size,
            also_null=(dead_letters.c.detail,),
        )

    def delete_batch(self, before: datetime | Cutoffs, batch_size: int) -> BatchResult:
        """Delete up to ``batch_size`` messages created before their cutoff (an aware UTC
        time for every tenant, or :class:`Cutoffs`) that can no longer be sent, with their
        attempts, receipts and dead letters, keeping their audit events (tenant written in,
        detail blanked); and up to ``batch_size`` unmatched receipts and malformed dead
        letters older than the default cutoff."""
        cutoffs = _as_cutoffs(before)

        def unit(conn: Connection) -> BatchResult:
            rows = conn.execute(
                select(messages.c.id, messages.c.tenant_id)
                .where(cutoffs.older(), messages.c.status.not_in(LIVE_STATUSES))
                .order_by(messages.c.created_at, messages.c.id)
                .limit(batch_size)
            ).all()
            ids = [row.id for row in rows]
            if ids:
                by_tenant: dict[str, list[str]] = defaultdict(list)
                for row in rows:
                    by_tenant[row.tenant_id].append(row.id)
                for tenant_id, owned in sorted(by_tenant.items()):
                    conn.execute(
                        update(message_events)
                        .where(message_events.c.message_id.in_(owned))
                        .values(tenant_id=tenant_id, detail=None)
                    )
                for table in (message_attempts, receipts, dead_letters):
                    conn.execute(delete(table).where(table.c.message_id.in_(ids)))
                conn.execute(delete(messages).where(messages.c.id.in_(ids)))
            before_default = cutoffs.default
            receipt_ids = list(
                conn.execute(
                    select(receipts.c.id)
                    .where(receipts.c.message_id.is_(None), receipts.c.received_at < before_default)
                    .limit(batch_size)
                ).scalars()
            )
            if receipt_ids:
                conn.execute(delete(receipts).where(receipts.c.id.in_(receipt_ids)))
            letter_ids = list(
                conn.execute(
                    select(dead_letters.c.id)
                    .where(
                        dead_letters.c.message_id.is_(None),
                        dead_letters.c.created_at < before_default,
                    )
                    .limit(batch_size)
                ).scalars()
            )
            if letter_ids:
                conn.execute(delete(dead_letters).where(dead_letters.c.id.in_(letter_ids)))
            return BatchResult(len(ids), len(receipt_ids) + len(letter_ids))

        return self._db.tx(unit)

    def expire_audit_batch(self, before: datetime, batch_size: int) -> int:
        """Delete up to ``batch_size`` audit events of deleted messages (``tenant_id`` set by
        :meth:`delete_batch`) recorded before ``before`` (aware UTC); their count. Events of
        a message that still exists are never deleted."""

        def unit(conn: Connection) -> int:
            ids = list(
                conn.execute(
                    select(message_events.c.id)
                    .where(message_events.c.tenant_id.is_not(None), message_events.c.at < before)
                    .order_by(message_events.c.at, message_events.c.id)
                    .limit(batch_size)
                ).scalars()
            )
            if ids:
                conn.execute(delete(message_events).where(message_events.c.id.in_(ids)))
            return len(ids)

        return self._db.tx(unit)


def _redact_unowned(
    conn: Connection,
    stamp: Column[Any],
    payload: Column[Any],
    before: datetime,
    limit: int,
    also_null: tuple[Column[Any], ...] = (),
) -> int:
    """Blank ``payload`` (and set ``also_null`` to NULL) in up to ``limit`` rows of its table
    that name no message and whose ``stamp`` is before ``before``; the number of rows."""
    table = payload.table
    ids = list(
        conn.execute(
            select(table.c.id)
            .where(table.c.message_id.is_(None), stamp < before, payload != REDACTED)
            .limit(limit)
        ).scalars()
    )
    if ids:
        values: dict[str, Any] = {payload.name: REDACTED}
        values.update({column.name: None for column in also_null})
        conn.execute(update(table).where(table.c.id.in_(ids)).values(values))
    return len(ids)
