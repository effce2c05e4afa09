"""The API contract (issue 8): byte-identical replays, the one error map's answers, client
wording of length errors, receipt times (RFC 3339 with a zone; not before the message) and
receipts with no attempt to report on; state-changing cases on SQLite, PostgreSQL, MariaDB."""

from __future__ import annotations

import json
from datetime import timedelta, timezone

import pytest
from sqlalchemy import func, select

from sms_gateway import wiring
from sms_gateway.providers.base import SendRequest, SendResult
from sms_gateway.storage.engine import make_engine
from sms_gateway.storage.tables import receipts
from tests.support import Gateway, HttpAnswer, api_event, receipt_columns


def receipt_rows(gw: Gateway) -> int:
    engine = make_engine(gw.dsn)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(receipts)).scalar_one())
    finally:
        engine.dispose()


def zulu(at: object) -> str:
    return at.isoformat().replace("+00:00", "Z")  # type: ignore[attr-defined]


def test_replayed_single_answer_is_byte_identical(sqlite_gateway: Gateway) -> None:
    event = api_event(
        "POST",
        "/v1/messages",
        body='{"to": "+1 202 555 0143", "body": "hi", "reference": "order-7"}',
        headers={"X-Tenant-ID": "tenant-1", "Idempotency-Key": "bytes-1"},
    )
    first = sqlite_gateway.invoke("ingest", event)
    again = sqlite_gateway.invoke(
        "ingest", {**event, "body": '{"body":"hi","reference":"order-7","to":"+1 202 555 0143"}'}
    )
    assert first["statusCode"] == again["statusCode"] == 202
    assert again["multiValueHeaders"]["Idempotent-Replayed"] == ["true"]
    assert again["body"] == first["body"]
    # the first answer's member order is the model's, not sorted
    assert list(json.loads(first["body"])) == [
        "message_id",
        "status",
        "to",
        "encoding",
        "segments",
        "created_at",
    ]


def test_reference_over_128_characters_names_the_field_in_plain_words(
    sqlite_gateway: Gateway,
) -> None:
    answer = sqlite_gateway.post_message(
        "tenant-1", "ref", {"to": "+12025550143", "body": "hi", "reference": "r" * 129}
    )
    assert answer.status == 422
    assert answer.body["errors"] == [
        {"field": "reference", "message": "must be at most 128 characters (got 129)"}
    ]
    assert sqlite_gateway.queue_depth() == 0


@pytest.mark.parametrize(
    "delivered_at",
    [
        1770292800,  # epoch seconds
        "1770292800",
        "2026-02-05T12:00:00+0000",  # offset without a colon
        "2026-02-05T12:00:00",  # no zone
        "2026-02-05",
        "2026-02-05T12:00Z",  # no seconds
    ],
)
def test_receipt_time_must_be_rfc3339_with_a_zone(
    sqlite_gateway: Gateway, delivered_at: object
) -> None:
    answer = sqlite_gateway.post_receipt({"message_id": "m-1", "delivered_at": delivered_at})
    assert answer.status == 422, answer.body
    assert [e["field"] for e in answer.body["errors"]] == ["delivered_at"]
    assert "RFC 3339" in answer.body["errors"][0]["message"]
    assert receipt_rows(sqlite_gateway) == 0


def sent_message(gw: Gateway) -> str:
    answer = gw.post_message("tenant-1", "sent-1", {"to": "+12025550143", "body": "hello"})
    assert answer.status == 202
    gw.run_until_idle()
    message_id = str(answer.body["message_id"])
    assert gw.repo.get(message_id).status.value == "sent"  # type: ignore[union-attr]
    return message_id


def test_receipt_before_the_message_was_created_is_422(gateway: Gateway) -> None:
    message_id = sent_message(gateway)
    created = gateway.repo.get(message_id).created_at  # type: ignore[union-attr]
    before = receipt_rows(gateway)
    early = gateway.post_receipt(
        {"message_id": message_id, "delivered_at": zulu(created - timedelta(minutes=6))}
    )
    assert early.status == 422, early.body
    assert early.body["errors"][0]["field"] == "delivered_at"
    assert "before the message was created" in early.body["errors"][0]["message"]
    assert receipt_rows(gateway) == before
    assert gateway.get_message("tenant-1", message_id).body["status"] == "sent"

    # within the clock skew allowed (5 minutes), and with a +hh:mm offset: applied
    skewed = (created - timedelta(minutes=4)).astimezone(timezone(timedelta(hours=2)))
    applied = gateway.post_receipt({"message_id": message_id, "delivered_at": skewed.isoformat()})
    assert applied.status == 200, applied.body
    assert applied.body["outcome"] == "applied"
    view = gateway.get_message("tenant-1", message_id).body
    assert view["status"] == "delivered"
    assert view["delivered_at"] == zulu(created - timedelta(minutes=4))


