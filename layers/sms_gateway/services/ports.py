"""What the services need from the outside world, as protocols (ports).

Each store port has a SQL implementation (``sms_gateway.storage.{messages,receipts,
dead_letters,policies}``) and an in-memory fake (:mod:`sms_gateway.storage.memory`) that pass
one shared contract suite (``tests/contract``); service rules are unit-tested on the fakes.
Every store method may raise :class:`~sms_gateway.storage.errors.StorageUnavailable`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from sms_gateway.domain.message import QueuedMessage
    from sms_gateway.domain.ratelimit import ConditionalTake, Grant
    from sms_gateway.domain.reasons import ReasonCode
    from sms_gateway.domain.routing import RoutePolicy
    from sms_gateway.domain.states import MessageStatus
    from sms_gateway.storage.records import (
        AttemptRecord,
        Claim,
        Finish,
        Finished,
        IntakeResult,
        MessageRecord,
        OptOut,
        ReceiptRecord,
        Settled,
    )

Clock = Callable[[], datetime]
"""Returns the current time as an aware UTC datetime."""


class MessageQueue(Protocol):
    """The SendQueue and its DeadLetterQueue."""

    def send(self, body: str, attributes: Mapping[str, str], delay_seconds: int = 0) -> str:
        """Put one message on the SendQueue (hidden for ``delay_seconds``, 0..900); returns the
        SQS message id."""
        ...

    def change_visibility(self, receipt_handle: str, seconds: int) -> None:
        """Hide a received SendQueue message for ``seconds`` (0..43200) before redelivery."""
        ...

    def send_to_dead_letter(self, body: str, attributes: Mapping[str, str]) -> str:
        """Put one message on the DeadLetterQueue; returns the SQS message id."""
        ...


class MetricsSink(Protocol):
    """Business metrics (EMF through Powertools in production)."""

    def add(self, name: str, value: float, unit: str, **dimensions: str) -> None:
        """Record ``value`` of metric ``name`` (unit: Count, Milliseconds, Seconds) with
        low-cardinality ``dimensions`` (provider, outcome, status; never a message id)."""
        ...


class NullMetrics:
    """A :class:`MetricsSink` that drops everything."""

    def add(self, name: str, value: float, unit: str, **dimensions: str) -> None:
        """Do nothing."""


class SendRateLimiter(Protocol):
    """Per-provider send rates shared by every sender invocation
    (:mod:`sms_gateway.services.ratelimit`; call it once per provider per batch)."""

    def acquire(self, provider: str, segments: Sequence[int]) -> Grant:
        """Ask to send messages of ``segments`` segments each (in send order) through
        ``provider`` now. The answer grants a prefix of them (``Grant.messages``) and says, for
        the rest, in how many seconds each would fit (``Grant.ready_in_seconds``).

        Raises:
            OversizeMessage: a message has more segments than the provider's burst.
            botocore.exceptions.ClientError: the shared bucket could not be reached.
        """
        ...

    def throttled(self, provider: str, retry_after_seconds: float | None = None) -> None:
        """``provider`` answered ``rate_limited``: hold its sends for ``retry_after_seconds``
        (the provider's own hint) or its configured penalty, for every sender.

        Raises:
            botocore.exceptions.ClientError: the shared bucket could not be reached.
        """
        ...


class BucketStore(Protocol):
    """Where the token buckets live (one per provider), shared by every sender invocation.

    Each call is one atomic conditional write on one provider's bucket (DynamoDB UpdateItem in
    production); values are ``empty_at`` in epoch nanoseconds (:mod:`sms_gateway.domain.ratelimit`).
    """

    def take(self, provider: str, take: ConditionalTake) -> tuple[bool, int | None]:
        """Apply ``take`` if its condition holds on the stored value, atomically.

        Returns ``(True, new value)`` when applied, else ``(False, stored value)`` (``None``:
        no bucket stored yet). Raises the store's own errors for anything but a failed
        condition.
        """
        ...

    def hold(self, provider: str, until_ns: int) -> None:
        """Set the stored value to ``max(stored, until_ns)``, atomically (no tokens before
        ``until_ns``)."""


class MessageStore(Protocol):
    """Messages, their attempts and their audit events (the message aggregate)."""

    def get(self, message_id: str) -> MessageRecord | None:
        """The message, or None."""
        ...

    def get_for_tenant(self, tenant_id: str, message_id: str) -> MessageRecord | None:
        """The message if it is ``tenant_id``'s, else None (unknown and foreign alike)."""
        ...

    def find_by_provider_message_id(
        self, provider_message_id: str, provider: str | None = None
    ) -> MessageRecord | None:
        """The message ``provider`` knows as ``provider_message_id``, or None."""
        ...

    def attempts(self, message_id: str) -> list[AttemptRecord]:
        """Its provider calls, oldest first."""
        ...

    def events(self, message_id: str) -> list[tuple[str | None, str, str | None]]:
        """Its audit trail, ``(from, to, reason_code)`` in order."""
        ...

    def intake(
        self,
        batch: Sequence[QueuedMessage],
        plan: Callable[[dict[str, MessageRecord]], Sequence[Claim]],
        lease_until: datetime,
        now: datetime,
    ) -> IntakeResult:
        """Record new messages (``queued``) and make the claims ``plan`` decides from the
        rows (``queued -> sending``, in-flight attempt rows, events); a claim on a row that
        changed since it was read is not made."""
        ...

    def finish_many(self, finishes: Sequence[Finish], now: datetime) -> Finished:
        """Close attempts and move messages still ``sending`` on them to their target."""
        ...

    def record_opt_outs(self, entries: Sequence[OptOut], now: datetime) -> None:
        """Record numbers that answered ``opted_out``: later intakes move their messages
        ``queued -> failed`` (``opted_out``) without a claim (``IntakeResult.opted_out``)."""
        ...

    def record_queued(self, msg: QueuedMessage, now: datetime) -> bool:
        """Insert one message as ``queued`` unless it exists; whether this call inserted it."""
        ...

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
        """``current -> target`` if still ``current`` (+ event); whether it moved."""
        ...

    def release_expired_lease(self, message_id: str, now: datetime) -> bool:
        """``sending -> queued`` once the lease ended, closing the in-flight attempt."""
        ...

    def note_problem(self, message_id: str, reason: ReasonCode, detail: str, now: datetime) -> None:
        """Record why a queued message could not be attempted (no status change)."""
        ...


