"""Per-provider send rates: the token bucket arithmetic, pure (no clock, no I/O).

A provider's rate is ``rate`` message parts per second (SMS segments, DESIGN section 6) with a
``burst``: a token bucket that holds at most ``burst`` segments and refills at ``rate`` segments
per second; sending a message of n segments takes n tokens. Over any window of ``d`` seconds a
provider is therefore granted at most ``burst + rate * d`` segments.

The bucket is stored as a single number, the instant at which it is (or was, or will be)
empty, ``empty_at_ns`` (epoch nanoseconds): the "theoretical arrival time" form of the same
bucket, the virtual-scheduling Generic Cell Rate Algorithm of ITU-T I.371, which is equivalent
to the token bucket and needs no separate refill timestamp:

    tokens(t) = min(burst, (t - empty_at) / interval)     (none while t < empty_at)
    interval  = 1 / rate seconds per segment, rounded *up* to a whole nanosecond

Taking ``s`` segments at ``t`` moves ``empty_at`` to ``max(empty_at, t - burst * interval) +
s * interval``. Because the bucket is one number, a take is one conditional arithmetic update
that needs no version check (:class:`ConditionalTake`): when the bucket is not full,
``SET empty_at = empty_at + cost IF t - tolerance < empty_at <= t - cost``, which concurrent
takers can apply in any order without losing each other's writes (DynamoDB evaluates the
condition and applies the update atomically on one item). Integer nanoseconds keep every
comparison exact; rounding the interval up can only grant less, never more.

A "hold" (a provider answered ``rate_limited``) moves ``empty_at`` to the end of the hold: no
tokens until then, and then a refill from empty at the configured rate, so the provider is not
hit by a full burst the moment the hold ends.

Sources: token bucket (RFC 2697 section 1, "token bucket" metering); ITU-T I.371 GCRA virtual
scheduling; Tony Finch, "GCRA: leaky buckets without the buckets" (2018).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from itertools import accumulate

NS_PER_SECOND = 1_000_000_000


class OversizeMessage(ValueError):
    """A message has more segments than its provider's burst: it could never be granted."""


@dataclass(frozen=True, slots=True)
class SendRate:
    """A provider's configured send rate.

    ``segments_per_second``: the sustained rate (> 0), exact; ``burst``: the bucket's size in
    segments (>= 1, and at least the longest message a provider is given).
    """

    segments_per_second: Fraction
    burst: int

    def __post_init__(self) -> None:
        if self.segments_per_second <= 0:
            raise ValueError("segments_per_second must be > 0")
        if self.burst < 1:
            raise ValueError("burst must be >= 1")

    @classmethod
    def of(cls, rate: float | int | str | Decimal, burst: int) -> SendRate:
        """``SendRate.of(10, 20)``: 10 segments/s, burst 20. A float is read by its decimal
        spelling (``0.1`` is exactly one tenth, not the nearest binary fraction).

        Raises:
            ValueError: ``rate`` <= 0 or ``burst`` < 1.
        """
        exact = Fraction(Decimal(str(rate))) if isinstance(rate, float) else Fraction(rate)
        return cls(exact, burst)

    @property
    def interval_ns(self) -> int:
        """Nanoseconds per segment: ``ceil(1e9 / rate)``, at least 1."""
        return max(1, math.ceil(NS_PER_SECOND / self.segments_per_second))

    @property
    def tolerance_ns(self) -> int:
        """Nanoseconds a full bucket is ahead of empty: ``burst * interval_ns``."""
        return self.burst * self.interval_ns


