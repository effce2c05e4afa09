"""The sender with per-provider send rates (issue 6, item 7), on the in-memory stores: the
limiter is asked once per provider per batch before the claim; what it does not grant is
put back delayed, with no attempt spent."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from botocore.exceptions import ClientError, EndpointConnectionError

from sms_gateway.domain.ratelimit import Grant, SendRate
from sms_gateway.domain.reasons import ReasonCode
from sms_gateway.domain.states import MessageStatus
from sms_gateway.providers.base import ProviderError, SendRequest, SendResult
from sms_gateway.providers.simulator import SimulatorProvider
from sms_gateway.services.ratelimit import BucketRateLimiter, InMemoryBucketStore
from sms_gateway.services.sender import (
    OUTAGE_REQUEUES,
    RATE_DEFERRALS,
    SendOutcome,
    SqsRecord,
)
from tests.support import FakeClock
from tests.unit.test_sender_service import T0, World, mid, record, world


@dataclass
class Metrics:
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)

    def add(self, name: str, value: float, unit: str, **dimensions: str) -> None:
        self.counts[(name, dimensions.get("provider", ""))] += int(value)


@dataclass
class Recording:
    """A limiter that wraps another and records its calls (or fails for ``failing``)."""

    inner: object = None
    failing: dict[str, Exception] = field(default_factory=dict)
    acquired: list[tuple[str, list[int]]] = field(default_factory=list)
    held: list[tuple[str, float | None]] = field(default_factory=list)

    def acquire(self, provider: str, segments: Sequence[int]) -> Grant:
        self.acquired.append((provider, list(segments)))
        if provider in self.failing:
            raise self.failing[provider]
        if self.inner is None:
            return Grant(messages=len(segments), segments=sum(segments))
        return self.inner.acquire(provider, segments)  # type: ignore[attr-defined, no-any-return]

    def throttled(self, provider: str, retry_after_seconds: float | None = None) -> None:
        self.held.append((provider, retry_after_seconds))


class RateLimited:
    """A provider that always answers ``rate_limited``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def send(self, request: SendRequest) -> SendResult:
        raise ProviderError(ReasonCode.RATE_LIMITED, "slow down")


def requeued(w: World) -> list[SqsRecord]:
    """The copies the sender put back on the queue, as the records SQS would deliver."""
    return [
        SqsRecord(f"copy-{i}", f"rh-copy-{i}", body, 1, attributes)
        for i, (body, attributes, _delay) in enumerate(w.queue.sent)
    ]


def limited_world(rates: dict[str, SendRate], providers: list[object] | None = None) -> World:
    clock = FakeClock(T0)
    limiter = BucketRateLimiter(InMemoryBucketStore(), rates, clock)
    return world(providers, rate_limiter=limiter, metrics=Metrics(), clock=clock)


def test_over_the_rate_is_deferred_without_an_attempt_and_sent_once_time_passes() -> None:
    w = limited_world({"provider-b": SendRate.of(1, 10)})
    batch = [record("t-ok") for _ in range(15)]
    report = w.sender.process_batch(batch)
    outcomes = [report.outcomes[r.sqs_message_id] for r in batch]
    assert outcomes == [SendOutcome.SENT] * 10 + [SendOutcome.DEFERRED] * 5
    assert report.failures == [] and w.queue.visibility == {}  # no receive spent
    for r in batch[10:]:
        row = w.stores.messages.get(mid(r))
        assert row is not None and (row.status, row.attempts) == (MessageStatus.QUEUED, 0)
        assert w.stores.messages.attempts(mid(r)) == []
    # delayed copies, one per deferred message, by when each would fit (1 segment/s)
    assert [(mid(r), d) for r, (_b, _a, d) in zip(batch[10:], w.queue.sent, strict=True)] == [
        (mid(r), d) for r, d in zip(batch[10:], [1, 2, 3, 4, 5], strict=True)
    ]
    assert {a[RATE_DEFERRALS] for _b, a, _d in w.queue.sent} == {"1"}
    assert w.sender._metrics.counts[("RateLimitDeferred", "provider-b")] == 5  # type: ignore[attr-defined]

    w.clock.advance(5)
    copies = requeued(w)
    w.queue.sent.clear()
    again = w.sender.process_batch(copies)
    assert set(again.outcomes.values()) == {SendOutcome.SENT} and w.queue.sent == []
    for r in batch[10:]:
        assert [a.attempt_number for a in w.stores.messages.attempts(mid(r))] == [1]
        assert w.stores.messages.get(mid(r)).status is MessageStatus.SENT  # type: ignore[union-attr]


