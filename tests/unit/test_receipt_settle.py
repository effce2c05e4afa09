"""The receipt service's settle of an unknown outcome, on the in-memory stores: the race in
which a sender claims the retry between the receipt's read and its settle (the receipt is
taken again against the row as it is then: parked, not refused, not lost)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sms_gateway.domain.content import Encoding
from sms_gateway.domain.message import QueuedMessage
from sms_gateway.domain.reasons import ReasonCode
from sms_gateway.domain.states import MessageStatus
from sms_gateway.services.ports import NullMetrics
from sms_gateway.services.receipts import Receipt, ReceiptService
from sms_gateway.storage.memory import MemoryReceiptStore, MemoryStores
from sms_gateway.storage.records import AttemptResult, Claim, Finish, MessageRecord

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
LEASE = NOW + timedelta(seconds=60)


def _message() -> QueuedMessage:
    """Message ``m-1`` of tenant ``t-1``: one GSM-7 segment, 3 attempts."""
    return QueuedMessage(
        message_id="m-1",
        tenant_id="t-1",
        to="+14155550100",
        body="hi",
        encoding=Encoding.GSM7,
        segments=1,
        max_attempts=3,
        idempotency_key="k-1",
        created_at=NOW - timedelta(seconds=5),
    )


def _via(provider: str) -> Callable[[dict[str, MessageRecord]], list[Claim]]:
    """A claim plan sending every row's next attempt through ``provider``."""
    return lambda rows: [Claim(i, r.version, r.attempts + 1, provider) for i, r in rows.items()]


_claim = _via("p")


class ClaimFirst(MemoryReceiptStore):
    """A receipt store whose settle loses to a sender's claim made just before it."""

    def __init__(self, stores: MemoryStores, msg: QueuedMessage) -> None:
        super().__init__(stores.state)
        self.stores = stores
        self.msg = msg
        self.claimed = False

    def settle_unknown(self, message_id: str, *args: Any, **kwargs: Any) -> Any:
        if not self.claimed:  # the retry's claim, once
            self.claimed = True
            self.stores.messages.intake([self.msg], _claim, LEASE, NOW)
        return super().settle_unknown(message_id, *args, **kwargs)


def test_a_settle_that_loses_to_the_retrys_claim_parks_the_receipt() -> None:
    stores = MemoryStores()
    msg = _message()
    stores.messages.intake([msg], _claim, LEASE, NOW)
    unknown = AttemptResult("unknown", 10_000, reason_code=ReasonCode.OUTCOME_UNKNOWN)
    stores.messages.finish_many([Finish("m-1", 1, unknown, MessageStatus.QUEUED)], NOW)

    receipts = ClaimFirst(stores, msg)
    service = ReceiptService(stores.messages, receipts, NullMetrics(), lambda: NOW)
    outcome = service.handle(Receipt("m-1", "pm-1", "delivered"))

    assert (outcome.outcome, outcome.status) == ("pending", MessageStatus.SENDING)
    row = stores.messages.get("m-1")
    assert row is not None and (row.status, row.attempts, row.receipt_waiting) == (
        MessageStatus.SENDING,
        2,
        True,
    )
    stored = sorted(stores.state.receipts.values(), key=lambda r: r["id"])
    assert [(r["outcome"], r["attempt"]) for r in stored] == [("stale", None), ("pending", 2)]
    # the retry then ends unsent (503): the parked receipt settles attempt 1, no third try
    failed = AttemptResult("transient_error", 50, reason_code=ReasonCode.PROVIDER_TRANSIENT)
    stores.messages.finish_many([Finish("m-1", 2, failed, MessageStatus.QUEUED)], NOW)
    assert service.end_waiting("m-1", 2) is True
    row = stores.messages.get("m-1")
    assert row is not None
    assert (row.status, row.provider_message_id) == (MessageStatus.DELIVERED, "pm-1")
    assert [(a.attempt_number, a.outcome) for a in stores.messages.attempts("m-1")] == [
        (1, "sent"),
        (2, "transient_error"),
    ]


