"""Repositories over SQLAlchemy Core: one short transaction per use case, no session state.

Every status change is one conditional ``UPDATE messages ... WHERE id = :id AND status = :from``
plus a ``message_events`` row in the same transaction (DESIGN section 4), so a duplicate or late
SQS delivery can never move a message backwards: the losing writer sees 0 rows and stops.
Driver errors are translated: ``IntegrityError`` means "already there" (insert-if-absent), an
``OperationalError``/``InterfaceError`` becomes :class:`StorageUnavailable`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, insert, or_, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError

from sms_gateway.domain.message import QueuedMessage
from sms_gateway.domain.reasons import ReasonCode
from sms_gateway.domain.routing import RoutePolicy, parse_policy
from sms_gateway.domain.states import MessageStatus, check_transition
from sms_gateway.storage.errors import StorageUnavailable
from sms_gateway.storage.tables import (
    dead_letters,
    message_attempts,
    message_events,
    messages,
    receipts,
    tenant_route_policies,
)

# Receipt outcomes that may still change (a decided receipt is never rewritten).
OPEN_RECEIPT_OUTCOMES = ("received", "pending", "unmatched")


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """A ``messages`` row. Times are aware UTC; ``status`` is a :class:`MessageStatus`."""

    id: str
    tenant_id: str
    to_number: str
    sender_id: str | None
    body: str
    status: MessageStatus
    reason_code: str | None
    reason_detail: str | None
    provider: str | None
    provider_message_id: str | None
    encoding: str
    segments: int
    attempts: int
    max_attempts: int
    idempotency_key: str
    reference: str | None
    version: int
    lease_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    delivered_at: datetime | None
    expires_at: datetime | None

    @classmethod
    def from_row(cls, row: Any) -> MessageRecord:
        data = dict(row._mapping)
        data["status"] = MessageStatus(data["status"])
        return cls(**data)


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """A ``message_attempts`` row: one provider call (``outcome`` in_flight until it returns)."""

    attempt_number: int
    provider: str
    outcome: str
    reason_code: str | None
    error_code: str | None
    error_detail: str | None
    latency_ms: int | None


@dataclass(frozen=True, slots=True)
class ReceiptRecord:
    """A stored delivery receipt (DLR)."""

    id: int
    message_id: str | None
    provider_message_id: str | None
    status: str
    error_code: str | None
    delivered_at: datetime | None
    outcome: str
    received_at: datetime


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What a provider call came to, for :meth:`MessageRepository.finish_attempt`.

    ``outcome``: ``sent`` | ``transient_error`` | ``permanent_error``; ``latency_ms``: wall time
    of the provider call in milliseconds.
    """

    outcome: str
    latency_ms: int
    provider_message_id: str | None = None
    reason_code: ReasonCode | None = None
    error_code: str | None = None
    error_detail: str | None = None


@contextmanager
def translate_errors() -> Iterator[None]:
    """Turn operational driver errors into :class:`StorageUnavailable` (integrity errors pass)."""
    try:
        yield
    except IntegrityError:
        raise
    except (OperationalError, InterfaceError) as exc:
        raise StorageUnavailable(f"database unavailable: {type(exc.orig).__name__}") from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise StorageUnavailable("database connection lost") from exc
        raise
    except (ConnectionError, TimeoutError) as exc:
        raise StorageUnavailable(f"database unavailable: {type(exc).__name__}") from exc


