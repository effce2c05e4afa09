"""Per-provider send rates held across every concurrent sender invocation (issue 6, item 7).

A provider's configured rate (segments per second, with a burst) is a token bucket shared
through a :class:`~sms_gateway.services.ports.BucketStore` (DynamoDB in production,
:class:`sms_gateway.adapters.dynamodb_ratelimit.DynamoDbBucketStore`; :class:`InMemoryBucketStore`
in tests and single-process use). The arithmetic is :mod:`sms_gateway.domain.ratelimit`.

How the sender calls it (once per batch, per provider; never per SMS)
--------------------------------------------------------------------
::

    limiter = wiring.rate_limiter()                   # once per container
    # after deciding what the intake would claim and each message's provider (the sender
    # asks inside the intake's plan, *before* the claim, so a message not granted is never
    # claimed: see sms_gateway.services.sender):
    for provider, messages in by_provider(claimed):   # messages in the order to send them
        grant = limiter.acquire(provider, [m.segments for m in messages])
        send_now = messages[: grant.messages]         # these go to the provider (in parallel)
        for message, wait in zip(messages[grant.messages :], grant.ready_in_seconds):
            defer(message, seconds=max(1, math.ceil(wait)))   # not an attempt (see below)
    # after the sends of the batch:
    for provider in {p for p, error in failures if error.reason is ReasonCode.RATE_LIMITED}:
        limiter.throttled(provider, retry_after_seconds=None)  # once per provider per batch

- ``acquire`` costs nothing for a provider without a configured rate (everything granted,
  no I/O). For a limited one it is normally one DynamoDB UpdateItem (up to
  :data:`MAX_ATTEMPTS` when other invocations take from the same bucket at the same moment);
  with nothing available it may need no call at all.
- Deferring a message that was not granted is *not* a send attempt: it must not count
  toward ``max_attempts`` and should not spend the SQS receive count (``maxReceiveCount``)
  either: put it back the way the sender's outage requeue does (a copy with
  ``DelaySeconds`` = the wait, then acknowledge the original; or
  ``ChangeMessageVisibility`` if a receive may be spent). A message must not be left in
  ``sending`` for it: the sender does not claim it at all.
- ``throttled`` is for a provider that answered ``rate_limited``
  (:class:`~sms_gateway.providers.base.ProviderError` ``.reason``): every sender invocation
  then gets no tokens for that provider until the hold ends, and the bucket refills from empty
  afterwards. Other providers are untouched. The throttled message itself follows the
  sender's normal retry path (it was an attempt; ``rate_limited`` is retryable).
- Errors from the store (``botocore.exceptions.ClientError``, connection errors) propagate:
  the sender should treat them like a provider outage for that provider's messages (retry
  later), never as a grant.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

from sms_gateway.domain.ratelimit import (
    NS_PER_SECOND,
    ConditionalTake,
    Grant,
    SendRate,
    grant_after,
    held_until,
    plan_take,
)
from sms_gateway.services.ports import BucketStore, Clock

MAX_ATTEMPTS: Final = 4
"""Conditional writes per :meth:`BucketRateLimiter.acquire` before giving up with no grant."""

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


def epoch_ns(moment: datetime) -> int:
    """An aware datetime as integer epoch nanoseconds (exact: datetimes hold microseconds)."""
    return (moment - _EPOCH) // _MICROSECOND * 1000


class UnlimitedRateLimiter:
    """A :class:`~sms_gateway.services.ports.SendRateLimiter` that grants everything (no rates
    configured): no I/O, no state."""

    def acquire(self, provider: str, segments: Sequence[int]) -> Grant:
        """Grant every message."""
        return Grant(messages=len(segments), segments=sum(segments))

    def throttled(self, provider: str, retry_after_seconds: float | None = None) -> None:
        """Do nothing: an unlimited provider has no bucket to hold."""


class BucketRateLimiter:
    """A :class:`~sms_gateway.services.ports.SendRateLimiter` over a shared
    :class:`~sms_gateway.services.ports.BucketStore`.

    ``rates``: provider -> :class:`SendRate`; a provider not in it is unlimited (granted
    everything, no store call). ``penalties``: provider -> seconds to hold it after a
    ``rate_limited`` answer without a hint (default ``default_penalty_seconds``).
    ``clock``: aware UTC wall clock; the store is shared between machines, so its clocks must
    agree (Lambda's are NTP-synchronised; a clock ahead by ``d`` seconds can take up to
    ``rate * d`` extra segments).

    Each instance remembers the last value it saw per provider (a hint for choosing the form of
    the next conditional write, never trusted for a grant): one instance per container. Safe
    to call from several threads.
    """

    def __init__(
        self,
        store: BucketStore,
        rates: Mapping[str, SendRate],
        clock: Clock,
        *,
        penalties: Mapping[str, float] | None = None,
        default_penalty_seconds: float = 1.0,
    ) -> None:
        self._store = store
        self._rates = dict(rates)
        self._clock = clock
        self._penalties = dict(penalties or {})
        self._default_penalty = default_penalty_seconds
        self._seen: dict[str, int | None] = {}
        self._lock = threading.Lock()

    def limited(self, provider: str) -> bool:
        """Whether ``provider`` has a configured rate."""
        return provider in self._rates

    def acquire(self, provider: str, segments: Sequence[int]) -> Grant:
        """Grant the longest prefix of ``segments`` (segments per message, in send order) that
        ``provider``'s shared bucket holds now, and take it, atomically.

        At most :data:`MAX_ATTEMPTS` conditional writes: a write fails only when another
        invocation changed the bucket since this one last saw it, and the failure returns the
        bucket's current value, so the next attempt plans from the truth. If every attempt
        loses a race, nothing is granted (never more than the bucket holds).

        Raises:
            OversizeMessage: a message has more segments than the provider's burst.
            ValueError: a message with fewer than 1 segment.
            Exception: whatever the store raises (not a failed condition).
        """
        rate = self._rates.get(provider)
        if rate is None or not segments:
            return Grant(messages=len(segments), segments=sum(segments))
        now = epoch_ns(self._clock())
        with self._lock:
            seen = self._seen.get(provider)
        for _ in range(MAX_ATTEMPTS):
            plan = plan_take(rate, seen, now, segments)
            if plan.take is None:
                return grant_after(rate, seen, now, segments, 0)
            applied, seen = self._store.take(provider, plan.take)
            self._remember(provider, seen)
            if applied:
                return grant_after(rate, seen, now, segments, plan.messages)
        return grant_after(rate, seen, now, segments, 0)

    def throttled(self, provider: str, retry_after_seconds: float | None = None) -> None:
        """Hold ``provider`` (no tokens for any sender) for ``retry_after_seconds`` when the
        provider gave a hint (e.g. ``Retry-After``), else its configured penalty; one
        conditional write. A provider without a rate is not held (nothing to hold).

        Raises:
            ValueError: a negative ``retry_after_seconds``.
            Exception: whatever the store raises.
        """
        if provider not in self._rates:
            return
        if retry_after_seconds is not None and retry_after_seconds < 0:
            raise ValueError("retry_after_seconds must be >= 0")
        seconds = (
            retry_after_seconds
            if retry_after_seconds is not None
            else self._penalties.get(provider, self._default_penalty)
        )
        until = epoch_ns(self._clock()) + round(seconds * NS_PER_SECOND)
        self._store.hold(provider, until)
        with self._lock:
            self._seen[provider] = held_until(self._seen.get(provider), until)

    def _remember(self, provider: str, value: int | None) -> None:
        with self._lock:
            self._seen[provider] = value


class InMemoryBucketStore:
    """A :class:`~sms_gateway.services.ports.BucketStore` in one process's memory (tests, and
    the fake the sender's unit tests use): the same conditions as the DynamoDB store, applied
    under a lock."""

    def __init__(self) -> None:
        self.values: dict[str, int] = {}
        self.writes = 0
        self._lock = threading.Lock()

    def take(self, provider: str, take: ConditionalTake) -> tuple[bool, int | None]:
        """Apply ``take`` if it holds on the stored value."""
        with self._lock:
            self.writes += 1
            current = self.values.get(provider)
            if not take.holds(current):
                return False, current
            self.values[provider] = take.apply(current)
            return True, self.values[provider]

    def hold(self, provider: str, until_ns: int) -> None:
        """Stored value = ``max(stored, until_ns)``."""
        with self._lock:
            self.writes += 1
            self.values[provider] = held_until(self.values.get(provider), until_ns)
