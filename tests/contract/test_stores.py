"""One contract for every implementation of the store ports: the in-memory fakes and the SQL
stores on SQLite, PostgreSQL and MariaDB answer the same way (issue 6, item 3)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sms_gateway.domain.content import Encoding
from sms_gateway.domain.message import QueuedMessage
from sms_gateway.domain.reasons import ReasonCode
from sms_gateway.domain.routing import sender_id_for
from sms_gateway.domain.states import MessageStatus
from sms_gateway.services.ports import DeadLetterStore, MessageStore, PolicyStore, ReceiptStore
from sms_gateway.storage.dead_letters import SqlDeadLetterStore
from sms_gateway.storage.engine import make_engine
from sms_gateway.storage.memory import MemoryStores
from sms_gateway.storage.messages import SqlMessageStore
from sms_gateway.storage.policies import SqlPolicyStore
from sms_gateway.storage.receipts import SqlReceiptStore
from sms_gateway.storage.records import AttemptResult, Claim, Finish, MessageRecord, OptOut
from sms_gateway.storage.sql import Database
from tests.conftest import _fresh_database

NOW = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
LEASE = NOW + timedelta(seconds=60)


@dataclass
class Stores:
    messages: MessageStore
    receipts: ReceiptStore
    dead_letters: DeadLetterStore
    policies: PolicyStore


@pytest.fixture(params=["memory", "sqlite", "postgresql", "mysql"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    if request.param == "memory":
        fake = MemoryStores()
        yield Stores(fake.messages, fake.receipts, fake.dead_letters, fake.policies)
        return
    template = request.getfixturevalue("sqlite_template")
    engine = make_engine(_fresh_database(str(request.param), tmp_path, template))
    db = Database(engine)
    try:
        yield Stores(
            SqlMessageStore(db), SqlReceiptStore(db), SqlDeadLetterStore(db), SqlPolicyStore(db)
        )
    finally:
        engine.dispose()


def message(n: int, **extra: Any) -> QueuedMessage:
    fields: dict[str, Any] = {
        "message_id": f"m-{n}",
        "tenant_id": "t-1",
        "to": "+14155550100",
        "body": f"body {n}",
        "encoding": Encoding.GSM7,
        "segments": 1,
        "max_attempts": 3,
        "idempotency_key": f"k-{n}",
        "created_at": NOW - timedelta(seconds=5),
    }
    return QueuedMessage(**(fields | extra))


def claim_all(provider: str = "p") -> Any:
    def plan(rows: dict[str, MessageRecord]) -> list[Claim]:
        return [
            Claim(i, r.version, r.attempts + 1, provider)
            for i, r in sorted(rows.items())
            if r.status is MessageStatus.QUEUED
        ]

    return plan


def claim_none(rows: dict[str, MessageRecord]) -> list[Claim]:
    return []


def test_intake_records_new_messages_once_and_claims_what_the_plan_says(stores: Stores) -> None:
    batch = [message(1), message(2)]
    first = stores.messages.intake(batch, claim_all(), LEASE, NOW)
    assert first.new == {"m-1", "m-2"} and first.claimed == {"m-1", "m-2"}
    assert first.rows["m-1"].status is MessageStatus.QUEUED  # the row before the claim
    row = stores.messages.get("m-1")
    assert row is not None
    assert (row.status, row.attempts, row.provider, row.lease_expires_at) == (
        MessageStatus.SENDING,
        1,
        "p",
        LEASE,
    )
    assert stores.messages.events("m-1") == [
        (None, "accepted", None),
        ("accepted", "queued", None),
        ("queued", "sending", None),
    ]
    assert [(a.attempt_number, a.outcome) for a in stores.messages.attempts("m-1")] == [
        (1, "in_flight")
    ]
    again = stores.messages.intake(batch, claim_all(), LEASE, NOW)
    assert again.new == frozenset() and again.claimed == frozenset()
    assert again.rows["m-2"].status is MessageStatus.SENDING
    assert len(stores.messages.events("m-2")) == 3


def test_intake_without_claims_leaves_messages_queued(stores: Stores) -> None:
    taken = stores.messages.intake([message(1)], claim_none, LEASE, NOW)
    assert taken.new == {"m-1"} and taken.claimed == frozenset()
    assert stores.messages.get("m-1").status is MessageStatus.QUEUED  # type: ignore[union-attr]
    assert stores.messages.attempts("m-1") == []


def test_a_claim_on_a_stale_version_is_not_made(stores: Stores) -> None:
    stores.messages.intake([message(1)], claim_none, LEASE, NOW)
    stale = stores.messages.get("m-1")
    assert stale is not None
    stores.messages.note_problem("m-1", ReasonCode.UNKNOWN, "x", NOW)  # no version change
    assert stores.messages.intake([message(1)], claim_all(), LEASE, NOW).claimed == {"m-1"}
    # a second sender that read the row before that claim
    late = stores.messages.intake(
        [message(1)], lambda rows: [Claim("m-1", stale.version, 1, "q")], LEASE, NOW
    )
    assert late.claimed == frozenset()
    assert stores.messages.get("m-1").provider == "p"  # type: ignore[union-attr]


def test_finish_moves_each_message_to_its_target_and_closes_attempts(stores: Stores) -> None:
    stores.messages.intake([message(1), message(2), message(3)], claim_all(), LEASE, NOW)
    later = NOW + timedelta(seconds=1)
    done = stores.messages.finish_many(
        [
            Finish(
                "m-1", 1, AttemptResult("sent", 12, provider_message_id="pid-1"), MessageStatus.SENT
            ),
            Finish(
                "m-2",
                1,
                AttemptResult(
                    "transient_error",
                    7,
                    reason_code=ReasonCode.PROVIDER_TRANSIENT,
                    error_code="E1",
                    error_detail="busy",
                ),
                MessageStatus.QUEUED,
            ),
            Finish(
                "m-3",
                1,
                AttemptResult(
                    "permanent_error",
                    3,
                    reason_code=ReasonCode.PROVIDER_PERMANENT,
                    error_detail="invalid number",
                ),
                MessageStatus.FAILED,
            ),
        ],
        later,
    )
    assert done.moved == {"m-1", "m-2", "m-3"} and done.receipts_waiting == frozenset()
    sent = stores.messages.get("m-1")
    assert sent is not None
    assert (sent.status, sent.provider_message_id, sent.sent_at, sent.lease_expires_at) == (
        MessageStatus.SENT,
        "pid-1",
        later,
        None,
    )
    queued = stores.messages.get("m-2")
    assert queued is not None
    assert (queued.status, queued.reason_code, queued.reason_detail, queued.attempts) == (
        MessageStatus.QUEUED,
        "provider_transient",
        "busy",
        1,
    )
    assert stores.messages.get("m-3").status is MessageStatus.FAILED  # type: ignore[union-attr]
    assert stores.messages.events("m-2")[-1] == ("sending", "queued", "provider_transient")
    assert stores.messages.events("m-1")[-1] == ("sending", "sent", None)
    (attempt,) = stores.messages.attempts("m-2")
    assert (attempt.outcome, attempt.reason_code, attempt.error_code, attempt.latency_ms) == (
        "transient_error",
        "provider_transient",
        "E1",
        7,
    )
    # the retry claims attempt 2
    assert stores.messages.intake([message(2)], claim_all(), LEASE, later).claimed == {"m-2"}
    assert stores.messages.get("m-2").attempts == 2  # type: ignore[union-attr]


def test_finish_after_the_lease_was_taken_over_does_not_move_the_message(stores: Stores) -> None:
    stores.messages.intake([message(1)], claim_all(), LEASE, NOW)
    after_lease = LEASE + timedelta(seconds=1)
    assert stores.messages.release_expired_lease("m-1", after_lease)
    assert stores.messages.attempts("m-1")[0].reason_code == "timeout"
    stores.messages.intake([message(1)], claim_all("q"), after_lease + timedelta(60), after_lease)
    late = stores.messages.finish_many(
        [Finish("m-1", 1, AttemptResult("sent", 5, provider_message_id="old"), MessageStatus.SENT)],
        after_lease,
    )
    assert late.moved == frozenset()
    row = stores.messages.get("m-1")
    assert row is not None
    assert (row.status, row.attempts, row.provider) == (MessageStatus.SENDING, 2, "q")


def test_a_live_lease_is_not_released(stores: Stores) -> None:
    stores.messages.intake([message(1)], claim_all(), LEASE, NOW)
    assert not stores.messages.release_expired_lease("m-1", NOW)
    assert stores.messages.get("m-1").status is MessageStatus.SENDING  # type: ignore[union-attr]


def test_a_parked_receipt_is_reported_by_the_finish_and_taken_once(stores: Stores) -> None:
    stores.messages.intake([message(1), message(2)], claim_all(), LEASE, NOW)
    rid = stores.receipts.add(
        message_id="m-1",
        provider_message_id=None,
        status="delivered",
        error_code=None,
        delivered_at=None,
        raw="{}",
        outcome="pending",
        now=NOW,
        attempt=1,
    )
    assert stores.messages.get("m-1").receipt_waiting  # type: ignore[union-attr]
    done = stores.messages.finish_many(
        [
            Finish("m-1", 1, AttemptResult("sent", 1, provider_message_id="a"), MessageStatus.SENT),
            Finish("m-2", 1, AttemptResult("sent", 1, provider_message_id="b"), MessageStatus.SENT),
        ],
        NOW,
    )
    assert done.receipts_waiting == {"m-1"}
    (waiting,) = stores.receipts.take_waiting("m-1", "a", None, 1)
    assert waiting.id == rid
    assert not stores.messages.get("m-1").receipt_waiting  # type: ignore[union-attr]
    assert stores.receipts.apply(
        "m-1",
        MessageStatus.DELIVERED,
        NOW,
        receipt_id=rid,
        delivered_at=None,
        reason=None,
        detail=None,
    )
    assert stores.receipts.take_waiting("m-1", "a", None, 1) == []


def test_an_unmatched_receipt_is_found_by_the_provider_message_id(stores: Stores) -> None:
    stores.messages.intake([message(1)], claim_all(), LEASE, NOW)
    stores.receipts.add(
        message_id=None,
        provider_message_id="pid-9",
        status="delivered",
        error_code=None,
        delivered_at=None,
        raw="{}",
        outcome="unmatched",
        now=NOW,
    )
    done = stores.messages.finish_many(
        [
            Finish(
                "m-1", 1, AttemptResult("sent", 1, provider_message_id="pid-9"), MessageStatus.SENT
            )
        ],
        NOW,
    )
    assert done.receipts_waiting == {"m-1"}
    assert [r.provider_message_id for r in stores.receipts.take_waiting("m-1", "pid-9")] == [
        "pid-9"
    ]


def test_dead_letters_are_stored_once_per_message_and_fail_it(stores: Stores) -> None:
    stores.messages.record_queued(message(1), NOW)
    assert not stores.messages.record_queued(message(1), NOW)

    def letter(sqs_id: str, message_id: str | None) -> bool:
        return stores.dead_letters.record(
            sqs_message_id=sqs_id,
            message_id=message_id,
            tenant_id="t-1",
            receive_count=3,
            reason=ReasonCode.DEAD_LETTER,
            detail="d",
            raw_payload="{}",
            now=NOW,
        )

    assert letter("s-1", "m-1")
    assert not letter("s-1", "m-1")
    assert not letter("s-2", "m-1")
    assert letter("s-3", None) and letter("s-4", None)  # malformed ones stay distinct
    assert len(stores.dead_letters.list_for("m-1")) == 1
    assert stores.dead_letters.fail_message("m-1", ReasonCode.DEAD_LETTER, "d", NOW) is (
        MessageStatus.QUEUED
    )
    assert stores.dead_letters.fail_message("m-1", ReasonCode.DEAD_LETTER, "d", NOW) is None


def test_a_dead_letter_leaves_a_live_sender_alone(stores: Stores) -> None:
    stores.messages.intake([message(1)], claim_all(), LEASE, NOW)
    assert stores.dead_letters.fail_message("m-1", ReasonCode.DEAD_LETTER, "d", NOW) is None
    after = LEASE + timedelta(seconds=1)
    assert stores.dead_letters.fail_message("m-1", ReasonCode.DEAD_LETTER, "d", after) is (
        MessageStatus.SENDING
    )
    assert stores.messages.attempts("m-1")[0].outcome == "transient_error"


def test_policies_round_trip_with_versions(stores: Stores) -> None:
    assert stores.policies.get("t-1") is None
    assert stores.policies.put("t-1", "direct", {"default_provider": "a"}, NOW) == 1
    assert stores.policies.put("t-1", "failover", {"providers": [{"provider": "b"}]}, NOW) == 2
    policy = stores.policies.get("t-1")
    assert policy is not None and policy.providers == ("b",) and policy.version == 2


def test_a_stored_policy_reads_back_the_sender_ids_it_was_checked_with(stores: Stores) -> None:
    """Review of issue 7: a policy's sender IDs are checked (and normalized) when written,
    and read back without libphonenumber (``check_numbers=False``). Entries that were valid
    but not canonical as written (a trailing space; a national ``0`` after the country code,
    which libphonenumber drops) must read back in the canonical form the ``from`` of a
    message is normalized to at ingest, else the tenant's own sender ID is refused and the
    default goes to the provider as typed."""
    payload = {
        "default_provider": "a",
        "sender_ids": ["ACME ", "+4407911123456"],
        "default_sender_id": "+4407911123456",
    }
    stores.policies.put("t-1", "direct", payload, NOW)
    policy = stores.policies.get("t-1")
    assert policy is not None
    assert policy.sender_ids == ("ACME", "+447911123456")
    assert policy.default_sender_id == "+447911123456"
    # what ingest makes of the tenant's ``from`` (normalize_sender_id) is allowed
    assert sender_id_for(policy, "ACME") == "ACME"
    assert sender_id_for(policy, "+447911123456") == "+447911123456"
    assert sender_id_for(policy, None) == "+447911123456"


# ---- opt-outs (issue 7): the intake fails a message whose number opted out -------------


def test_intake_fails_new_messages_to_an_opted_out_number_unclaimed(stores: Stores) -> None:
    stores.messages.record_opt_outs([OptOut("t-1", "+14155550100", None, "m-0", "p")], NOW)
    other_sender = message(2, sender_id="ACME")  # another sender ID: not opted out
    other_number = message(3, to="+14155550199")
    taken = stores.messages.intake(
        [message(1), other_sender, other_number], claim_all(), LEASE, NOW
    )
    assert taken.new == {"m-1", "m-2", "m-3"}
    assert taken.opted_out == {"m-1"}
    assert taken.claimed == {"m-2", "m-3"}
    assert taken.rows["m-1"].status is MessageStatus.FAILED
    row = stores.messages.get("m-1")
    assert row is not None
    assert (row.status.value, row.reason_code, row.attempts) == ("failed", "opted_out", 0)
    assert stores.messages.events("m-1") == [
        (None, "accepted", None),
        ("accepted", "queued", None),
        ("queued", "failed", "opted_out"),
    ]
    assert stores.messages.attempts("m-1") == []


def test_intake_fails_an_existing_queued_message_once_its_number_opted_out(
    stores: Stores,
) -> None:
    stores.messages.intake([message(1), message(2, tenant_id="t-2")], claim_none, LEASE, NOW)
    stores.messages.record_opt_outs([OptOut("t-1", "+14155550100", None)], NOW)
    # recording the same entry again changes nothing (the first one is kept)
    stores.messages.record_opt_outs([OptOut("t-1", "+14155550100", None, "m-9", "q")], NOW)
    later = NOW + timedelta(seconds=1)  # MySQL tells its own inserts by their timestamp
    taken = stores.messages.intake(
        [message(1), message(2, tenant_id="t-2")], claim_all(), LEASE, later
    )
    assert taken.new == frozenset()
    assert taken.opted_out == {"m-1"}
    assert taken.claimed == {"m-2"}  # the same number for another tenant is sent
    assert stores.messages.events("m-1")[-1] == ("queued", "failed", "opted_out")
    # a later copy of the record finds it failed: nothing more happens
    again = stores.messages.intake([message(1)], claim_all(), LEASE, later + timedelta(1))
    assert again.opted_out == frozenset() and again.claimed == frozenset()
    assert len(stores.messages.events("m-1")) == 3


def _unknown_attempt(stores: Stores, target: MessageStatus, n: int = 1) -> None:
    """m-<n> after one attempt whose outcome is unknown, left ``target`` (queued: a retry
    waits; failed: at_most_once)."""
    stores.messages.intake([message(n)], claim_all(), LEASE, NOW)
    result = AttemptResult("unknown", 10_000, reason_code=ReasonCode.OUTCOME_UNKNOWN)
    stores.messages.finish_many([Finish(f"m-{n}", 1, result, target)], NOW)


def _settle(stores: Stores, message_id: str, target: MessageStatus, pmid: str) -> Any:
    receipt_id = stores.receipts.add(
        message_id=message_id,
        provider_message_id=pmid,
        status="delivered",
        error_code=None,
        delivered_at=None,
        raw="{}",
        outcome="received",
        now=NOW,
    )
    return stores.receipts.settle_unknown(
        message_id,
        target,
        NOW + timedelta(seconds=3),
        receipt_id=receipt_id,
        provider_message_id=pmid,
        delivered_at=None,
        reason=None,
        detail=None,
    )


def test_a_receipt_settles_a_queued_unknown_attempt_and_the_retry_claim_loses(
    stores: Stores,
) -> None:
    _unknown_attempt(stores, MessageStatus.QUEUED)
    before = stores.messages.get("m-1")
    assert before is not None and before.status is MessageStatus.QUEUED
    settled = _settle(stores, "m-1", MessageStatus.DELIVERED, "pm-1")
    assert (settled.previous, settled.attempt, settled.provider, settled.sent_at) == (
        MessageStatus.QUEUED,
        1,
        "p",
        NOW,
    )
    row = stores.messages.get("m-1")
    assert row is not None
    assert (row.status, row.provider_message_id, row.reason_code, row.sent_at) == (
        MessageStatus.DELIVERED,
        "pm-1",
        None,
        NOW,
    )
    assert row.delivered_at == NOW + timedelta(seconds=3)
    assert row.version == before.version + 1
    assert [(a.attempt_number, a.outcome) for a in stores.messages.attempts("m-1")] == [(1, "sent")]
    assert stores.messages.events("m-1")[-2:] == [
        ("queued", "sent", None),
        ("sent", "delivered", None),
    ]
    # the sender that read the queued row before the settle: its claim is not made
    late = stores.messages.intake(
        [message(1)], lambda rows: [Claim("m-1", before.version, 2, "p")], LEASE, NOW
    )
    assert late.claimed == frozenset()
    # settled once: a second receipt finds nothing to settle
    assert _settle(stores, "m-1", MessageStatus.DELIVERED, "pm-1") is None


def test_a_receipt_settles_only_failed_outcome_unknown(stores: Stores) -> None:
    _unknown_attempt(stores, MessageStatus.FAILED, 1)
    settled = _settle(stores, "m-1", MessageStatus.FAILED, "pm-1")
    assert settled is not None and settled.previous is MessageStatus.FAILED
    row = stores.messages.get("m-1")
    assert row is not None and (row.status, row.reason_code) == (MessageStatus.FAILED, None)
    # a failure for another reason (here a dead letter) is not overturned
    _unknown_attempt(stores, MessageStatus.QUEUED, 2)
    stores.dead_letters.fail_message("m-2", ReasonCode.DEAD_LETTER, "spent", NOW)
    assert _settle(stores, "m-2", MessageStatus.DELIVERED, "pm-2") is None
    assert stores.messages.get("m-2").status is MessageStatus.FAILED  # type: ignore[union-attr]
    # a queued message with no unknown attempt has nothing to settle
    stores.messages.intake([message(3)], claim_none, LEASE, NOW)
    assert _settle(stores, "m-3", MessageStatus.DELIVERED, "pm-3") is None
    assert stores.messages.get("m-3").status is MessageStatus.QUEUED  # type: ignore[union-attr]


def test_a_settle_takes_the_unknown_attempt_of_the_provider_that_reported(
    stores: Stores,
) -> None:
    """Review of issue 7: a failover message (``tw`` then ``agg``) whose two attempts both
    went unanswered. A receipt signed by ``tw`` proves ``tw``'s attempt (1), not the latest
    unknown one (``agg``'s, 2): attempt 1 becomes ``sent`` and the message is ``tw``'s under
    the id ``tw`` gave, so ``tw``'s later callbacks (matched by id and provider) find it."""
    unknown = AttemptResult("unknown", 10_000, reason_code=ReasonCode.OUTCOME_UNKNOWN)
    stores.messages.intake([message(1)], claim_all("tw"), LEASE, NOW)
    stores.messages.finish_many([Finish("m-1", 1, unknown, MessageStatus.QUEUED)], NOW)
    stores.messages.intake([message(1)], claim_all("agg"), LEASE, NOW + timedelta(seconds=5))
    stores.messages.finish_many(
        [Finish("m-1", 2, unknown, MessageStatus.QUEUED)], NOW + timedelta(seconds=5)
    )
    assert [(a.attempt_number, a.provider) for a in stores.messages.attempts("m-1")] == [
        (1, "tw"),
        (2, "agg"),
    ]
    receipt_id = stores.receipts.add(
        message_id="m-1",
        provider_message_id="SM1",
        status="delivered",
        error_code=None,
        delivered_at=None,
        raw="{}",
        outcome="received",
        now=NOW + timedelta(seconds=9),
        provider="tw",
    )
    settled = stores.receipts.settle_unknown(
        "m-1",
        MessageStatus.DELIVERED,
        NOW + timedelta(seconds=10),
        receipt_id=receipt_id,
        provider_message_id="SM1",
        delivered_at=None,
        reason=None,
        detail=None,
    )
    assert settled is not None
    assert (settled.attempt, settled.provider, settled.sent_at) == (1, "tw", NOW)
    assert [(a.attempt_number, a.outcome) for a in stores.messages.attempts("m-1")] == [
        (1, "sent"),
        (2, "unknown"),
    ]
    row = stores.messages.get("m-1")
    assert row is not None and (row.status, row.provider, row.provider_message_id) == (
        MessageStatus.DELIVERED,
        "tw",
        "SM1",
    )
    found = stores.messages.find_by_provider_message_id("SM1", "tw")
    assert found is not None and found.id == "m-1"
