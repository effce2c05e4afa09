"""The sender service's rules on the in-memory stores (milliseconds; each rule also has its
integration test per dialect in tests/integration)."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from sms_gateway.domain.content import Encoding
from sms_gateway.domain.message import QueuedMessage
from sms_gateway.domain.states import MessageStatus
from sms_gateway.providers.base import ProviderRegistry, SendRequest, SendResult
from sms_gateway.providers.simulator import SimulatorProvider
from sms_gateway.services.ports import MetricsSink, NullMetrics, SendRateLimiter
from sms_gateway.services.receipts import ReceiptService
from sms_gateway.services.routing import CachedPolicyResolver
from sms_gateway.services.sender import (
    OUTAGE_REQUEUES,
    MalformedRecord,
    SenderConfig,
    SenderService,
    SendOutcome,
    SqsRecord,
)
from sms_gateway.storage.memory import MemoryStores
from tests.support import FakeClock

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@dataclass
class Queue:
    visibility: dict[str, int] = field(default_factory=dict)
    sent: list[tuple[str, dict[str, str], int]] = field(default_factory=list)
    dead: list[dict[str, str]] = field(default_factory=list)

    def send(self, body: str, attributes: Mapping[str, str], delay_seconds: int = 0) -> str:
        self.sent.append((body, dict(attributes), delay_seconds))
        return "id"

    def change_visibility(self, receipt_handle: str, seconds: int) -> None:
        self.visibility[receipt_handle] = seconds

    def send_to_dead_letter(self, body: str, attributes: Mapping[str, str]) -> str:
        self.dead.append(dict(attributes))
        return "id"


class Gauge:
    """A provider that takes ``delay`` seconds and records how many calls overlapped.

    With ``together=N``, each call instead waits (up to 10 s) until N calls are in the provider
    at once, so the overlap a test asserts does not depend on how busy the machine is: a sender
    that never has N calls in flight fails with ``BrokenBarrierError``.
    """

    def __init__(self, name: str, delay: float, together: int = 0) -> None:
        self.name = name
        self.delay = delay
        self.active = 0
        self.peak = 0
        self.lock = threading.Lock()
        self.barrier = threading.Barrier(together) if together else None

    def send(self, request: SendRequest) -> SendResult:
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        if self.barrier is not None:
            self.barrier.wait(timeout=10)
        else:
            time.sleep(self.delay)
        with self.lock:
            self.active -= 1
        return SendResult(f"{self.name}-{request.message_id}")


@dataclass
class World:
    stores: MemoryStores
    queue: Queue
    clock: FakeClock
    sender: SenderService


def world(
    providers: list[object] | None = None,
    concurrency: int = 10,
    lease: int = 30,
    *,
    rate_limiter: SendRateLimiter | None = None,
    metrics: MetricsSink | None = None,
    clock: FakeClock | None = None,
) -> World:
    stores = MemoryStores()
    for tenant, provider in {
        "t-ok": "provider-b",
        "t-retry": "provider-a",
        "t-perm": "provider-permanent",
        "t-slow": "slow",
        "t-other": "other",
    }.items():
        stores.policies.put(tenant, "direct", {"default_provider": provider}, T0)
    clock = clock or FakeClock(T0)
    queue = Queue()
    registry = ProviderRegistry(
        providers  # type: ignore[arg-type]
        or [
            SimulatorProvider("provider-a", fail_first=1),
            SimulatorProvider("provider-b"),
            SimulatorProvider("provider-permanent", fail_always="permanent"),
        ]
    )
    sender = SenderService(
        messages=stores.messages,
        policies=CachedPolicyResolver(stores.policies, ttl_seconds=60, max_size=8),
        providers=registry,
        queue=queue,
        receipts=ReceiptService(stores.messages, stores.receipts, NullMetrics(), clock),
        metrics=metrics or NullMetrics(),
        clock=clock,
        rate_limiter=rate_limiter,
        config=SenderConfig(
            retry_base_seconds=30,
            retry_max_seconds=900,
            lease_seconds=lease,
            provider_concurrency=concurrency,
        ),
    )
    return World(stores, queue, clock, sender)


def record(tenant: str, max_attempts: int = 3, message_id: str | None = None) -> SqsRecord:
    message_id = message_id or str(uuid.uuid4())
    msg = QueuedMessage(
        message_id=message_id,
        tenant_id=tenant,
        to="+14155550100",
        body="hi",
        encoding=Encoding.GSM7,
        segments=1,
        max_attempts=max_attempts,
        idempotency_key=message_id,
        created_at=T0,
    )
    return SqsRecord(str(uuid.uuid4()), f"rh-{message_id}", msg.model_dump_json(), 1)


def mid(r: SqsRecord) -> str:
    return QueuedMessage.model_validate_json(r.body).message_id


def test_a_batch_is_sent_once_and_a_redelivery_is_a_duplicate() -> None:
    w = world()
    batch = [record("t-ok") for _ in range(10)]
    report = w.sender.process_batch(batch)
    assert set(report.outcomes.values()) == {SendOutcome.SENT} and report.failures == []
    again = w.sender.process_batch(batch)
    assert set(again.outcomes.values()) == {SendOutcome.DUPLICATE}
    for r in batch:
        assert w.stores.messages.get(mid(r)).status is MessageStatus.SENT  # type: ignore[union-attr]


def test_two_copies_in_one_batch_send_once() -> None:
    w = world()
    first = record("t-ok")
    copy = SqsRecord("copy", first.receipt_handle, first.body, 1)
    report = w.sender.process_batch([first, copy])
    assert report.outcomes == {
        first.sqs_message_id: SendOutcome.SENT,
        "copy": SendOutcome.DUPLICATE,
    }
    assert [a.attempt_number for a in w.stores.messages.attempts(mid(first))] == [1]


def test_transient_failure_keeps_the_record_with_the_backoff() -> None:
    w = world()
    r = record("t-retry")
    report = w.sender.process_batch([r])
    assert report.failures == [r.sqs_message_id]
    assert w.queue.visibility[r.receipt_handle] == 30
    assert w.stores.messages.get(mid(r)).status is MessageStatus.QUEUED  # type: ignore[union-attr]
    assert w.sender.process_batch([r]).outcomes == {r.sqs_message_id: SendOutcome.SENT}


def test_last_transient_failure_hands_the_message_to_the_dlq() -> None:
    w = world([SimulatorProvider("provider-b", fail_always="transient")])
    r = record("t-ok", max_attempts=1)
    assert w.sender.process_batch([r]).outcomes == {r.sqs_message_id: SendOutcome.DEAD_LETTERED}
    (attrs,) = w.queue.dead
    assert attrs["attempts"] == "1" and "simulated transient failure" in attrs["last_error"]


def test_permanent_failure_fails_at_once() -> None:
    w = world()
    r = record("t-perm")
    assert w.sender.process_batch([r]).outcomes == {r.sqs_message_id: SendOutcome.FAILED}
    row = w.stores.messages.get(mid(r))
    assert row is not None and (row.status, row.reason_code) == (
        MessageStatus.FAILED,
        "provider_permanent",
    )


def test_a_live_lease_keeps_the_copy_and_an_expired_one_is_taken_over() -> None:
    w = world()
    r = record("t-ok")
    w.stores.messages.intake(
        [QueuedMessage.model_validate_json(r.body)],
        lambda rows: [
            __import__("sms_gateway.storage.records", fromlist=["Claim"]).Claim(
                mid(r), 1, 1, "provider-b"
            )
        ],
        T0 + timedelta(seconds=30),
        T0,
    )
    report = w.sender.process_batch([r])
    assert report.failures == [r.sqs_message_id] and w.queue.visibility[r.receipt_handle] == 31
    w.clock.advance(31)
    assert w.sender.process_batch([r]).outcomes == {r.sqs_message_id: SendOutcome.SENT}
    assert [(a.attempt_number, a.outcome) for a in w.stores.messages.attempts(mid(r))] == [
        (1, "transient_error"),
        (2, "sent"),
    ]


def test_parallel_sends_a_slow_provider_does_not_serialize_the_batch() -> None:
    slow = Gauge("slow", 0.2, together=10)
    w = world([slow])
    report = w.sender.process_batch([record("t-slow") for _ in range(10)])
    assert len(report.outcomes) == 10
    # All ten calls were in the provider at once (serial sends would peak at 1 and break the
    # barrier); the wall-clock figure is the bench's, not a test's.
    assert slow.peak == 10


def test_provider_calls_are_bounded_per_provider() -> None:
    slow, other = Gauge("slow", 0, together=3), Gauge("other", 0, together=3)
    w = world([slow, other], concurrency=3)
    batch = [record("t-slow") for _ in range(6)] + [record("t-other") for _ in range(6)]
    report = w.sender.process_batch(batch)
    assert len(report.outcomes) == 12
    assert slow.peak == 3 and other.peak == 3


def test_remaining_time_leaves_unclaimed_what_cannot_be_sent_and_written() -> None:
    w = world([Gauge("slow", 0.0)], concurrency=2)
    batch = [record("t-slow") for _ in range(5)]
    # 5 s per send, 1 s write, 2 at a time: 12 s cover two waves (4 records), not the fifth
    report = w.sender.process_batch(batch, remaining_ms=lambda: 12_000)
    assert Counter(report.outcomes.values()) == {SendOutcome.SENT: 4}
    (left,) = report.failures
    assert w.stores.messages.get(
        mid(next(r for r in batch if r.sqs_message_id == left))
    ).status is (  # type: ignore[union-attr]
        MessageStatus.QUEUED
    )
    assert w.sender.process_batch(batch, remaining_ms=lambda: 500).failures == [left]


def test_malformed_records_are_kept_with_visibility_zero() -> None:
    w = world()
    bad = SqsRecord("bad", "rh-bad", '{"to":', 1)
    report = w.sender.process_batch([bad, record("t-ok")])
    assert isinstance(report.kept["bad"], MalformedRecord)
    assert w.queue.visibility["rh-bad"] == 0


def test_an_outage_requeues_fresh_copies_up_to_the_limit() -> None:
    w = world()
    w.stores.state.fail_next = 100
    r = record("t-ok")
    assert w.sender.process_batch([r]).outcomes == {r.sqs_message_id: SendOutcome.REQUEUED}
    ((body, attrs, _delay),) = w.queue.sent
    assert body == r.body and attrs[OUTAGE_REQUEUES] == "1"
    spent = SqsRecord(r.sqs_message_id, r.receipt_handle, r.body, 1, {OUTAGE_REQUEUES: "10"})
    assert w.sender.process_batch([spent]).failures == [r.sqs_message_id]


def test_a_receipt_parked_during_the_send_is_applied_after_it() -> None:
    w = world()

    class Reports:
        name = "provider-b"

        def send(self, request: SendRequest) -> SendResult:
            w.stores.receipts.add(
                message_id=request.message_id,
                provider_message_id=None,
                status="delivered",
                error_code=None,
                delivered_at=None,
                raw="{}",
                outcome="pending",
                now=T0,
                attempt=request.attempt,
            )
            return SendResult("pid")

    plain, reporting = record("t-other"), record("t-ok")
    w.sender._providers = ProviderRegistry([Reports(), Gauge("other", 0)])  # type: ignore[list-item]
    report = w.sender.process_batch([plain, reporting])
    assert set(report.outcomes.values()) == {SendOutcome.SENT}
    assert w.stores.messages.get(mid(reporting)).status is MessageStatus.DELIVERED  # type: ignore[union-attr]
    assert w.stores.messages.get(mid(plain)).status is MessageStatus.SENT  # type: ignore[union-attr]
    # without a parked receipt a batch costs its two writes, whatever its size: no receipts
    # query per SMS (policies cached)
    calls = w.stores.state.calls
    assert len(w.sender.process_batch([record("t-other") for _ in range(5)]).outcomes) == 5
    assert w.stores.state.calls - calls == 2


def test_no_route_keeps_the_message_and_notes_why() -> None:
    w = world()
    r = record("t-nobody")
    report = w.sender.process_batch([r])
    assert report.failures == [r.sqs_message_id]
    row = w.stores.messages.get(mid(r))
    assert row is not None and row.reason_detail == "tenant 't-nobody' has no route policy"
    assert row.attempts == 0


@pytest.mark.parametrize("advance", [0, 61])
def test_expired_validity_is_not_sent(advance: int) -> None:
    w = world()
    message_id = str(uuid.uuid4())
    msg = QueuedMessage(
        message_id=message_id,
        tenant_id="t-ok",
        to="+14155550100",
        body="hi",
        encoding=Encoding.GSM7,
        segments=1,
        max_attempts=3,
        idempotency_key="k",
        created_at=T0,
        expires_at=T0 + timedelta(seconds=60),
    )
    w.clock.advance(advance)
    r = SqsRecord("s", "rh", msg.model_dump_json(), 1)
    expected = SendOutcome.EXPIRED if advance else SendOutcome.SENT
    assert w.sender.process_batch([r]).outcomes == {"s": expected}
