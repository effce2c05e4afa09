"""Receipts (DLRs), status reads and dead letters, on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from sms_gateway.providers.base import SendRequest, SendResult
from tests.support import Gateway, HttpAnswer, sample


def sent_message(gw: Gateway, tenant: str = "tenant-3", key: str = "r1") -> str:
    answer = gw.post_message(tenant, key, {"to": "+14155550100", "body": "hi"})
    assert answer.status == 202
    gw.run_until_idle()
    message_id = str(answer.body["message_id"])
    assert gw.repo.get(message_id).status.value == "sent"  # type: ignore[union-attr]
    return message_id


def receipt_delays(stdout: str) -> list[float]:
    """Values of the ReceiptDelay metric in the EMF blobs Powertools printed."""
    values = []
    for line in stdout.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            blob = json.loads(line)
            if "ReceiptDelay" in blob:
                value = blob["ReceiptDelay"]
                values.extend(value if isinstance(value, list) else [value])
    return values


def test_demo_flow_3_receipt_marks_delivered(
    gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    answer = gateway.post_message("tenant-1", "demo-1", {"to": "+12025550143", "body": "hello"})
    gateway.run_until_idle()
    message_id = answer.body["message_id"]
    sent_at = gateway.repo.get(message_id).sent_at  # type: ignore[union-attr]
    assert sent_at is not None
    delivered_at = sent_at + timedelta(seconds=42)
    capsys.readouterr()
    receipt = gateway.post_receipt(
        {"message_id": message_id, "delivered_at": delivered_at.isoformat().replace("+00:00", "Z")}
    )
    assert receipt.status == 200
    assert receipt.body == {"message_id": message_id, "outcome": "applied", "status": "delivered"}
    assert receipt_delays(capsys.readouterr().out) == [42.0]
    view = gateway.get_message("tenant-1", message_id).body
    assert view["status"] == "delivered"
    assert view["delivered_at"] == delivered_at.isoformat().replace("+00:00", "Z")


def test_behaviour_4_receipts_only_move_forward(
    gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    message_id = sent_message(gateway)
    capsys.readouterr()
    answers = [
        gateway.post_receipt({"message_id": message_id, "status": status})
        for status in ("delivered", "sent", "delivered", "delivered")
    ]
    assert [a.status for a in answers] == [200, 200, 200, 200]
    assert [a.body["outcome"] for a in answers] == ["applied", "stale", "stale", "stale"]
    assert gateway.get_message("tenant-3", message_id).body["status"] == "delivered"
    transitions = [e for e in gateway.repo.events(message_id) if e[:2] == ("sent", "delivered")]
    assert len(transitions) == 1
    assert len(receipt_delays(capsys.readouterr().out)) == 1


def test_behaviour_5_receipt_while_sending_is_applied_after_the_send(gateway: Gateway) -> None:
    provider = gateway.providers["provider-b"]
    healthy = provider.inner
    early: dict[str, HttpAnswer] = {}

    class ReportsBeforeReturning:
        name = "provider-b"

        def send(self, request: SendRequest) -> SendResult:
            # the handset's receipt reaches us before the provider's HTTP answer does
            early["answer"] = gateway.post_receipt(
                {"message_id": request.message_id, "status": "delivered"}
            )
            early["status"] = gateway.repo.get(request.message_id).status  # type: ignore[assignment,union-attr]
            result: SendResult = healthy.send(request)
            return result

    provider.inner = ReportsBeforeReturning()
    answer = gateway.post_message("tenant-3", "early", {"to": "+14155550100", "body": "hi"})
    gateway.run_until_idle()
    message_id = answer.body["message_id"]
    assert early["status"].value == "sending"  # type: ignore[attr-defined]
    assert early["answer"].status == 202
    assert early["answer"].body["outcome"] == "pending"
    view = gateway.get_message("tenant-3", message_id).body
    assert view["status"] == "delivered"
    assert [e[1] for e in gateway.repo.events(message_id)][-2:] == ["sent", "delivered"]


def test_receipt_by_provider_message_id_and_failure_status(gateway: Gateway) -> None:
    message_id = sent_message(gateway)
    provider_id = gateway.get_message("tenant-3", message_id).body["provider_message_id"]
    answer = gateway.post_receipt(
        {"provider_message_id": provider_id, "status": "undelivered", "error_code": "EC_ABSENT"}
    )
    assert answer.status == 200 and answer.body["status"] == "failed"
    view = gateway.get_message("tenant-3", message_id).body
    assert view["reason_code"] == "provider_permanent"
    assert view["reason_detail"] == "receipt: failed (EC_ABSENT)"


def test_unknown_id_is_404_and_kept_until_the_provider_id_appears(gateway: Gateway) -> None:
    missing = gateway.post_receipt({"message_id": "no-such-message"})
    assert missing.status == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.body["type"].endswith("message-not-found")

    # a receipt naming a provider id we have not recorded yet (the send is still running)
    answer = gateway.post_message("tenant-3", "later", {"to": "+14155550100", "body": "hi"})
    message_id = answer.body["message_id"]
    import uuid

    from sms_gateway.providers.simulator import _ID_NAMESPACE

    expected_pid = "provider-b-" + str(uuid.uuid5(_ID_NAMESPACE, f"provider-b/{message_id}/1"))
    early = gateway.post_receipt({"provider_message_id": expected_pid, "status": "delivered"})
    assert early.status == 404
    gateway.run_until_idle()
    view = gateway.get_message("tenant-3", message_id).body
    assert view["provider_message_id"] == expected_pid
    assert view["status"] == "delivered"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"status": "delivered"}, "$"),
        ({"message_id": "x", "status": "teleported"}, "status"),
        ({"message_id": "x", "delivered_at": "yesterday"}, "delivered_at"),
        ({"message_id": "x", "delivered_at": "2026-02-05T12:00:00"}, "delivered_at"),
        ({"message_id": "x", "delivered_at": "9999-12-31T23:59:59-14:00"}, "delivered_at"),
        ({"message_id": "x", "delivered_at": "0001-01-01T00:00:00+14:00"}, "delivered_at"),
        ({"message_id": "x", "extra": 1}, "extra"),
    ],
)
def test_invalid_receipts_are_422(gateway: Gateway, payload: dict[str, Any], field: str) -> None:
    answer = gateway.post_receipt(payload)
    assert answer.status == 422
    assert [e["field"] for e in answer.body["errors"]] == [field]


def test_other_tenants_message_is_404_like_an_unknown_one(gateway: Gateway) -> None:
    message_id = sent_message(gateway)
    foreign = gateway.get_message("tenant-1", message_id)
    unknown = gateway.get_message("tenant-1", "00000000-0000-5000-8000-000000000000")
    assert foreign.status == unknown.status == 404
    assert foreign.body["type"] == unknown.body["type"]
    assert "+1415" not in json.dumps(foreign.body)
    assert set(foreign.body) == set(unknown.body)


def test_status_view_fields(gateway: Gateway) -> None:
    answer = gateway.post_message(
        "tenant-3",
        "view",
        {"to": "+44 7911 123456", "body": "Привет", "from": "ACME", "reference": "order-7"},
    )
    gateway.run_until_idle()
    view = gateway.get_message("tenant-3", answer.body["message_id"]).body
    assert view["message_id"] == answer.body["message_id"]
    assert view["to"] == "+447911123456"
    assert view["from"] == "ACME"
    assert view["encoding"] == "UCS-2"
    assert view["segments"] == 1
    assert view["provider"] == "provider-b"
    assert view["attempts"] == 1
    assert view["max_attempts"] == 3
    assert view["reference"] == "order-7"
    assert view["created_at"] == answer.body["created_at"]
    assert view["sent_at"] is not None and view["delivered_at"] is None


def test_emoji_body_round_trips_through_sql(gateway: Gateway) -> None:
    body = "🐳 café € [x] 你好"
    answer = gateway.post_message("tenant-3", "emoji", {"to": "+14155550100", "body": body})
    gateway.run_until_idle()
    assert gateway.repo.get(answer.body["message_id"]).body == body  # type: ignore[union-attr]
    assert gateway.sends(answer.body["message_id"])[0].body == body


def test_dead_letter_sample_and_duplicate_dead_letter(gateway: Gateway) -> None:
    event = sample("dlq-batch.json")
    assert gateway.invoke("dlq", event) == {"batchItemFailures": []}
    assert gateway.invoke("dlq", event) == {"batchItemFailures": []}  # redelivered: no-op
    letters = gateway.repo.dead_letters_for()
    assert len(letters) == 2
    by_reason = {letter["reason"]: letter for letter in letters}
    assert by_reason["validation_error"]["detail"].startswith("malformed payload")
    failed_id = json.loads(event["Records"][0]["body"])["message_id"]
    assert by_reason["dead_letter"]["message_id"] == failed_id
    record = gateway.repo.get(failed_id)
    assert record is not None and record.status.value == "failed"
    assert record.reason_code == "dead_letter"
    assert record.reason_detail == "redriven after 1 receive(s) without a recorded attempt"


def test_dlq_outage_keeps_dead_letters(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    from sms_gateway import wiring

    monkeypatch.setenv("SMS_GATEWAY_MESSAGE_DSN", "postgresql+pg8000://postgres@127.0.0.1:1/test")
    wiring.reset()
    event = sample("dlq-batch.json")
    answer = gateway.invoke("dlq", event)
    assert sorted(f["itemIdentifier"] for f in answer["batchItemFailures"]) == sorted(
        r["messageId"] for r in event["Records"]
    )
    receipt = gateway.post_receipt({"message_id": "x"})
    assert receipt.status == 503