def test_receipt_for_a_message_with_no_attempt_is_409_and_changes_nothing(
    gateway: Gateway,
) -> None:
    # tenant-1 routes to provider-a, which fails every message's first attempt by design:
    # after one sender poll the message is queued again, waiting for its retry.
    answer = gateway.post_message("tenant-1", "queued-1", {"to": "+12025550143", "body": "hi"})
    message_id = answer.body["message_id"]
    assert gateway.poller("sender").poll_once().received
    record = gateway.repo.get(message_id)
    assert record is not None
    assert (record.status.value, record.attempts) == ("queued", 1)
    before = receipt_rows(gateway)

    for status in ("delivered", "enroute"):
        refused = gateway.post_receipt({"message_id": message_id, "status": status})
        assert refused.status == 409, refused.body
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.body["type"].endswith("#receipt-without-attempt")
        assert "queued" in refused.body["detail"]
    assert receipt_rows(gateway) == before
    after = gateway.repo.get(message_id)
    assert after is not None
    assert (after.status.value, after.attempts, after.receipt_waiting) == ("queued", 1, False)

    gateway.run_until_idle()  # the retry sends it; no receipt was waiting to apply
    final = gateway.repo.get(message_id)
    assert final is not None
    assert final.status.value == "sent"


def test_pending_receipt_of_an_attempt_that_was_not_sent_is_closed_stale(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    provider = gateway.providers["provider-a"]  # tenant-1's: fails each first attempt
    inner = provider.inner
    early: list[HttpAnswer] = []

    class ReportsThenFails:
        name = "provider-a"

        def send(self, request: SendRequest) -> SendResult:
            if request.attempt == 1:  # a receipt while attempt 1 is in flight...
                early.append(
                    gateway.post_receipt({"message_id": request.message_id, "status": "delivered"})
                )
            result: SendResult = inner.send(request)  # ...which then fails (transient)
            return result

    provider.inner = ReportsThenFails()
    answer = gateway.post_message("tenant-1", "stale-1", {"to": "+12025550143", "body": "hi"})
    message_id = answer.body["message_id"]
    gateway.run_until_idle()

    assert [(a.status, a.body["outcome"]) for a in early] == [(202, "pending")]
    assert [a.outcome for a in gateway.repo.attempts(message_id)] == ["transient_error", "sent"]
    # attempt 1 ended unsent: its receipt is closed, visibly, and never applied to attempt 2
    assert receipt_columns(gateway, message_id, "attempt", "outcome") == [(1, "stale")]
    closed = [r for r in caplog.records if r.getMessage().startswith("pending receipt closed")]
    assert [(r.levelname, r.message_id, r.attempt) for r in closed] == [  # type: ignore[attr-defined]
        ("WARNING", message_id, 1)
    ]
    record = gateway.repo.get(message_id)
    assert record is not None
    assert (record.status.value, record.receipt_waiting) == ("sent", False)


def test_a_tenant_listed_as_possible_numbers_gets_possible_numbers_accepted(
    sqlite_gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMS_GATEWAY_POSSIBLE_NUMBER_TENANTS", "tenant-new, tenant-other")
    wiring.reset()
    number = {"to": "+1 034 555 0100", "body": "hi"}  # area code 034: not in the metadata
    relaxed = sqlite_gateway.post_message("tenant-new", "p-1", number)
    assert relaxed.status == 202, relaxed.body
    assert relaxed.body["to"] == "+10345550100"
    strict = sqlite_gateway.post_message("tenant-1", "p-1", number)
    assert strict.status == 422
    assert strict.body["errors"] == [
        {
            "field": "to",
            "message": "area code 034 does not exist: North American area codes start with 2-9",
        }
    ]
    batch = sqlite_gateway.post_batch("tenant-other", "p-2", {"messages": [number, number]})
    assert batch.status == 202, batch.body
    assert (batch.body["accepted"], batch.body["rejected"]) == (2, 0)
    assert sqlite_gateway.queue_depth() == 3
