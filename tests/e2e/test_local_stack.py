"""End to end over HTTP against ``sms-gateway local``: the seed's three demo flows (DESIGN
section 10), every behaviour of ``cases/behaviours.md`` and a bulk send of 100, all on the
session's one stack (one file: under ``--dist loadfile`` one worker starts it)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta

import boto3
import pytest

from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e


def key(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def test_demo_flows_1_2_3(stack: Stack) -> None:
    one = stack.send("tenant-1", "demo-1", {"to": "+12025550143", "body": "hello"})
    assert one.status == 202, one.body
    two = stack.send(
        "tenant-2", "demo-2", {"to": "+12025550144", "body": "fail", "max_attempts": 2}
    )
    assert two.status == 202, two.body

    sent = stack.wait_status("tenant-1", one.body["message_id"], "sent")
    assert sent["attempts"] == 2
    assert sent["provider"] == "provider-a"

    failed = stack.wait_status("tenant-2", two.body["message_id"], "failed")
    assert failed["reason_code"] == "dead_letter"
    assert failed["attempts"] == 2
    (letter,) = stack.wait_for(
        "dead_letters row", lambda: stack.repo.dead_letters_for(two.body["message_id"])
    )
    assert letter["detail"] == (
        "attempt 2 via provider-fail: provider-fail: simulated transient failure (attempt 2)"
        " [SIM_UNAVAILABLE]"
    )

    # the handset time: a second after the message was created (RFC 3339 with its zone)
    handset = datetime.fromisoformat(one.body["created_at"]) + timedelta(seconds=1)
    handset_text = handset.isoformat().replace("+00:00", "Z")
    receipt = stack.request(
        "POST", "/v1/receipts", {"message_id": one.body["message_id"], "delivered_at": handset_text}
    )
    assert receipt.status == 200
    delivered = stack.status("tenant-1", one.body["message_id"]).body
    assert delivered["status"] == "delivered"
    assert delivered["delivered_at"] == handset_text


def test_behaviour_1_idempotent_replay(stack: Stack) -> None:
    k1 = key("k1")
    first = stack.request(
        "POST",
        "/v1/messages",
        '{"to":"+14155550100","body":"hi"}',
        **{"X-Tenant-ID": "tenant-1", "Idempotency-Key": k1},
    )
    second = stack.request(
        "POST",
        "/v1/messages",
        '{ "body": "hi", "to": "+14155550100" }',
        **{"X-Tenant-ID": "tenant-1", "Idempotency-Key": k1},
    )
    assert first.status == second.status == 202
    assert second.body["message_id"] == first.body["message_id"]
    assert second.headers["idempotent-replayed"] == "true"
    other = stack.request(
        "POST",
        "/v1/messages",
        '{"to":"+14155550101","body":"hi"}',
        **{"X-Tenant-ID": "tenant-1", "Idempotency-Key": k1},
    )
    assert other.status == 422
    assert other.headers["content-type"] == "application/problem+json"
    message_id = first.body["message_id"]
    stack.wait_status("tenant-1", message_id, "sent")
    attempts = stack.repo.attempts(message_id)
    assert [a.outcome for a in attempts].count("sent") == 1
    assert len(attempts) == 2  # provider-a's designed first failure, then the one send


def test_behaviour_2_same_key_two_tenants(stack: Stack) -> None:
    shared = key("shared")
    a = stack.send("tenant-1", shared, {"to": "+14155550100", "body": "hi"})
    b = stack.send("tenant-2", shared, {"to": "+14155550100", "body": "hi"})
    assert a.status == b.status == 202
    assert a.body["message_id"] != b.body["message_id"]


def test_behaviour_3_bad_record_goes_to_the_dlq_alone(stack: Stack) -> None:
    sqs = boto3.client(
        "sqs",
        endpoint_url=stack.moto_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    queue_url = sqs.get_queue_url(QueueName="sms-gateway-send")["QueueUrl"]
    ids = [str(uuid.uuid4()) for _ in range(2)]
    bodies = [
        json.dumps(
            {
                "message_id": mid,
                "tenant_id": "tenant-3",
                "to": "+14155550100",
                "body": "hi",
                "encoding": "GSM-7",
                "segments": 1,
                "max_attempts": 3,
                "idempotency_key": mid,
                "created_at": "2026-11-30T12:00:00Z",
            }
        )
        for mid in ids
    ]
    sqs.send_message_batch(
        QueueUrl=queue_url,
        Entries=[
            {"Id": "m1", "MessageBody": bodies[0]},
            {"Id": "m2", "MessageBody": '{"to":"+1415'},
            {"Id": "m3", "MessageBody": bodies[1]},
        ],
    )
    for mid in ids:
        stack.wait_status("tenant-3", mid, "sent")
        assert len(stack.repo.attempts(mid)) == 1
    letter = stack.wait_for(
        "malformed dead letter",
        lambda: [d for d in stack.repo.dead_letters_for() if d["raw_payload"] == '{"to":"+1415'],
    )[0]
    assert letter["reason"] == "validation_error"
    assert letter["detail"].startswith("malformed payload")


def test_behaviour_4_receipts_only_move_forward(stack: Stack) -> None:
    sent = stack.send("tenant-3", key("b4"), {"to": "+14155550100", "body": "hi"})
    message_id = sent.body["message_id"]
    stack.wait_status("tenant-3", message_id, "sent")
    outcomes = [
        stack.request("POST", "/v1/receipts", {"message_id": message_id, "status": s}).body[
            "outcome"
        ]
        for s in ("delivered", "sent", "delivered", "delivered")
    ]
    assert outcomes == ["applied", "stale", "stale", "stale"]
    assert stack.status("tenant-3", message_id).body["status"] == "delivered"
    events = stack.repo.events(message_id)
    assert [e[:2] for e in events].count(("sent", "delivered")) == 1


def test_behaviour_5_receipt_while_sending(stack: Stack) -> None:
    sent = stack.send("tenant-6", key("b5"), {"to": "+14155550100", "body": "hi"})  # 2 s provider
    message_id = sent.body["message_id"]
    stack.wait_status("tenant-6", message_id, "sending")
    early = stack.request("POST", "/v1/receipts", {"message_id": message_id, "status": "delivered"})
    assert early.status == 202
    assert early.body["outcome"] == "pending"
    final = stack.wait_status("tenant-6", message_id, "delivered")
    assert final["attempts"] == 1


def test_behaviour_6_permanent_error(stack: Stack) -> None:
    sent = stack.send("tenant-5", key("b6"), {"to": "+14155550100", "body": "hi"})
    failed = stack.wait_status("tenant-5", sent.body["message_id"], "failed")
    assert failed["reason_code"] == "provider_permanent"
    assert failed["attempts"] == 1
    assert stack.repo.dead_letters_for(sent.body["message_id"]) == []


def test_problem_json_over_http(stack: Stack) -> None:
    bad = stack.send("tenant-1", key("bad"), {"to": "hello", "body": "hi", "colour": "red"})
    assert bad.status == 422
    assert bad.headers["content-type"] == "application/problem+json"
    assert {e["field"] for e in bad.body["errors"]} == {"to", "colour"}
    missing = stack.request("GET", "/v1/nowhere")
    assert missing.status == 403


# Bulk send: 100 SMS in one request for the instant-provider demo tenant (tenant-3 ->
# provider-b), all 100 sent, each exactly once.
def test_a_bulk_of_100_is_sent_in_full(stack: Stack) -> None:
    key = f"bulk-{uuid.uuid4().hex[:8]}"
    messages = [{"to": f"+1415555{100 + i:04d}", "body": f"bulk {i}"} for i in range(100)]
    headers = {"X-Tenant-ID": "tenant-3", "Idempotency-Key": key}
    answer = stack.request("POST", "/v1/messages/batch", {"messages": messages}, **headers)
    assert answer.status == 202, answer.body
    assert (answer.body["accepted"], answer.body["rejected"]) == (100, 0)
    ids = [item["message_id"] for item in answer.body["messages"]]
    assert len(set(ids)) == 100

    def all_sent() -> bool:
        rows = [stack.repo.get(message_id) for message_id in ids]
        return all(row is not None and row.status == "sent" for row in rows)

    stack.wait_for("100 messages sent", all_sent, timeout=60)
    for message_id, message in zip(ids, messages, strict=True):
        status = stack.status("tenant-3", message_id).body
        assert (status["status"], status["provider"], status["to"]) == (
            "sent",
            "provider-b",
            message["to"],
        )
        assert [a.outcome for a in stack.repo.attempts(message_id)] == ["sent"]

    replay = stack.request("POST", "/v1/messages/batch", {"messages": messages}, **headers)
    assert replay.status == 202
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.body == answer.body


def test_make_smoke_passes_against_the_local_stack(stack: Stack) -> None:
    """``make smoke`` (scripts/demo_flows.py), the check a user runs after ``sam deploy``, run
    against the local stack in its header-tenant mode: every step of the three flows passes."""
    import subprocess
    import sys

    from tests.support import REPO_ROOT

    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "demo_flows.py"), "--url", stack.url,
         "--tenant", "tenant-1", "--fail-tenant", "tenant-2"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1].startswith("smoke: ") and " 0 failed " in done.stdout