def test_a_limited_provider_does_not_slow_another_and_is_asked_once() -> None:
    clock = FakeClock(T0)
    limiter = Recording(
        BucketRateLimiter(InMemoryBucketStore(), {"provider-b": SendRate.of(1, 2)}, clock)
    )
    w = world(
        [SimulatorProvider("provider-b"), SimulatorProvider("other")],
        rate_limiter=limiter,
        clock=clock,
    )
    limited = [record("t-ok") for _ in range(5)]
    free = [record("t-other") for _ in range(5)]
    batch = [r for pair in zip(limited, free, strict=True) for r in pair]
    report = w.sender.process_batch(batch)
    assert [report.outcomes[r.sqs_message_id] for r in free] == [SendOutcome.SENT] * 5
    assert [report.outcomes[r.sqs_message_id] for r in limited] == (
        [SendOutcome.SENT] * 2 + [SendOutcome.DEFERRED] * 3
    )
    assert sorted(limiter.acquired) == [("other", [1] * 5), ("provider-b", [1] * 5)]
    assert limiter.held == []


def test_a_rate_limited_answer_holds_that_provider_once() -> None:
    limiter = Recording()
    w = world([RateLimited("provider-b"), SimulatorProvider("other")], rate_limiter=limiter)
    limited = [record("t-ok") for _ in range(3)]
    free = [record("t-other") for _ in range(2)]
    report = w.sender.process_batch(limited + free)
    assert limiter.held == [("provider-b", None)]
    # the throttled messages were attempts: the normal retry path (rate_limited is retryable)
    assert sorted(report.failures) == sorted(r.sqs_message_id for r in limited)
    for r in limited:
        assert [a.attempt_number for a in w.stores.messages.attempts(mid(r))] == [1]
    assert [report.outcomes[r.sqs_message_id] for r in free] == [SendOutcome.SENT] * 2


def test_a_throttled_provider_gets_nothing_until_the_hold_ends() -> None:
    clock = FakeClock(T0)
    limiter = BucketRateLimiter(
        InMemoryBucketStore(), {"provider-b": SendRate.of(10, 10)}, clock, default_penalty_seconds=3
    )
    limiter.throttled("provider-b")
    w = world(rate_limiter=limiter, clock=clock)
    r = record("t-ok")
    assert w.sender.process_batch([r]).outcomes == {r.sqs_message_id: SendOutcome.DEFERRED}
    ((_body, _attrs, delay),) = w.queue.sent
    assert delay == 4  # the 3 s hold, then one segment at 10/s, rounded up
    assert w.stores.messages.attempts(mid(r)) == []


def test_a_limiter_failure_is_an_outage_for_that_provider_only() -> None:
    denied = ClientError({"Error": {"Code": "ResourceNotFoundException"}}, "UpdateItem")
    for error in (denied, EndpointConnectionError(endpoint_url="https://dynamodb")):
        limiter = Recording(failing={"provider-b": error})
        w = world(
            [SimulatorProvider("provider-b"), SimulatorProvider("other")], rate_limiter=limiter
        )
        down = [record("t-ok") for _ in range(3)]
        free = [record("t-other") for _ in range(2)]
        report = w.sender.process_batch(down + free)
        assert [report.outcomes[r.sqs_message_id] for r in down] == [SendOutcome.REQUEUED] * 3
        assert [report.outcomes[r.sqs_message_id] for r in free] == [SendOutcome.SENT] * 2
        for r in down:
            row = w.stores.messages.get(mid(r))
            assert row is not None and (row.status, row.attempts) == (MessageStatus.QUEUED, 0)
            assert w.stores.messages.attempts(mid(r)) == []
        assert [a[OUTAGE_REQUEUES] for _b, a, _d in w.queue.sent] == ["1"] * 3
        assert [p for p, _s in limiter.acquired].count("provider-b") == 1


def test_a_plan_that_runs_twice_asks_the_limiter_once() -> None:
    """PostgreSQL's intake runs the plan twice (rows assumed new, then those that existed):
    the second run keeps the first answer instead of taking from the bucket again."""
    clock = FakeClock(T0)
    bucket = BucketRateLimiter(InMemoryBucketStore(), {"provider-b": SendRate.of(1, 10)}, clock)
    limiter = Recording(bucket)
    w = world(rate_limiter=limiter, clock=clock)
    inner = w.stores.messages.intake

    def intake(batch, plan, lease_until, now):  # type: ignore[no-untyped-def]
        return inner(batch, lambda rows: (plan(rows), plan(rows))[1], lease_until, now)

    w.sender._store.intake = intake  # type: ignore[method-assign]
    batch = [record("t-ok") for _ in range(12)]
    report = w.sender.process_batch(batch)
    outcomes = [report.outcomes[r.sqs_message_id] for r in batch]
    assert outcomes == [SendOutcome.SENT] * 10 + [SendOutcome.DEFERRED] * 2
    assert limiter.acquired == [("provider-b", [1] * 12)]