class MessageRepository:
    """Messages, their attempts, events, receipts and dead letters.

    All methods take ``now`` (aware UTC) from the caller's clock, so tests control time.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with translate_errors(), self._engine.begin() as conn:
            yield conn

    # ---- reads ---------------------------------------------------------------------------

    def _first_message(self, *conditions: Any) -> MessageRecord | None:
        with self._tx() as conn:
            row = conn.execute(select(messages).where(*conditions).limit(1)).first()
        return MessageRecord.from_row(row) if row else None

    def get(self, message_id: str) -> MessageRecord | None:
        """The message with ``message_id``, or None."""
        return self._first_message(messages.c.id == message_id)

    def get_for_tenant(self, tenant_id: str, message_id: str) -> MessageRecord | None:
        """The message if it belongs to ``tenant_id``; None for unknown and foreign ids alike."""
        return self._first_message(messages.c.id == message_id, messages.c.tenant_id == tenant_id)

    def find_by_provider_message_id(
        self, provider_message_id: str, provider: str | None = None
    ) -> MessageRecord | None:
        """The message a provider knows as ``provider_message_id`` (sent through ``provider``,
        when given: two providers may issue the same id), or None."""
        conditions = [messages.c.provider_message_id == provider_message_id]
        if provider is not None:
            conditions.append(messages.c.provider == provider)
        return self._first_message(*conditions)

    def attempts(self, message_id: str) -> list[AttemptRecord]:
        """The provider calls for ``message_id``, oldest first."""
        with self._tx() as conn:
            rows = conn.execute(
                select(
                    message_attempts.c.attempt_number,
                    message_attempts.c.provider,
                    message_attempts.c.outcome,
                    message_attempts.c.reason_code,
                    message_attempts.c.error_code,
                    message_attempts.c.error_detail,
                    message_attempts.c.latency_ms,
                )
                .where(message_attempts.c.message_id == message_id)
                .order_by(message_attempts.c.attempt_number)
            ).all()
        return [AttemptRecord(*row) for row in rows]

    def events(self, message_id: str) -> list[tuple[str | None, str, str | None]]:
        """The audit trail of ``message_id``: ``(from, to, reason_code)`` rows, in order."""
        with self._tx() as conn:
            rows = conn.execute(
                select(
                    message_events.c.from_status,
                    message_events.c.to_status,
                    message_events.c.reason_code,
                )
                .where(message_events.c.message_id == message_id)
                .order_by(message_events.c.id)
            ).all()
        return [(r[0], r[1], r[2]) for r in rows]

    # ---- writes --------------------------------------------------------------------------

    def record_queued(self, msg: QueuedMessage, now: datetime) -> bool:
        """Insert ``msg`` as ``queued`` (events: -> accepted -> queued) unless it exists.

        Returns True when this call inserted it, False when it was already there (a duplicate
        SQS delivery or a retried ingest).
        """
        try:
            with self._tx() as conn:
                conn.execute(
                    insert(messages).values(
                        id=msg.message_id,
                        tenant_id=msg.tenant_id,
                        to_number=msg.to,
                        sender_id=msg.sender_id,
                        body=msg.body,
                        status=MessageStatus.QUEUED.value,
                        encoding=msg.encoding.value,
                        segments=msg.segments,
                        attempts=0,
                        max_attempts=msg.max_attempts,
                        idempotency_key=msg.idempotency_key,
                        reference=msg.reference,
                        version=1,
                        created_at=msg.created_at,
                        updated_at=now,
                        expires_at=msg.expires_at,
                    )
                )
                conn.execute(
                    insert(message_events),
                    [
                        {
                            "message_id": msg.message_id,
                            "from_status": None,
                            "to_status": MessageStatus.ACCEPTED.value,
                            "at": msg.created_at,
                        },
                        {
                            "message_id": msg.message_id,
                            "from_status": MessageStatus.ACCEPTED.value,
                            "to_status": MessageStatus.QUEUED.value,
                            "at": now,
                        },
                    ],
                )
        except IntegrityError:
            return False
        return True

    def _transition(
        self,
        conn: Connection,
        message_id: str,
        current: MessageStatus,
        target: MessageStatus,
        now: datetime,
        *,
        reason: ReasonCode | None = None,
        detail: str | None = None,
        extra_where: Any = None,
        **values: Any,
    ) -> bool:
        check_transition(current, target)
        where = and_(messages.c.id == message_id, messages.c.status == current.value)
        if extra_where is not None:
            where = and_(where, extra_where)
        if reason is not None:
            values.setdefault("reason_code", reason.value)
            values.setdefault("reason_detail", detail)
        result = conn.execute(
            update(messages)
            .where(where)
            .values(
                status=target.value,
                updated_at=now,
                version=messages.c.version + 1,
                **values,
            )
        )
        if result.rowcount != 1:
            return False
        conn.execute(
            insert(message_events).values(
                message_id=message_id,
                from_status=current.value,
                to_status=target.value,
                reason_code=reason.value if reason else None,
                detail=detail,
                at=now,
            )
        )
        return True

    def transition(
        self,
        message_id: str,
        current: MessageStatus,
        target: MessageStatus,
        now: datetime,
        *,
        reason: ReasonCode | None = None,
        detail: str | None = None,
        **values: Any,
    ) -> bool:
        """Move ``message_id`` from ``current`` to ``target`` if it is still ``current``.

        ``values``: other ``messages`` columns to set in the same statement.
        Returns False (and changes nothing) when the message is not in ``current``.

        Raises:
            InvalidTransition: the lifecycle table forbids ``current -> target``.
        """
        with self._tx() as conn:
            return self._transition(
                conn, message_id, current, target, now, reason=reason, detail=detail, **values
            )

    def release_expired_lease(self, message_id: str, now: datetime) -> bool:
        """``sending -> queued`` when the sender holding the lease is gone (lease expired).

        The in-flight attempt row is closed as ``transient_error`` / ``timeout``, since whether
        the provider got the message is unknown.
        """
        with self._tx() as conn:
            moved = self._transition(
                conn,
                message_id,
                MessageStatus.SENDING,
                MessageStatus.QUEUED,
                now,
                reason=ReasonCode.TIMEOUT,
                detail="sender lease expired before the attempt finished",
                extra_where=messages.c.lease_expires_at <= now,
                lease_expires_at=None,
            )
            if moved:
                self._close_in_flight(conn, message_id, now)
            return moved

    def claim(
        self,
        message_id: str,
        version: int,
        attempt: int,
        provider: str,
        lease_expires_at: datetime,
        now: datetime,
    ) -> bool:
        """``queued -> sending`` for ``attempt`` on ``provider``, recording the attempt row
        (``in_flight``) before any provider call. Optimistic on ``version``: False when another
        sender got there first."""
        with self._tx() as conn:
            moved = self._transition(
                conn,
                message_id,
                MessageStatus.QUEUED,
                MessageStatus.SENDING,
                now,
                extra_where=messages.c.version == version,
                attempts=attempt,
                provider=provider,
                lease_expires_at=lease_expires_at,
            )
            if moved:
                conn.execute(
                    insert(message_attempts).values(
                        message_id=message_id,
                        attempt_number=attempt,
                        provider=provider,
                        outcome="in_flight",
                        started_at=now,
                    )
                )
            return moved

    def finish_attempt(
        self,
        message_id: str,
        attempt: int,
        result: AttemptResult,
        target: MessageStatus,
        now: datetime,
    ) -> bool:
        """Close attempt ``attempt`` with ``result`` and move the message ``sending -> target``
        (``sent``, ``failed`` or back to ``queued``) in one transaction.

        Returns False when the message was no longer ``sending`` (its lease expired and another
        sender took it over); the attempt row is still closed.
        """
        values: dict[str, Any] = {"lease_expires_at": None}
        if target is MessageStatus.SENT:
            values |= {
                "provider_message_id": result.provider_message_id,
                "sent_at": now,
                "reason_code": None,
                "reason_detail": None,
            }
        with self._tx() as conn:
            conn.execute(
                update(message_attempts)
                .where(
                    message_attempts.c.message_id == message_id,
                    message_attempts.c.attempt_number == attempt,
                )
                .values(
                    outcome=result.outcome,
                    reason_code=result.reason_code.value if result.reason_code else None,
                    error_code=result.error_code,
                    error_detail=result.error_detail,
                    latency_ms=result.latency_ms,
                    finished_at=now,
                )
            )
            return self._transition(
                conn,
                message_id,
                MessageStatus.SENDING,
                target,
                now,
                reason=result.reason_code,
                detail=result.error_detail,
                **values,
            )

    def note_problem(self, message_id: str, reason: ReasonCode, detail: str, now: datetime) -> None:
        """Record why a queued message could not be attempted (e.g. no route policy), without
        a status change, so that a later dead letter can say why."""
        with self._tx() as conn:
            conn.execute(
                update(messages)
                .where(messages.c.id == message_id, messages.c.status == "queued")
                .values(reason_code=reason.value, reason_detail=detail, updated_at=now)
            )

    # ---- dead letters --------------------------------------------------------------------

    def record_dead_letter(
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
        fail_message: bool,
    ) -> bool:
        """Store a dead letter, then (when ``fail_message``) move the message to ``failed`` with
        ``reason``: from ``queued``, or from ``sending`` once its lease has ended (a live sender
        is left to finish; its outcome stands).

        Returns False, storing no row, for a dead letter already stored: the same SQS message
        again, or another copy of the same message (unique per message and replay generation,
        so concurrent DLQ invocations cannot both store one). The status move is still tried:
        an earlier copy may have had to leave the message to a live sender.
        """
        stored = False
        try:
            with self._tx() as conn:
                conn.execute(
                    insert(dead_letters).values(
                        sqs_message_id=sqs_message_id,
                        message_id=message_id,
                        tenant_id=tenant_id,
                        receive_count=receive_count,
                        reason=reason.value,
                        detail=detail,
                        raw_payload=raw_payload,
                        created_at=now,
                        generation=0,
                    )
                )
            stored = True
        except IntegrityError:
            pass  # this SQS message, or another copy of this message, is already recorded
        if fail_message and message_id is not None:
            # even for a second copy: the first may have met a live sender that has since
            # put the message back to queued
            self.fail_dead_letter(message_id, reason, detail, now)
        return stored

    def fail_dead_letter(
        self, message_id: str, reason: ReasonCode, detail: str | None, now: datetime
    ) -> MessageStatus | None:
        """Move a dead-lettered message to ``failed`` with ``reason``: from ``queued``, or from
        ``sending`` once its lease has ended (a live sender is left to finish; its outcome
        stands). Returns the status it left, or None when it did not move."""
        with self._tx() as conn:
            return self._fail_dead_letter(conn, message_id, reason, detail, now)

    @staticmethod
    def _close_in_flight(conn: Connection, message_id: str, now: datetime) -> None:
        """Close an attempt whose sender vanished: whether the provider got it is unknown."""
        conn.execute(
            update(message_attempts)
            .where(
                message_attempts.c.message_id == message_id,
                message_attempts.c.outcome == "in_flight",
            )
            .values(
                outcome="transient_error",
                reason_code=ReasonCode.TIMEOUT.value,
                error_detail="sender lease expired before the attempt finished",
                finished_at=now,
            )
        )

    def _fail_dead_letter(
        self,
        conn: Connection,
        message_id: str,
        reason: ReasonCode,
        detail: str | None,
        now: datetime,
    ) -> MessageStatus | None:
        if self._transition(
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
        lease_over = or_(messages.c.lease_expires_at.is_(None), messages.c.lease_expires_at <= now)
        if self._transition(
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
            self._close_in_flight(conn, message_id, now)
            return MessageStatus.SENDING
        return None

    def dead_letters_for(self, message_id: str | None = None) -> list[dict[str, Any]]:
        """Dead-letter rows (all, or one message's), oldest first, as dicts."""
        query = select(dead_letters).order_by(dead_letters.c.id)
        if message_id is not None:
            query = query.where(dead_letters.c.message_id == message_id)
        with self._tx() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    # ---- receipts ------------------------------------------------------------------------

    def add_receipt(
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
        attempt in flight when a pending receipt arrived); returns its id."""
        with self._tx() as conn:
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
            pk = result.inserted_primary_key
            return int(pk[0]) if pk else 0

    def apply_receipt(
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
        with self._tx() as conn:
            moved = self._transition(
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

    def waiting_receipts(
        self,
        message_id: str,
        provider_message_id: str | None,
        provider: str | None = None,
        attempt: int | None = None,
    ) -> list[ReceiptRecord]:
        """Receipts kept for a message that was not ``sent`` yet when they arrived: pending ones
        matched by our id (and, given ``attempt``, kept during that attempt: a receipt about an
        earlier, abandoned attempt says nothing of this one), and unmatched ones carrying its
        provider message id. Signed by ``provider`` (or unsigned) when it is given. Oldest
        first."""
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
        with self._tx() as conn:
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

    def mark_receipt(self, receipt_id: int, outcome: str) -> None:
        """Set a stored receipt's outcome (e.g. ``stale`` once another receipt won)."""
        with self._tx() as conn:
            conn.execute(
                update(receipts)
                .where(receipts.c.id == receipt_id, receipts.c.outcome.in_(OPEN_RECEIPT_OUTCOMES))
                .values(outcome=outcome)
            )


class RoutePolicyRepository:
    """Tenant route policies (``tenant_route_policies``)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def get(self, tenant_id: str) -> RoutePolicy | None:
        """The tenant's parsed policy, or None when it has none.

        Raises:
            InvalidRoutePolicy: the stored row is malformed.
            StorageUnavailable: the database cannot be reached.
        """
        with translate_errors(), self._engine.connect() as conn:
            row = conn.execute(
                select(
                    tenant_route_policies.c.strategy,
                    tenant_route_policies.c.payload,
                    tenant_route_policies.c.version,
                ).where(tenant_route_policies.c.tenant_id == tenant_id)
            ).first()
        if row is None:
            return None
        return parse_policy(tenant_id, row.strategy, row.payload, row.version)

    def put(self, tenant_id: str, strategy: str, payload: dict[str, Any], now: datetime) -> int:
        """Create or replace the tenant's policy (validated first); returns its new version.

        Raises:
            InvalidRoutePolicy: ``strategy``/``payload`` is not a contract shape.
        """
        parse_policy(tenant_id, strategy, payload)
        text = json.dumps(payload, sort_keys=True)
        with translate_errors(), self._engine.begin() as conn:
            result = conn.execute(
                update(tenant_route_policies)
                .where(tenant_route_policies.c.tenant_id == tenant_id)
                .values(
                    strategy=strategy,
                    payload=text,
                    version=tenant_route_policies.c.version + 1,
                    updated_at=now,
                )
            )
            if result.rowcount == 0:
                conn.execute(
                    insert(tenant_route_policies).values(
                        tenant_id=tenant_id,
                        strategy=strategy,
                        payload=text,
                        version=1,
                        updated_at=now,
                    )
                )
            version = conn.execute(
                select(tenant_route_policies.c.version).where(
                    tenant_route_policies.c.tenant_id == tenant_id
                )
            ).scalar_one()
        return int(version)