class ReceiptStore(Protocol):
    """Delivery receipts (DLRs) as received, and their application to messages."""

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
        """Store a receipt; a ``pending`` one flags its message. Returns its id."""
        ...

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
        """``sent -> target``, marking the receipt applied or stale; whether it moved."""
        ...

    def take_waiting(
        self,
        message_id: str,
        provider_message_id: str | None,
        provider: str | None = None,
        attempt: int | None = None,
    ) -> list[ReceiptRecord]:
        """Clear the message's waiting flag; the receipts kept for it, oldest first."""
        ...

    def mark(self, receipt_id: int, outcome: str) -> None:
        """Set an open receipt's outcome."""
        ...

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
        """Settle a message whose attempt's outcome is unknown with a final receipt: in one
        transaction, only when the message is ``queued`` or ``failed``/``outcome_unknown``
        (:func:`~sms_gateway.domain.receipts.settles_unknown`) and has an attempt recorded
        ``unknown`` (through the provider that signed receipt ``receipt_id``, when one
        did): the latest such attempt becomes ``sent``, the message moves to
        ``target`` with ``provider_message_id`` (when given) and its version bumped (a
        pending claim loses), two events (``<previous> -> sent``, ``sent -> target``), and
        the receipt is marked ``applied``. None (nothing written) otherwise."""
        ...


class DeadLetterStore(Protocol):
    """Dead letters and the move of their messages to ``failed``."""

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
        """Store a dead letter unless this one (or this message's) is stored; whether it was."""
        ...

    def fail_message(
        self, message_id: str, reason: ReasonCode, detail: str | None, now: datetime
    ) -> MessageStatus | None:
        """``queued|sending (lease over) -> failed``; the status it left, or None."""
        ...

    def list_for(self, message_id: str | None = None) -> list[dict[str, Any]]:
        """Dead-letter rows (all or one message's), oldest first."""
        ...


class PolicyStore(Protocol):
    """Tenant route policies."""

    def get(self, tenant_id: str) -> RoutePolicy | None:
        """The tenant's policy or None."""
        ...

    def put(self, tenant_id: str, strategy: str, payload: dict[str, Any], now: datetime) -> int:
        """Create or replace the tenant's policy; its new version."""
        ...