def available(rate: SendRate, empty_at_ns: int | None, now_ns: int) -> int:
    """Whole segments in the bucket at ``now_ns`` (0..burst). ``None``: a bucket never used,
    which is full."""
    if empty_at_ns is None:
        return rate.burst
    if now_ns <= empty_at_ns:
        return 0
    return min(rate.burst, (now_ns - empty_at_ns) // rate.interval_ns)


@dataclass(frozen=True, slots=True)
class ConditionalTake:
    """One atomic take of ``cost_ns`` (``segments * interval``) from a stored bucket.

    Two forms, chosen from the state the caller last saw; the condition makes a wrong guess
    fail instead of granting too much:

    - ``from_full``: the bucket is full (or absent). Condition: ``empty_at`` absent or
      ``<= full_threshold_ns``; new value: ``full_threshold_ns + cost_ns`` (a full bucket's
      ``empty_at`` is clamped to ``now - tolerance`` before the take).
    - otherwise: condition ``full_threshold_ns < empty_at <= now_ns - cost_ns`` (not full, and
      at least ``segments`` tokens); new value: ``empty_at + cost_ns``, computed by the store
      from the value it holds, so concurrent takes commute.
    """

    segments: int
    cost_ns: int
    now_ns: int
    full_threshold_ns: int
    from_full: bool

    @property
    def latest_empty_at_ns(self) -> int:
        """The latest ``empty_at`` that still holds ``segments`` tokens at ``now_ns``."""
        return self.now_ns - self.cost_ns

    def holds(self, empty_at_ns: int | None) -> bool:
        """Whether the condition holds on the stored value ``empty_at_ns``."""
        if self.from_full:
            return empty_at_ns is None or empty_at_ns <= self.full_threshold_ns
        return (
            empty_at_ns is not None
            and self.full_threshold_ns < empty_at_ns <= self.latest_empty_at_ns
        )

    def apply(self, empty_at_ns: int | None) -> int:
        """The stored value after the take (call only when :meth:`holds`)."""
        if self.from_full or empty_at_ns is None:
            return self.full_threshold_ns + self.cost_ns
        return empty_at_ns + self.cost_ns


@dataclass(frozen=True, slots=True)
class TakePlan:
    """What to ask of a bucket for a list of messages: the first ``messages`` of them
    (``segments`` in all) fit. ``take`` is ``None`` when nothing fits (no write is needed)."""

    messages: int
    segments: int
    take: ConditionalTake | None


def _check_parts(rate: SendRate, parts: Sequence[int]) -> None:
    for part in parts:
        if part < 1:
            raise ValueError(f"a message has at least 1 segment, got {part}")
        if part > rate.burst:
            raise OversizeMessage(
                f"a message of {part} segments can never fit a burst of {rate.burst}"
            )


def plan_take(
    rate: SendRate, empty_at_ns: int | None, now_ns: int, parts: Sequence[int]
) -> TakePlan:
    """The longest prefix of ``parts`` (segments per message, in send order) that the bucket
    holds at ``now_ns``, assuming its stored value is ``empty_at_ns``, and the conditional take
    that grants it.

    A message's segments are never split: a grant covers whole messages, in order.

    Raises:
        ValueError: a part < 1.
        OversizeMessage: a part > ``rate.burst``.
    """
    _check_parts(rate, parts)
    room = available(rate, empty_at_ns, now_ns)
    messages = 0
    segments = 0
    for total in accumulate(parts):
        if total > room:
            break
        messages += 1
        segments = total
    if segments == 0:
        return TakePlan(0, 0, None)
    threshold = now_ns - rate.tolerance_ns
    from_full = empty_at_ns is None or empty_at_ns <= threshold
    take = ConditionalTake(
        segments=segments,
        cost_ns=segments * rate.interval_ns,
        now_ns=now_ns,
        full_threshold_ns=threshold,
        from_full=from_full,
    )
    return TakePlan(messages, segments, take)


def ready_in_ns(
    rate: SendRate, empty_at_ns: int | None, now_ns: int, waiting: Sequence[int]
) -> tuple[int, ...]:
    """For each message in ``waiting`` (segments, in send order) after a take left the bucket at
    ``empty_at_ns``: nanoseconds from ``now_ns`` until it fits, if the ones before it are taken
    as soon as they fit and nobody else takes. Exact: at ``now + ready`` the message fits, one
    nanosecond earlier it does not (when it does not fit now). 0 for a message that fits now.

    Raises:
        ValueError: a part < 1.
        OversizeMessage: a part > ``rate.burst``.
    """
    _check_parts(rate, waiting)
    start = now_ns - rate.tolerance_ns if empty_at_ns is None else empty_at_ns
    # Taking each waiting message as soon as it fits moves empty_at by its cost each time
    # (a message never exceeds the burst, so the bucket is never full at that moment).
    base = max(start, now_ns - rate.tolerance_ns)
    return tuple(max(0, base + total * rate.interval_ns - now_ns) for total in accumulate(waiting))


def held_until(empty_at_ns: int | None, until_ns: int) -> int:
    """The stored value after a hold until ``until_ns``: empty until then (never shortens an
    existing hold or a bucket already in debt further out)."""
    return until_ns if empty_at_ns is None else max(empty_at_ns, until_ns)


@dataclass(frozen=True, slots=True)
class Grant:
    """The answer to a request for a list of messages (segments each, in send order).

    ``messages``: the first ``messages`` of them may be sent now; ``segments``: their segments.
    ``ready_in_ns``: for each message not granted, in order, nanoseconds until it would fit if
    nobody else took (see :func:`ready_in_ns`); empty when everything was granted.
    """

    messages: int
    segments: int
    ready_in_ns: tuple[int, ...] = ()

    @property
    def complete(self) -> bool:
        """Whether every message asked for was granted."""
        return not self.ready_in_ns

    @property
    def retry_after_seconds(self) -> float:
        """Seconds until the first message not granted would fit; 0.0 when all were granted."""
        return self.ready_in_ns[0] / NS_PER_SECOND if self.ready_in_ns else 0.0

    @property
    def ready_in_seconds(self) -> tuple[float, ...]:
        """:attr:`ready_in_ns` in seconds."""
        return tuple(ns / NS_PER_SECOND for ns in self.ready_in_ns)


def grant_after(
    rate: SendRate,
    empty_at_ns: int | None,
    now_ns: int,
    parts: Sequence[int],
    granted_messages: int,
) -> Grant:
    """The :class:`Grant` for ``parts`` when the first ``granted_messages`` were granted and the
    bucket now stands at ``empty_at_ns``."""
    waiting = parts[granted_messages:]
    return Grant(
        messages=granted_messages,
        segments=sum(parts[:granted_messages]),
        ready_in_ns=ready_in_ns(rate, empty_at_ns, now_ns, waiting) if waiting else (),
    )
