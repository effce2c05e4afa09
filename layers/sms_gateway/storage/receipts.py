"""The receipt aggregate in SQL: ``receipts`` (raw DLRs) and the message moves they cause."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, insert, or_, select, update

from sms_gateway.domain.reasons import ReasonCode
from sms_gateway.domain.receipts import settles_unknown
from sms_gateway.domain.states import MessageStatus
from sms_gateway.storage.messages import transition
from sms_gateway.storage.records import OPEN_RECEIPT_OUTCOMES, ReceiptRecord, Settled
from sms_gateway.storage.sql import Database
from sms_gateway.storage.tables import message_attempts, message_events, messages, receipts


def settled_detail(receipt_id: int, provider_message_id: str | None) -> str:
    """The detail an attempt settled by receipt ``receipt_id`` records (its outcome was
    unknown when the provider call ended)."""
    named = f" under provider message id {provider_message_id}" if provider_message_id else ""
    return f"outcome unknown at the call; receipt {receipt_id} proves it was sent{named}"


def settle_values(
    target: MessageStatus,
    now: datetime,
    *,
    provider: str,
    provider_message_id: str | None,
    sent_at: datetime,
    delivered_at: datetime | None,
    reason: ReasonCode | None,
    detail: str | None,
) -> dict[str, Any]:
    """The ``messages`` columns a settle writes besides status, version and updated_at
    (shared by the SQL store and the in-memory fake)."""
    values: dict[str, Any] = {
        "provider": provider,
        "sent_at": sent_at,
        "lease_expires_at": None,
        "reason_code": reason.value if reason is not None else None,
        "reason_detail": detail,
    }
    if provider_message_id:
        values["provider_message_id"] = provider_message_id
    if target is MessageStatus.DELIVERED:
        values["delivered_at"] = delivered_at or now
    return values


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

    def settle_unknown(
        self,
        message_id: str,
        target: MessageStatus,
        now: datetime,
        *,
        receipt_id: int,
        provider_message_id: str | None,
        delivered_at: datetime | None,
        reason: ReasonCode | None,
        detail: str | None,
    ) -> Settled | None:
        """See :meth:`~sms_gateway.services.ports.ReceiptStore.settle_unknown`. The message
        row is read ``FOR UPDATE`` (MariaDB, PostgreSQL) and moved only at the version read,
        so a sender's claim in between (or after) is decided by the row: one of them wins."""

        def unit(conn: Connection) -> Settled | None:
            row = conn.execute(
                select(messages.c.status, messages.c.reason_code, messages.c.version)
                .where(messages.c.id == message_id)
                .with_for_update()
            ).first()
            if row is None or not settles_unknown(MessageStatus(row[0]), row[1]):
                return None
            # a signed receipt proves its own provider's attempt (a failover message may
            # have unknown attempts through several)
            signer = conn.execute(
                select(receipts.c.provider).where(receipts.c.id == receipt_id)
            ).scalar()
            conditions = [
                message_attempts.c.message_id == message_id,
                message_attempts.c.outcome == "unknown",
            ]
            if signer is not None:
                conditions.append(message_attempts.c.provider == signer)
            attempt = conn.execute(
                select(
                    message_attempts.c.attempt_number,
                    message_attempts.c.provider,
                    message_attempts.c.started_at,
                )
                .where(*conditions)
                .order_by(message_attempts.c.attempt_number.desc())
                .limit(1)
            ).first()
            if attempt is None:
                return None
            number, provider, started_at = int(attempt[0]), str(attempt[1]), attempt[2]
            values = settle_values(
                target,
                now,
                provider=provider,
                provider_message_id=provider_message_id,
                sent_at=started_at,
                delivered_at=delivered_at,
                reason=reason,
                detail=detail,
            )
            moved = conn.execute(
                update(messages)
                .where(
                    messages.c.id == message_id,
                    messages.c.status == row[0],
                    messages.c.version == row[2],
                )
                .values(
                    status=target.value, updated_at=now, version=messages.c.version + 1, **values
                )
            )
            if moved.rowcount != 1:
                return None
            conn.execute(
                update(message_attempts)
                .where(
                    message_attempts.c.message_id == message_id,
                    message_attempts.c.attempt_number == number,
                )
                .values(
                    outcome="sent",
                    reason_code=None,
                    error_code=None,
                    error_detail=settled_detail(receipt_id, provider_message_id),
                )
            )
            settled = settled_detail(receipt_id, provider_message_id)
            conn.execute(
                insert(message_events).values(
                    [
                        {
                            "message_id": message_id,
                            "from_status": row[0],
                            "to_status": MessageStatus.SENT.value,
                            "reason_code": None,
                            "detail": f"attempt {number}: {settled}",
                            "at": now,
                        },
                        {
                            "message_id": message_id,
                            "from_status": MessageStatus.SENT.value,
                            "to_status": target.value,
                            "reason_code": reason.value if reason is not None else None,
                            "detail": detail,
                            "at": now,
                        },
                    ]
                )
            )
            conn.execute(
                update(receipts)
                .where(receipts.c.id == receipt_id, receipts.c.outcome.in_(OPEN_RECEIPT_OUTCOMES))
                .values(outcome="applied", applied_at=now, message_id=message_id)
            )
            return Settled(MessageStatus(row[0]), number, provider, started_at)

        return self._db.tx(unit)
