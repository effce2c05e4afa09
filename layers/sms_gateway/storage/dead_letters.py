"""The dead-letter aggregate in SQL: ``dead_letters`` rows and the move to ``failed``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, or_, select

from sms_gateway.domain.reasons import ReasonCode
from sms_gateway.domain.states import MessageStatus
from sms_gateway.storage.messages import close_in_flight, transition
from sms_gateway.storage.sql import Database
from sms_gateway.storage.tables import dead_letters, messages


class SqlDeadLetterStore:
    """The :class:`~sms_gateway.services.ports.DeadLetterStore` port over SQL.

    Errors: :class:`~sms_gateway.storage.errors.StorageUnavailable` when the database cannot
    be reached.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    def record(
        self,
        *,
        sqs_message_id: str,
        message_id: str | None,
        tenant_id: str | None,
        receive_count: int,
        reason: ReasonCode,
        detail: str | None,
        raw_payload: str,
        now: datetime,
        generation: int = 0,
    ) -> bool:
        """Store a dead letter unless one is already stored: the same SQS message again, or
        another copy of the same message (unique per message and replay generation, so
        concurrent DLQ invocations cannot both store one). ``generation``: the message's replay
        generation (0 until an operator replays it; a replayed message that is dead-lettered
        again makes a new row). Insert-if-absent: no error reaches the server for a copy.
        Returns whether this call stored it."""
        row = {
            "sqs_message_id": sqs_message_id,
            "message_id": message_id,
            "tenant_id": tenant_id,
            "receive_count": receive_count,
            "reason": reason.value,
            "detail": detail,
            "raw_payload": raw_payload,
            "created_at": now,
            "generation": generation,
        }
        return self._db.single(
            lambda conn: conn.execute(self._db.insert_if_absent(dead_letters, [row])).rowcount == 1
        )

    def fail_message(
        self, message_id: str, reason: ReasonCode, detail: str | None, now: datetime
    ) -> MessageStatus | None:
        """Move a dead-lettered message to ``failed`` with ``reason``: from ``queued``, or from
        ``sending`` once its lease has ended (a live sender is left to finish; its outcome
        stands). Returns the status it left, or None when it did not move."""

        def unit(conn: Connection) -> MessageStatus | None:
            if transition(
                conn,
                message_id,
                MessageStatus.QUEUED,
                MessageStatus.FAILED,
                now,
                reason=reason,
                detail=detail,
                lease_expires_at=None,
            ):
                return MessageStatus.QUEUED
            lease_over = or_(
                messages.c.lease_expires_at.is_(None), messages.c.lease_expires_at <= now
            )
            if transition(
                conn,
                message_id,
                MessageStatus.SENDING,
                MessageStatus.FAILED,
                now,
                reason=reason,
                detail=detail,
                extra_where=lease_over,
                lease_expires_at=None,
            ):
                close_in_flight(conn, message_id, now)
                return MessageStatus.SENDING
            return None

        return self._db.tx(unit)

    def list_for(self, message_id: str | None = None) -> list[dict[str, Any]]:
        """Dead-letter rows (all, or one message's), oldest first, as dicts."""
        query = select(dead_letters).order_by(dead_letters.c.id)
        if message_id is not None:
            query = query.where(dead_letters.c.message_id == message_id)
        return self._db.single(lambda conn: [dict(r._mapping) for r in conn.execute(query)])
