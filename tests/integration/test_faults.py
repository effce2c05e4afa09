"""Regressions from the adversarial review: each test pins a failure mode that once broke the
exactly-once or never-backwards rules, on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import boto3
import pytest

from sms_gateway import wiring
from sms_gateway.domain.message import QueuedMessage
from sms_gateway.domain.receipts import Receipt
from sms_gateway.domain.states import MessageStatus
from sms_gateway.providers.base import ProviderError, SendRequest, SendResult
from sms_gateway.storage.receipts import SqlReceiptStore
from sms_gateway.storage.repository import AttemptResult
from tests.support import Gateway, sample


def post(gw: Gateway, tenant: str, key: str, body: dict[str, Any]) -> str:
    answer = gw.post_message(tenant, key, body)
    assert answer.status == 202, answer.body
    return str(answer.body["message_id"])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"to": "+14155550100", "body": "a\u0000b"}, "body"),
        ({"to": "+14155550100", "body": "hi", "reference": "r\u0000"}, "reference"),
        ({"to": "+14155550100", "body": "\ud83d"}, "body"),
    ],
)
def test_uncarriable_text_is_422_not_lost(sqlite_gateway: Gateway, body: Any, field: str) -> None:
    answer = sqlite_gateway.post_message("tenant-3", "nul", json.dumps(body))
    assert answer.status == 422
    assert [e["field"] for e in answer.body["errors"]] == [field]
    assert sqlite_gateway.queue_depth() == 0


def test_duplicate_member_and_deep_nesting_are_400(sqlite_gateway: Gateway) -> None:
    dup = sqlite_gateway.post_message(
        "tenant-3", "dup", '{"to":"+14155550100","to":"+14155550101","body":"hi"}'
    )
    assert dup.status == 400
    assert [e["field"] for e in dup.body["errors"]] == ["to"]
    deep = sqlite_gateway.post_message("tenant-3", "deep", "[" * 100_000)
    assert deep.status == 400
    assert sqlite_gateway.queue_depth() == 0


def test_key_reused_after_retention_makes_a_new_message(gateway: Gateway) -> None:
    body = {"to": "+14155550100", "body": "daily reminder"}
    first = post(gateway, "tenant-3", "daily", body)
    gateway.run_until_idle()
    # a day later the idempotency record has expired (TTL): the key is free again
    gateway.clock.advance(86_400)
    table = boto3.resource("dynamodb").Table(wiring.settings().idempotency_table)
    for item in table.scan()["Items"]:
        table.delete_item(Key={"id": item["id"]})
    second = post(gateway, "tenant-3", "daily", body)
    assert second != first
    gateway.run_until_idle()
    for message_id in (first, second):
        assert gateway.get_message("tenant-3", message_id).body["status"] == "sent"
        assert len(gateway.sends(message_id)) == 1


def test_dead_letter_during_a_live_send_leaves_the_sender_to_finish(gateway: Gateway) -> None:
    message_id = post(gateway, "tenant-3", "live", {"to": "+14155550100", "body": "hi"})
    body = gateway.sqs.receive_message(QueueUrl=gateway.send_queue_url, VisibilityTimeout=0)[
        "Messages"
    ][0]["Body"]
    provider = gateway.providers["provider-b"]
    healthy = provider.inner
    seen: dict[str, Any] = {}

    class DeadLetterArrivesMidSend:
        name = "provider-b"

        def send(self, request: SendRequest) -> SendResult:
            # a duplicate copy of this message spent its receives and was redriven meanwhile
            record = sample("dlq-batch.json")["Records"][0]
            record["body"] = body
            seen["dlq"] = gateway.invoke("dlq", {"Records": [record]})
            seen["status"] = gateway.repo.get(request.message_id).status  # type: ignore[union-attr]
            result: SendResult = healthy.send(request)
            return result

    provider.inner = DeadLetterArrivesMidSend()
    gateway.pump("sender")
    assert seen["dlq"] == {"batchItemFailures": []}
    assert seen["status"] is MessageStatus.SENDING  # not failed under the live sender
    view = gateway.get_message("tenant-3", message_id).body
    assert view["status"] == "sent"
    assert view["provider_message_id"] is not None
    assert len(gateway.repo.dead_letters_for(message_id)) == 1


class LongValues:
    """A provider whose ids and error codes exceed our column widths."""

    def __init__(self, fail: bool) -> None:
        self.name = "provider-b"
        self.fail = fail

    def send(self, request: SendRequest) -> SendResult:
        if self.fail:
            from sms_gateway.domain.reasons import ReasonCode

            raise ProviderError(
                ReasonCode.PROVIDER_PERMANENT, "invalid number", error_code="E" * 200
            )
        return SendResult(provider_message_id="p" * 400)


@pytest.mark.parametrize("fail", [False, True], ids=["long-id", "long-error-code"])
def test_long_provider_values_never_cause_a_second_send(gateway: Gateway, fail: bool) -> None:
    gateway.providers["provider-b"].inner = LongValues(fail)
    message_id = post(gateway, "tenant-3", "long", {"to": "+14155550100", "body": "hi"})
    gateway.run_until_idle()
    assert len(gateway.sends(message_id)) == 1
    view = gateway.get_message("tenant-3", message_id).body
    if fail:
        assert (view["status"], view["reason_code"]) == ("failed", "provider_permanent")
        assert gateway.repo.attempts(message_id)[0].error_code == "E" * 64
    else:
        assert view["status"] == "sent"
        assert view["provider_message_id"] == "p" * 255


def test_receipt_racing_the_sent_commit_is_not_left_behind(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    message_id = post(gateway, "tenant-3", "race", {"to": "+14155550100", "body": "hi"})
    sql = wiring.sql()
    repo = sql.repository
    queued = QueuedMessage.model_validate_json(
        gateway.sqs.receive_message(QueueUrl=gateway.send_queue_url)["Messages"][0]["Body"]
    )
    now = gateway.clock()
    repo.record_queued(queued, now)
    record = repo.get(message_id)
    assert record is not None
    assert repo.claim(message_id, record.version, 1, "provider-b", now + timedelta(seconds=30), now)
    original = SqlReceiptStore.add

    def sender_commits_first(self: SqlReceiptStore, **kwargs: Any) -> int:
        if kwargs["outcome"] == "pending":
            # between the receipt's read (sending) and its insert, the sender finishes
            repo.finish_attempt(
                message_id,
                1,
                AttemptResult("sent", 5, provider_message_id="pid-1"),
                MessageStatus.SENT,
                now,
            )
            assert sql.receipts.apply_waiting(message_id, "pid-1", "provider-b") is False
        return original(self, **kwargs)

    monkeypatch.setattr(SqlReceiptStore, "add", sender_commits_first)
    outcome = sql.receipts.handle(Receipt(message_id=message_id, status="delivered"))
    assert outcome.status is MessageStatus.DELIVERED
    assert repo.get(message_id).status is MessageStatus.DELIVERED  # type: ignore[union-attr]


def test_ids_compare_exactly_on_every_dialect(gateway: Gateway) -> None:
    message_id = post(gateway, "tenant-3", "case", {"to": "+14155550100", "body": "hi"})
    gateway.run_until_idle()
    assert gateway.get_message("TENANT-3", message_id).status == 404
    assert gateway.post_receipt({"message_id": message_id.upper()}).status == 404
    assert gateway.get_message("tenant-3", message_id).status == 200


def test_two_dead_letters_of_one_message_are_recorded_once(
    gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    event = sample("dlq-batch.json")
    first = event["Records"][0]
    second = json.loads(json.dumps(first))
    second["messageId"] = "another-copy"
    capsys.readouterr()
    assert gateway.invoke("dlq", {"Records": [first, second]}) == {"batchItemFailures": []}
    message_id = json.loads(first["body"])["message_id"]
    assert len(gateway.repo.dead_letters_for(message_id)) == 1
    metrics = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if '"DeadLetters"' in line
    ]
    assert (
        sum(len(m["DeadLetters"]) if isinstance(m["DeadLetters"], list) else 1 for m in metrics)
        == 1
    )


@pytest.mark.parametrize(
    "payload",
    [{"message_id": "m" * 65}, {"message_id": "a\u0000"}, {"provider_message_id": "p" * 256}],
)
def test_receipt_ids_beyond_the_columns_are_422(gateway: Gateway, payload: dict[str, str]) -> None:
    assert gateway.post_receipt(payload).status == 422


def test_second_dead_letter_fails_a_message_the_first_had_to_leave(gateway: Gateway) -> None:
    """A redriven copy meets a live sender (left alone); that attempt then fails for the last
    time and the sender hands the message over: it must still end failed, not stuck queued."""
    message_id = post(
        gateway, "tenant-2", "stuck", {"to": "+14155550100", "body": "hi", "max_attempts": 1}
    )
    body = gateway.sqs.receive_message(QueueUrl=gateway.send_queue_url, VisibilityTimeout=0)[
        "Messages"
    ][0]["Body"]
    provider = gateway.providers["provider-fail"]
    failing = provider.inner

    class CopyRedrivenMidSend:
        name = "provider-fail"

        def send(self, request: SendRequest) -> SendResult:
            record = sample("dlq-batch.json")["Records"][0]
            record.update(body=body, messageId="dup-copy-redriven")
            assert gateway.invoke("dlq", {"Records": [record]}) == {"batchItemFailures": []}
            result: SendResult = failing.send(request)
            return result

    provider.inner = CopyRedrivenMidSend()
    gateway.run_until_idle()
    view = gateway.get_message("tenant-2", message_id).body
    assert (view["status"], view["reason_code"]) == ("failed", "dead_letter")
    assert len(gateway.repo.dead_letters_for(message_id)) == 1
    assert gateway.queue_depth("send") == gateway.queue_depth("dlq") == 0


class OddValues:
    """A provider answering with values no column can hold as they are."""

    def __init__(self, kind: str) -> None:
        self.name = "provider-b"
        self.kind = kind

    def send(self, request: SendRequest) -> SendResult:
        from sms_gateway.domain.reasons import ReasonCode

        if self.kind == "nul-id":
            return SendResult(provider_message_id="id\u0000x")
        if self.kind == "surrogate-id":
            return SendResult(provider_message_id="id\ud800x")
        raise ProviderError(ReasonCode.PROVIDER_PERMANENT, "x" * 70_000 + "\u0000")


@pytest.mark.parametrize("kind", ["nul-id", "surrogate-id", "huge-detail"])
def test_unstorable_provider_values_never_cause_a_second_send(gateway: Gateway, kind: str) -> None:
    gateway.providers["provider-b"].inner = OddValues(kind)
    message_id = post(gateway, "tenant-3", kind, {"to": "+14155550100", "body": "hi"})
    gateway.run_until_idle()
    assert len(gateway.sends(message_id)) == 1
    view = gateway.get_message("tenant-3", message_id).body
    if kind == "huge-detail":
        assert view["status"] == "failed"
        assert len(view["reason_detail"]) == 4096
    else:
        assert view["status"] == "sent"
        assert view["provider_message_id"] == "id\ufffdx"


def test_waiting_receipt_survives_a_blip_after_sent(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sms_gateway.storage.errors import StorageUnavailable

    provider = gateway.providers["provider-b"]
    healthy = provider.inner

    class ReceiptFirst:
        name = "provider-b"

        def send(self, request: SendRequest) -> SendResult:
            answer = gateway.post_receipt({"message_id": request.message_id})
            assert answer.status == 202
            result: SendResult = healthy.send(request)
            return result

    provider.inner = ReceiptFirst()
    original = SqlReceiptStore.take_waiting
    blips = {"left": 1}

    def blip_once(self: SqlReceiptStore, *args: Any, **kwargs: Any) -> Any:
        if blips["left"]:
            blips["left"] -= 1
            raise StorageUnavailable("database unavailable: blip")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SqlReceiptStore, "take_waiting", blip_once)
    message_id = post(gateway, "tenant-3", "blip", {"to": "+14155550100", "body": "hi"})
    gateway.run_until_idle()
    assert gateway.get_message("tenant-3", message_id).body["status"] == "delivered"
    assert len(gateway.sends(message_id)) == 1


def test_concurrent_dead_letters_of_one_message_store_one_row(gateway: Gateway) -> None:
    import threading

    from sms_gateway.domain.reasons import ReasonCode

    message_id = post(gateway, "tenant-3", "dl-race", {"to": "+14155550100", "body": "hi"})
    body = gateway.sqs.receive_message(QueueUrl=gateway.send_queue_url)["Messages"][0]["Body"]
    gateway.repo.record_queued(QueuedMessage.model_validate_json(body), gateway.clock())
    barrier = threading.Barrier(4)
    stored: list[bool] = []

    def dead_letter(copy: int) -> None:
        barrier.wait()
        stored.append(
            gateway.repo.record_dead_letter(
                sqs_message_id=f"copy-{copy}",
                message_id=message_id,
                tenant_id="tenant-3",
                receive_count=4,
                reason=ReasonCode.DEAD_LETTER,
                detail="redriven",
                raw_payload=body,
                now=gateway.clock(),
                fail_message=True,
            )
        )

    threads = [threading.Thread(target=dead_letter, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(stored) == [False, False, False, True]
    assert len(gateway.repo.dead_letters_for(message_id)) == 1
    assert gateway.get_message("tenant-3", message_id).body["status"] == "failed"
    assert [e[1] for e in gateway.repo.events(message_id)].count("failed") == 1


def test_receipt_about_a_failed_attempt_does_not_judge_the_next(gateway: Gateway) -> None:
    """provider-a fails attempt 1 but reports it undelivered first; attempt 2 is sent: the
    message is sent, not failed by a receipt about another attempt."""
    provider = gateway.providers["provider-a"]
    inner = provider.inner
    early: list[int] = []

    class ReportsThenFails:
        name = "provider-a"

        def send(self, request: SendRequest) -> SendResult:
            if request.attempt == 1:
                answer = gateway.post_receipt(
                    {"message_id": request.message_id, "status": "undelivered"}
                )
                early.append(answer.status)
            result: SendResult = inner.send(request)
            return result

    provider.inner = ReportsThenFails()
    message_id = post(gateway, "tenant-1", "stale-attempt", {"to": "+14155550100", "body": "hi"})
    gateway.run_until_idle()
    assert early == [202]
    view = gateway.get_message("tenant-1", message_id).body
    assert (view["status"], view["attempts"]) == ("sent", 2)
    # a receipt for attempt 2 still applies
    assert gateway.post_receipt({"message_id": message_id}).body["status"] == "delivered"
