"""The stored shapes the stores return and take: plain frozen dataclasses, no driver types."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sms_gateway.domain.decisions import MessageState
from sms_gateway.domain.reasons import ReasonCode
from sms_gateway.domain.states import MessageStatus

# Receipt outcomes that may still change (a decided receipt is never rewritten).
OPEN_RECEIPT_OUTCOMES = ("received", "pending", "unmatched")


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """A ``messages`` row. Times are aware UTC; ``status`` is a :class:`MessageStatus`;
    ``receipt_waiting``: a receipt was parked for it and not yet applied; ``generation``: the
    replay generation it is on (0 until a dead-letter replay)."""

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
    receipt_waiting: bool = False
    generation: int = 0

    @classmethod
    def from_row(cls, row: Any) -> MessageRecord:
        """From a SQLAlchemy row of ``select(messages)``."""
        data = dict(row._mapping)
        data["status"] = MessageStatus(data["status"])
        data["receipt_waiting"] = bool(data.get("receipt_waiting"))
        return cls(**data)

    @property
    def state(self) -> MessageState:
        """What the sender's decisions (:mod:`sms_gateway.domain.decisions`) need of it."""
        return MessageState(
            self.status, self.attempts, self.max_attempts, self.lease_expires_at, self.expires_at
        )


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
    """What a provider call came to.

    ``outcome``: ``sent`` | ``transient_error`` | ``permanent_error`` | ``unknown``;
    ``latency_ms``: wall time
    of the provider call in milliseconds.
    """

    outcome: str
    latency_ms: int
    provider_message_id: str | None = None
    reason_code: ReasonCode | None = None
    error_code: str | None = None
    error_detail: str | None = None


@dataclass(frozen=True, slots=True)
class Claim:
    """Claim ``message_id`` (seen at ``version``) for ``attempt`` on ``provider``."""

    message_id: str
    version: int
    attempt: int
    provider: str


@dataclass(frozen=True, slots=True)
class Finish:
    """Close attempt ``attempt`` of ``message_id`` with ``result`` and move the message
    ``sending -> target`` (``sent``, ``failed`` or ``queued``)."""

    message_id: str
    attempt: int
    result: AttemptResult
    target: MessageStatus


@dataclass(frozen=True, slots=True)
class IntakeResult:
    """What :meth:`MessageStore.intake` found: ``rows`` by message id (as stored after the
    intake), ``new``: ids this call inserted, ``claimed``: ids this call claimed (their row
    in ``rows`` is the one before the claim), ``opted_out``: ids this call moved ``queued ->
    failed`` because their number opted out (never claimed, no provider call)."""

    rows: dict[str, MessageRecord]
    new: frozenset[str]
    claimed: frozenset[str]
    opted_out: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class OptOut:
    """A number that answered "opted out" (STOP) for ``tenant_id`` and ``sender_id`` (None:
    messages sent without one), recorded from ``message_id``'s answer by ``provider``."""

    tenant_id: str
    number: str
    sender_id: str | None
    message_id: str | None = None
    provider: str | None = None


@dataclass(frozen=True, slots=True)
class Finished:
    """What :meth:`MessageStore.finish_many` did: ``moved``: ids that left ``sending`` (the
    others lost their lease meanwhile); ``receipts_waiting``: moved ids with a parked
    receipt, or (when sent) an unmatched receipt carrying their provider message id."""

    moved: frozenset[str]
    receipts_waiting: frozenset[str]


@dataclass(frozen=True, slots=True)
class Settled:
    """What :meth:`ReceiptStore.settle_unknown` did: the message moved from ``previous``
    (``queued`` or ``failed``) to the receipt's target, attempt ``attempt`` (the latest one
    recorded ``unknown``, through ``provider``, started at ``sent_at``) is now ``sent``."""

    previous: MessageStatus
    attempt: int
    provider: str
    sent_at: datetime