def test_a_receipt_from_the_provider_whose_attempt_was_unknown_never_moves_another_send() -> None:
    """Review of issue 7: a failover message whose first attempt (``agg``) went unanswered
    and whose retry ``tw`` sent (``SM1``). ``agg``'s signed receipt is let through (``agg``
    has an unknown attempt on the message) so that it could settle it; once ``tw`` has sent
    it, that receipt reports on ``agg``'s attempt, not on ``tw``'s send. With no provider
    message id to tell them apart it used to be applied: ``agg``'s ``failed`` failed a
    message ``tw`` had sent. It is ``stale`` (as ``apply_waiting`` already makes a parked
    receipt of another provider)."""
    stores = MemoryStores()
    msg = _message()

    stores.messages.intake([msg], _via("agg"), LEASE, NOW)
    unknown = AttemptResult("unknown", 10_000, reason_code=ReasonCode.OUTCOME_UNKNOWN)
    stores.messages.finish_many([Finish("m-1", 1, unknown, MessageStatus.QUEUED)], NOW)
    stores.messages.intake([msg], _via("tw"), LEASE, NOW)
    sent = AttemptResult("sent", 80, provider_message_id="SM1")
    stores.messages.finish_many([Finish("m-1", 2, sent, MessageStatus.SENT)], NOW)

    service = ReceiptService(stores.messages, stores.receipts, NullMetrics(), lambda: NOW)
    outcome = service.handle(Receipt("m-1", None, "failed", error_code="EXPIRED"), "agg")

    assert (outcome.outcome, outcome.status) == ("stale", MessageStatus.SENT)
    row = stores.messages.get("m-1")
    assert row is not None
    assert (row.status, row.provider, row.provider_message_id, row.reason_code) == (
        MessageStatus.SENT,
        "tw",
        "SM1",
        None,
    )
    # tw's own receipt still applies
    assert service.handle(Receipt("m-1", "SM1", "delivered"), "tw").outcome == "applied"
    assert stores.messages.get("m-1").status is MessageStatus.DELIVERED  # type: ignore[union-attr]


def test_end_waiting_tries_every_parked_receipt_until_one_settles() -> None:
    """Review of issue 7: failover ``tw`` (unanswered) -> ``agg`` retry in flight; two final
    receipts are parked: first one signed by ``agg`` (which has no unknown attempt: its retry
    then ends with a 503), then ``tw``'s for its unknown attempt. The retry's end must settle
    with ``tw``'s, not give up after ``agg``'s cannot (the message would be retried: a second
    SMS although ``tw``'s was delivered)."""
    stores = MemoryStores()
    msg = _message()

    stores.messages.intake([msg], _via("tw"), LEASE, NOW)
    unknown = AttemptResult("unknown", 10_000, reason_code=ReasonCode.OUTCOME_UNKNOWN)
    stores.messages.finish_many([Finish("m-1", 1, unknown, MessageStatus.QUEUED)], NOW)
    stores.messages.intake([msg], _via("agg"), LEASE, NOW)  # attempt 2 in flight

    service = ReceiptService(stores.messages, stores.receipts, NullMetrics(), lambda: NOW)
    assert service.handle(Receipt("m-1", "agg-9", "delivered"), "agg").outcome == "pending"
    assert service.handle(Receipt("m-1", "SM1", "delivered"), "tw").outcome == "pending"
    failed = AttemptResult("transient_error", 50, reason_code=ReasonCode.PROVIDER_TRANSIENT)
    stores.messages.finish_many([Finish("m-1", 2, failed, MessageStatus.QUEUED)], NOW)

    assert service.end_waiting("m-1", 2) is True
    row = stores.messages.get("m-1")
    assert row is not None
    assert (row.status, row.provider, row.provider_message_id) == (
        MessageStatus.DELIVERED,
        "tw",
        "SM1",
    )
    assert [(a.attempt_number, a.outcome) for a in stores.messages.attempts("m-1")] == [
        (1, "sent"),
        (2, "transient_error"),
    ]
    outcomes = sorted((r["provider"], r["outcome"]) for r in stores.state.receipts.values())
    assert outcomes == [("agg", "stale"), ("tw", "applied")]
