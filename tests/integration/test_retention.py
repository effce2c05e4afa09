"""Retention on every SQL dialect (issue 11, item 5): no body or number older than the
redaction period is left (nor an error text that may quote the number), rows older than the
deletion period are gone with everything naming them but their audit trail, which keeps ids,
tenant, states and times until the audit period, each tenant's own periods apply, messages
that may still be sent are never touched, and a run is bounded."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, insert, select

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
from sms_gateway.storage.policies import SqlPolicyStore
from sms_gateway.storage.repository import MessageRepository
from sms_gateway.storage.retention import SqlRetentionStore
from sms_gateway.storage.sql import Database
from sms_gateway.storage.tables import (
    dead_letters,
    message_attempts,
    message_events,
    messages,
    receipts,
)

NOW = datetime.fromisoformat("2026-11-30T12:00:00+00:00")
DAY = timedelta(days=1)


@pytest.fixture
def db(database: str) -> Database:
    engine = make_engine(database)
    yield Database(engine)  # type: ignore[misc]
    engine.dispose()


def _message(
    db: Database,
    n: int,
    age_days: float,
    status: MessageStatus,
    tenant: str = "tenant-1",
    to: str = "+12025550143",
) -> str:
    """A message created ``age_days`` before NOW, moved to ``status`` then, with a receipt
    and (when failed: reason ``dead_letter``) a failed attempt, and a dead letter carrying its
    body; every error text of a failed one quotes its number ``to``."""
    repo = MessageRepository(db)
    created = NOW - age_days * DAY
    quoted = f"provider said: {to} is unreachable"
    msg = QueuedMessage(
        message_id=f"m-{n:03d}",
        tenant_id=tenant,
        to=to,
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
            detail=quoted,
        )
        db.tx(
            lambda conn: conn.execute(
                insert(message_attempts).values(
                    message_id=msg.message_id,
                    attempt_number=1,
                    provider="provider-fail",
                    outcome="transient_error",
                    reason_code="provider_transient",
                    error_detail=quoted,
                    started_at=created,
                )
            )
        )
    elif status is not MessageStatus.QUEUED:
        assert repo.transition(msg.message_id, MessageStatus.QUEUED, status, created)
    repo.receipts.add(
        message_id=msg.message_id,
        provider_message_id=None,
        status="delivered",
        error_code=None,
        delivered_at=None,
        raw=f'{{"to": "{to}", "n": {n}}}',
        outcome="stale",
        now=created,
    )
    if status is MessageStatus.FAILED:
        repo.dead_letters.record(
            sqs_message_id=f"sqs-{n}",
            message_id=msg.message_id,
            tenant_id=tenant,
            receive_count=1,
            reason=ReasonCode.DEAD_LETTER,
            detail=quoted,
            raw_payload=msg.model_dump_json(),
            now=created,
        )
    return msg.message_id


def _service(db: Database, batch_size: int = 500, max_batches: int = 20) -> RetentionService:
    policy = RetentionPolicy(
        30, 400, batch_size=batch_size, max_batches=max_batches, audit_after_days=1000
    )
    return RetentionService(
        SqlRetentionStore(db),
        policy,
        NullMetrics(),
        lambda: NOW,
        tenant_periods=SqlPolicyStore(db).retention_periods,
    )


SCANNED = (messages, message_attempts, message_events, receipts, dead_letters)


def _quoting(db: Database, digits: str) -> dict[str, int]:
    """Per table, the rows where any column's text holds ``digits`` (tables with none are left
    out): a scan of every column, not of the columns retention is known to blank."""

    def unit(conn: object) -> dict[str, int]:
        found: dict[str, int] = {}
        for table in SCANNED:
            rows = conn.execute(select(table)).all()  # type: ignore[attr-defined]
            hits = sum(1 for row in rows if any(digits in str(value) for value in row))
            if hits:
                found[table.name] = hits
        return found

    return db.single(unit)


def _events(db: Database, message_id: str) -> list[tuple[object, ...]]:
    query = (
        select(
            message_events.c.id,
            message_events.c.tenant_id,
            message_events.c.from_status,
            message_events.c.to_status,
            message_events.c.reason_code,
            message_events.c.detail,
            message_events.c.at,
        )
        .where(message_events.c.message_id == message_id)
        .order_by(message_events.c.id)
    )
    return [tuple(row) for row in db.single(lambda conn: conn.execute(query).all())]


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
    assert report.as_dict() == {
        "deleted": 1,
        "redacted": 1,
        "other_rows": 0,
        "audit_deleted": 0,
        "more": False,
    }

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
    for table in (message_attempts, receipts, dead_letters):
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
        "audit_deleted": 0,
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


def test_redaction_blanks_every_text_that_may_quote_the_number(db: Database) -> None:
    """(review finding) A provider's error text may quote the number: the message's reason
    detail, its attempt's error detail, its dead letter's detail and its audit event's detail
    are blanked with the body and the number."""
    redact = _message(db, 1, 31, MessageStatus.FAILED, to="+12025550177")
    _message(db, 2, 29, MessageStatus.FAILED, to="+12025550166")  # within the period
    assert _quoting(db, "2025550177") == {
        "messages": 1,  # to_number and reason_detail
        "message_attempts": 1,
        "message_events": 1,
        "receipts": 1,
        "dead_letters": 1,  # detail and raw payload
    }
    before = _events(db, redact)

    assert _service(db).run().redacted == 1

    assert _quoting(db, "2025550177") == {}
    assert _quoting(db, "2025550166") == {
        "messages": 1,
        "message_attempts": 1,
        "message_events": 1,
        "receipts": 1,
        "dead_letters": 1,
    }
    # the audit trail keeps ids, states, reasons and times; only its detail is gone
    assert _events(db, redact) == [(*row[:5], None, row[6]) for row in before]
    row = MessageRepository(db).get(redact)
    assert row is not None
    assert (row.reason_code, row.reason_detail, row.attempts) == (
        ReasonCode.DEAD_LETTER,
        None,
        0,
    )


def test_deletion_keeps_the_audit_trail_until_the_audit_period(db: Database) -> None:
    """A deleted message's events stay, with its tenant written in and no detail, so the
    audit trail keeps ids, tenant, states and times; they go after the audit period (1000
    days here), counted from each event; events of a message that still exists never go."""
    kept = _message(db, 1, 401, MessageStatus.FAILED, tenant="tenant-9", to="+12025550188")
    expired = _message(db, 2, 1001, MessageStatus.CANCELED, tenant="tenant-9")
    live = _message(db, 3, 1200, MessageStatus.QUEUED)
    before = _events(db, kept)
    assert [row[1] for row in before] == [None, None, None]  # no tenant while it exists
    assert [row[3] for row in before] == ["accepted", "queued", "failed"]

    report = _service(db).run()
    assert (report.deleted, report.audit_deleted) == (2, 3)  # expired's three events

    repo = MessageRepository(db)
    assert repo.get(kept) is None and repo.get(expired) is None
    assert _events(db, kept) == [(row[0], "tenant-9", *row[2:5], None, row[6]) for row in before]
    assert _events(db, expired) == []
    assert len(_events(db, live)) == 2  # its message exists: never expired
    assert _quoting(db, "2025550188") == {}
    for table in (message_attempts, receipts, dead_letters):
        left = db.single(
            lambda conn, t=table: conn.execute(
                select(func.count()).where(t.c.message_id == kept)
            ).scalar_one()
        )
        assert left == 0, table.name
    assert _service(db).run().audit_deleted == 0


def test_each_tenant_has_its_own_periods(db: Database) -> None:
    """tenant-short's policy redacts after 7 days and deletes after 20; tenant-long has no
    retention block, so the stack's 30 and 400 apply to it."""
    policies = SqlPolicyStore(db)
    policies.put(
        "tenant-short",
        "direct",
        {
            "default_provider": "provider-b",
            "retention": {"redact_after_days": 7, "delete_after_days": 20},
        },
        NOW,
    )
    policies.put("tenant-long", "direct", {"default_provider": "provider-b"}, NOW)
    ages = {1: 6, 2: 8, 3: 21, 4: 31}
    short = {
        age: _message(db, n, age, MessageStatus.EXPIRED, "tenant-short") for n, age in ages.items()
    }
    long = {
        age: _message(db, 10 + n, age, MessageStatus.EXPIRED, "tenant-long")
        for n, age in ages.items()
    }

    report = _service(db).run()
    assert (report.deleted, report.redacted) == (2, 2)

    repo = MessageRepository(db)

    def state(message_id: str) -> str:
        row = repo.get(message_id)
        if row is None:
            return "deleted"
        return "redacted" if row.body == "" else "kept"

    assert {age: state(m) for age, m in short.items()} == {
        6: "kept",
        8: "redacted",
        21: "deleted",
        31: "deleted",
    }
    assert {age: state(m) for age, m in long.items()} == {
        6: "kept",
        8: "kept",
        21: "kept",
        31: "redacted",
    }
    assert _events(db, short[21])[0][1] == "tenant-short"  # its audit trail stays
