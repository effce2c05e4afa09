"""What the services need from the outside world, as protocols (fakes in unit tests)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from sms_gateway.domain.ratelimit import ConditionalTake, Grant

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
        ...
