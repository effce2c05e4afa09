"""The receipt aggregate in SQL: ``receipts`` (raw DLRs) and the message moves they cause."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, insert, or_, select, update

from sms_gateway.domain.reasons import ReasonCode
from sms_gateway.domain.states import MessageStatus
from sms_gateway.storage.messages import transition
from sms_gateway.storage.records import OPEN_RECEIPT_OUTCOMES, ReceiptRecord
from sms_gateway.storage.sql import Database
from sms_gateway.storage.tables import messages, receipts


class SqlReceiptStore:
    """The :class:`~sms_gateway.services.ports.ReceiptStore` port over SQL.

    Errors: :class:`~sms_gateway.storage.errors.StorageUnavailable` when the database cannot
    be reached.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    def add(
        self,
        *,
        message_id: str | None,
        provider_message_id: str | None,
        status: str,
        error_code: str | None,
        delivered_at: datetime | None,
        raw: str,
        outcome: str,
        now: datetime,
        provider: str | None = None,
        attempt: int | None = None,
    ) -> int:
        """Store a receipt as received (``provider``: who signed it; ``attempt``: the message's
        attempt in flight when a pending receipt arrived); returns its id. A ``pending``
        receipt also sets its message's ``receipt_waiting`` flag, in the same transaction, so
        the sender finds it from the row it moves to ``sent``."""

        def unit(conn: Connection) -> int:
            result = conn.execute(
                insert(receipts).values(
                    message_id=message_id,
                    provider_message_id=provider_message_id,
                    status=status,
                    error_code=error_code,
                    delivered_at=delivered_at,
                    raw=raw,
                    outcome=outcome,
                    provider=provider,
                    attempt=attempt,
                    received_at=now,
                    applied_at=now if outcome == "applied" else None,
                )
            )
            if outcome == "pending" and message_id is not None:
                conn.execute(
                    update(messages).where(messages.c.id == message_id).values(receipt_waiting=True)
                )
            pk = result.inserted_primary_key
            return int(pk[0]) if pk else 0

        return self._db.tx(unit)

    def apply(
        self,
        message_id: str,
        target: MessageStatus,
        now: datetime,
        *,
        receipt_id: int,
        delivered_at: datetime | None,
        reason: ReasonCode | None,
        detail: str | None,
    ) -> bool:
        """``sent -> target`` for a receipt, marking receipt ``receipt_id`` ``applied`` (or
        ``stale`` when the message had already moved on). Returns whether the message moved."""
        values: dict[str, Any] = {}
        if target is MessageStatus.DELIVERED:
            values["delivered_at"] = delivered_at or now

        def unit(conn: Connection) -> bool:
            moved = transition(
                conn,
                message_id,
                MessageStatus.SENT,
                target,
                now,
                reason=reason,
                detail=detail,
                **values,
            )
            conn.execute(
                update(receipts)
                .where(receipts.c.id == receipt_id, receipts.c.outcome.in_(OPEN_RECEIPT_OUTCOMES))
                .values(
                    outcome="applied" if moved else "stale",
                    applied_at=now if moved else None,
                    message_id=message_id,
                )
            )
            return moved

        return self._db.tx(unit)

    def take_waiting(
        self,
        message_id: str,
        provider_message_id: str | None,
        provider: str | None = None,
        attempt: int | None = None,
    ) -> list[ReceiptRecord]:
        """Clear the message's ``receipt_waiting`` flag, then return the receipts kept for it
        while it was not ``sent`` yet: pending ones matched by our id (and, given ``attempt``,
        kept during that attempt: a receipt about an earlier, abandoned attempt says nothing
        of this one), and unmatched ones carrying its provider message id. Signed by
        ``provider`` (or unsigned) when it is given. Oldest first.

        The flag is cleared first: a receipt parked after that sets it again and, seeing the
        message ``sent``, applies itself (:class:`~sms_gateway.services.receipts.ReceiptService`).
        """
        cond = and_(receipts.c.message_id == message_id, receipts.c.outcome == "pending")
        if attempt is not None:
            cond = and_(cond, or_(receipts.c.attempt.is_(None), receipts.c.attempt == attempt))
        if provider_message_id:
            cond = or_(
                cond,
                and_(
                    receipts.c.provider_message_id == provider_message_id,
                    receipts.c.outcome == "unmatched",
                ),
            )
        if provider is not None:
            cond = and_(cond, or_(receipts.c.provider.is_(None), receipts.c.provider == provider))

        def unit(conn: Connection) -> list[ReceiptRecord]:
            conn.execute(
                update(messages)
                .where(messages.c.id == message_id, messages.c.receipt_waiting.is_(True))
                .values(receipt_waiting=False)
            )
            rows = conn.execute(
                select(
                    receipts.c.id,
                    receipts.c.message_id,
                    receipts.c.provider_message_id,
                    receipts.c.status,
                    receipts.c.error_code,
                    receipts.c.delivered_at,
                    receipts.c.outcome,
                    receipts.c.received_at,
                )
                .where(cond)
                .order_by(receipts.c.id)
            ).all()
            return [ReceiptRecord(*r) for r in rows]

        return self._db.tx(unit)

    def mark(self, receipt_id: int, outcome: str) -> None:
        """Set a stored receipt's outcome (e.g. ``stale`` once another receipt won)."""

        def unit(conn: Connection) -> None:
            conn.execute(
                update(receipts)
                .where(receipts.c.id == receipt_id, receipts.c.outcome.in_(OPEN_RECEIPT_OUTCOMES))
                .values(outcome=outcome)
            )

        self._db.single(unit)
