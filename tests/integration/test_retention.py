"""Retention on every SQL dialect (issue 11, item 5): no body or number older than the
redaction period is left, rows older than the deletion period are gone with everything naming
them, the audit trail of a redacted message keeps ids, states and times, messages that may
still be sent are never touched, and a run is bounded."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from sms_gateway.domain.content import Encoding
from sms_gateway.domain.message import QueuedMessage
from sms_gateway.domain.operations import ReplaySelection, ReplaySkip
from sms_gateway.domain.reasons import ReasonCode
from sms_gateway.domain.states import MessageStatus
from sms_gateway.services.operations import MessageOperations
from sms_gateway.services.ports import NullMetrics
from sms_gateway.services.retention import RetentionPolicy, RetentionService
from sms_gateway.storage.engine import make_engine
from sms_gateway.storage.operations import SqlOperationsStore
from sms_gateway.storage.repository import MessageRepository
from sms_gateway.storage.retention import SqlRetentionStore
from sms_gateway.storage.sql import Database
from sms_gateway.storage.tables import dead_letters, message_events, messages, receipts

NOW = datetime.fromisoformat("2026-11-30T12:00:00+00:00")
DAY = timedelta(days=1)


@pytest.fixture
def db(database: str) -> Database:
    engine = make_engine(database)
    yield Database(engine)  # type: ignore[misc]
    engine.dispose()


def _message(db: Database, n: int, age_days: float, status: MessageStatus) -> str:
    """A message created ``age_days`` before NOW, moved to ``status`` then, with a receipt
    and (when failed: reason ``dead_letter``) a dead letter carrying its body."""
    repo = MessageRepository(db)
    created = NOW - age_days * DAY
    msg = QueuedMessage(
        message_id=f"m-{n:03d}",
        tenant_id="tenant-1",
        to="+12025550143",
        body=f"secret body {n}",
        encoding=Encoding.GSM7,
        segments=1,
        max_attempts=1,
        idempotency_key=f"k-{n}",
        created_at=created,
    )
    assert repo.record_queued(msg, created)
    if status is MessageStatus.SENDING:
        assert repo.claim(msg.message_id, 1, 1, "provider-b", created + DAY, created)
    elif status is MessageStatus.FAILED:  # dead-lettered: the DLQ function's move
        assert repo.transition(
            msg.message_id,
            MessageStatus.QUEUED,
            status,
            created,
            reason=ReasonCode.DEAD_LETTER,
            detail="x",
        )
    elif status is not MessageStatus.QUEUED:
        assert repo.transition(msg.message_id, MessageStatus.QUEUED, status, created)
    repo.receipts.add(
        message_id=msg.message_id,
        provider_message_id=None,
        status="delivered",
        error_code=None,
        delivered_at=None,
        raw=f'{{"to": "+12025550143", "n": {n}}}',
        outcome="stale",
        now=created,
    )
    if status is MessageStatus.FAILED:
        repo.dead_letters.record(
            sqs_message_id=f"sqs-{n}",
            message_id=msg.message_id,
            tenant_id="tenant-1",
            receive_count=1,
            reason=ReasonCode.DEAD_LETTER,
            detail="x",
            raw_payload=msg.model_dump_json(),
            now=created,
        )
    return msg.message_id


def _service(db: Database, batch_size: int = 500, max_batches: int = 20) -> RetentionService:
    policy = RetentionPolicy(30, 400, batch_size=batch_size, max_batches=max_batches)
    return RetentionService(SqlRetentionStore(db), policy, NullMetrics(), lambda: NOW)


def _bodies_older_than(db: Database, days: int) -> int:
    query = select(func.count()).where(
        messages.c.created_at < NOW - days * DAY, messages.c.body != ""
    )
    return int(db.single(lambda conn: conn.execute(query).scalar_one()))


def test_redacts_then_deletes_and_keeps_the_audit_trail(db: Database) -> None:
    fresh = _message(db, 1, 29, MessageStatus.EXPIRED)
    redact = _message(db, 2, 31, MessageStatus.FAILED)
    gone = _message(db, 3, 401, MessageStatus.CANCELED)
    queued = _message(db, 4, 60, MessageStatus.QUEUED)
    sending = _message(db, 5, 60, MessageStatus.SENDING)
    repo = MessageRepository(db)
    trail_before = repo.events(redact)

    report = _service(db).run()
    assert report.as_dict() == {"deleted": 1, "redacted": 1, "other_rows": 0, "more": False}

    redacted = repo.get(redact)
    assert redacted is not None
    assert (redacted.body, redacted.to_number) == ("", "")
    assert (redacted.id, redacted.status, redacted.created_at) == (
        redact,
        MessageStatus.FAILED,
        NOW - 31 * DAY,
    )
    assert repo.events(redact) == trail_before  # ids, states, times: the audit trail stays
    assert [d["raw_payload"] for d in repo.dead_letters_for(redact)] == [""]
    raws = db.single(lambda conn: conn.execute(select(receipts.c.message_id, receipts.c.raw)).all())
    assert {m: r for m, r in raws if m == redact} == {redact: ""}

    assert repo.get(gone) is None
    for table in (message_events, receipts, dead_letters):
        left = db.single(
            lambda conn, t=table: conn.execute(
                select(func.count()).where(t.c.message_id == gone)
            ).scalar_one()
        )
        assert left == 0, table.name

    for untouched in (fresh, queued, sending):
        row = repo.get(untouched)
        assert row is not None and row.body.startswith("secret body"), untouched
    # what may still be sent keeps its body; everything else older than 30 days has none
    assert _bodies_older_than(db, 30) == 2
    assert _service(db).run().as_dict() == {
        "deleted": 0,
        "redacted": 0,
        "other_rows": 0,
        "more": False,
    }


def test_a_run_is_bounded_and_the_next_run_continues(db: Database) -> None:
    for n in range(5):
        _message(db, n, 45, MessageStatus.EXPIRED)
    first = _service(db, batch_size=2, max_batches=2).run()
    assert (first.redacted, first.more) == (4, True)
    assert _bodies_older_than(db, 30) == 1
    second = _service(db, batch_size=2, max_batches=2).run()
    assert (second.redacted, second.more) == (1, False)
    assert _bodies_older_than(db, 30) == 0


def test_unmatched_receipts_follow_the_same_periods(db: Database) -> None:
    repo = MessageRepository(db)
    for n, age in ((1, 10), (2, 40), (3, 500)):
        repo.receipts.add(
            message_id=None,
            provider_message_id=f"pm-{n}",
            status="delivered",
            error_code=None,
            delivered_at=None,
            raw=f'{{"msisdn": "+12025550143", "n": {n}}}',
            outcome="unmatched",
            now=NOW - age * DAY,
        )
    report = _service(db).run()
    assert report.other_rows == 2  # one deleted, one redacted
    rows = db.single(
        lambda conn: sorted(
            conn.execute(select(receipts.c.provider_message_id, receipts.c.raw)).all()
        )
    )
    assert [(p, r == "") for p, r in rows] == [("pm-1", False), ("pm-2", True)]


def test_a_redacted_message_is_never_replayed(db: Database) -> None:
    message_id = _message(db, 7, 31, MessageStatus.FAILED)
    _service(db).run()

    class Queue:
        def __init__(self) -> None:
            self.sent: list[str] = []

        def send(self, body: str, attributes: object, delay_seconds: int = 0) -> str:
            self.sent.append(body)
            return "id"

    queue = Queue()
    ops = MessageOperations(
        messages=MessageRepository(db),
        operations=SqlOperationsStore(db),
        queue=queue,  # type: ignore[arg-type]
        metrics=NullMetrics(),
        clock=lambda: NOW,
        max_budget=3,
    )
    report = ops.replay(ReplaySelection(message_id=message_id))
    assert list(report.skipped.values()) == [ReplaySkip.REDACTED]
    assert queue.sent == []


@pytest.mark.parametrize(("redact", "delete"), [(0, 10), (30, 29)])
def test_a_policy_that_deletes_before_it_redacts_is_refused(redact: int, delete: int) -> None:
    with pytest.raises(ValueError, match=">="):
        RetentionPolicy(redact, delete)
