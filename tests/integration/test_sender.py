"""SenderFunction + DlqFunction in-process under moto, on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import pytest

from sms_gateway import wiring
from sms_gateway.local.pollers import sqs_event_record
from tests.support import FakeLambdaContext, Gateway, sample

FLOW_1 = {"to": "+12025550143", "body": "hello"}
FLOW_2 = {"to": "+12025550144", "body": "fail", "max_attempts": 2}


def post(gw: Gateway, tenant: str, key: str, body: dict[str, Any]) -> str:
    answer = gw.post_message(tenant, key, body)
    assert answer.status == 202, answer.body
    return str(answer.body["message_id"])


def test_demo_flow_1_sent_on_attempt_2_via_provider_a(gateway: Gateway) -> None:
    message_id = post(gateway, "tenant-1", "demo-1", FLOW_1)
    gateway.run_until_idle()
    view = gateway.get_message("tenant-1", message_id).body
    assert view["status"] == "sent"
    assert view["attempts"] == 2
    assert view["provider"] == "provider-a"
    assert view["provider_message_id"].startswith("provider-a-")
    assert view["reason_code"] is None
    assert [
        (a.attempt_number, a.provider, a.outcome) for a in gateway.repo.attempts(message_id)
    ] == [
        (1, "provider-a", "transient_error"),
        (2, "provider-a", "sent"),
    ]
    assert [(e[0], e[1]) for e in gateway.repo.events(message_id)] == [
        (None, "accepted"),
        ("accepted", "queued"),
        ("queued", "sending"),
        ("sending", "queued"),
        ("queued", "sending"),
        ("sending", "sent"),
    ]
    assert gateway.queue_depth("send") == gateway.queue_depth("dlq") == 0


def test_demo_flow_2_failed_dead_letter_with_last_provider_error(gateway: Gateway) -> None:
    message_id = post(gateway, "tenant-2", "demo-2", FLOW_2)
    gateway.run_until_idle()
    view = gateway.get_message("tenant-2", message_id).body
    assert view["status"] == "failed"
    assert view["reason_code"] == "dead_letter"
    assert view["attempts"] == 2
    assert view["reason_detail"] == (
        "attempt 2 via provider-fail: provider-fail: simulated transient failure (attempt 2)"
        " [SIM_UNAVAILABLE]"
    )
    (letter,) = gateway.repo.dead_letters_for(message_id)
    assert letter["reason"] == "dead_letter"
    assert letter["detail"] == view["reason_detail"]
    assert json.loads(letter["raw_payload"])["message_id"] == message_id
    assert letter["tenant_id"] == "tenant-2"
    assert [c.attempt for c in gateway.sends(message_id)] == [1, 2]
    assert gateway.repo.events(message_id)[-1] == ("queued", "failed", "dead_letter")
    assert gateway.queue_depth("send") == gateway.queue_depth("dlq") == 0


def _batch_with_ids(ids: list[str]) -> dict[str, Any]:
    event = copy.deepcopy(sample("sender-batch.json"))
    for record, new_id in zip(event["Records"], ids, strict=True):
        record["messageId"] = new_id
    return event


def test_behaviour_3_one_bad_record_does_not_fail_its_batch(gateway: Gateway) -> None:
    event = _batch_with_ids(["m1", "m2", "m3"])
    answer = gateway.invoke("sender", event)
    assert answer == {"batchItemFailures": [{"itemIdentifier": "m2"}]}
    for record in (event["Records"][0], event["Records"][2]):
        message_id = json.loads(record["body"])["message_id"]
        assert len(gateway.sends(message_id)) == 1
        assert gateway.repo.get(message_id).status.value == "sent"  # type: ignore[union-attr]
    # the same batch again (a duplicate delivery): nothing is sent twice
    assert gateway.invoke("sender", event) == {"batchItemFailures": [{"itemIdentifier": "m2"}]}
    assert sum(len(p.calls) for p in gateway.providers.values()) == 2


def test_behaviour_3_over_sqs_the_bad_record_ends_in_the_dlq(gateway: Gateway) -> None:
    records = sample("sender-batch.json")["Records"]
    for record in records:
        gateway.sqs.send_message(QueueUrl=gateway.send_queue_url, MessageBody=record["body"])
    gateway.run_until_idle()
    for record in (records[0], records[2]):
        message_id = json.loads(record["body"])["message_id"]
        assert len(gateway.sends(message_id)) == 1
    (letter,) = gateway.repo.dead_letters_for()
    assert letter["message_id"] is None
    assert letter["reason"] == "validation_error"
    assert letter["detail"].startswith("malformed payload")
    assert letter["raw_payload"] == '{"to":"+1415'
    assert letter["receive_count"] >= 1
    assert gateway.queue_depth("send") == gateway.queue_depth("dlq") == 0


def test_behaviour_6_permanent_error_fails_at_once(gateway: Gateway) -> None:
    message_id = post(gateway, "tenant-5", "perm", {"to": "+14155550100", "body": "hi"})
    outcomes = gateway.pump("sender")
    assert len(outcomes) == 1 and outcomes[0].retained == []
    view = gateway.get_message("tenant-5", message_id).body
    assert view["status"] == "failed"
    assert view["reason_code"] == "provider_permanent"
    assert view["attempts"] == 1
    assert len(gateway.sends(message_id)) == 1
    assert gateway.queue_depth("send") == gateway.queue_depth("dlq") == 0
    assert gateway.repo.dead_letters_for() == []


def test_failover_goes_to_the_next_provider(gateway: Gateway) -> None:
    message_id = post(gateway, "tenant-4", "fo", {"to": "+14155550100", "body": "hi"})
    gateway.run_until_idle()
    assert [(a.provider, a.outcome) for a in gateway.repo.attempts(message_id)] == [
        ("provider-fail", "transient_error"),
        ("provider-b", "sent"),
    ]
    assert gateway.get_message("tenant-4", message_id).body["status"] == "sent"


def test_duplicate_sqs_copies_send_once(gateway: Gateway) -> None:
    message_id = post(gateway, "tenant-3", "dup", {"to": "+14155550100", "body": "hi"})
    body = gateway.sqs.receive_message(QueueUrl=gateway.send_queue_url, VisibilityTimeout=0)[
        "Messages"
    ][0]["Body"]
    gateway.sqs.send_message(QueueUrl=gateway.send_queue_url, MessageBody=body)
    assert gateway.queue_depth() == 2
    gateway.run_until_idle()
    assert len(gateway.sends(message_id)) == 1
    assert gateway.queue_depth() == 0
    assert [e[1] for e in gateway.repo.events(message_id)].count("sent") == 1


class Crash(BaseException):
    """The Lambda runtime dying mid-invocation (not an exception the handler can catch)."""


def test_crash_between_claim_and_send_is_recovered_after_the_lease(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMS_GATEWAY_LEASE_SECONDS", "1")
    wiring.reset()
    message_id = post(gateway, "tenant-3", "crash", {"to": "+14155550100", "body": "hi"})
    provider = gateway.providers["provider-b"]
    healthy = provider.inner

    class Crashing:
        name = "provider-b"

        def send(self, request: Any) -> Any:
            provider.inner = healthy  # the next container is healthy again
            raise Crash

    provider.inner = Crashing()
    message = gateway.sqs.receive_message(
        QueueUrl=gateway.send_queue_url, AttributeNames=["All"], VisibilityTimeout=0
    )["Messages"][0]
    event = {
        "Records": [sqs_event_record(message, queue_arn=gateway.send_queue_arn, region="us-east-1")]
    }
    with pytest.raises(Crash):
        gateway.invoke("sender", event)
    assert gateway.repo.get(message_id).status.value == "sending"  # type: ignore[union-attr]

    # redelivered while the lease holds: kept (hidden until the lease ends), not sent
    outcome = gateway.poller("sender").poll_once()
    assert outcome.retained == outcome.received != []
    assert gateway.queue_depth() == 1
    assert len(provider.calls) == 1

    gateway.clock.advance(2)  # the lease (1 s) has ended on the services' clock...
    deadline = time.monotonic() + 60  # ...and the 2 s visibility the sender set, on SQS's
    while gateway.visible_messages() == 0:
        assert time.monotonic() < deadline, "the kept message never became visible again"
        time.sleep(0.1)
    gateway.run_until_idle()
    view = gateway.get_message("tenant-3", message_id).body
    assert view["status"] == "sent"
    assert view["attempts"] == 2
    assert [
        (a.attempt_number, a.outcome, a.reason_code) for a in gateway.repo.attempts(message_id)
    ] == [
        (1, "transient_error", "timeout"),
        (2, "sent", None),
    ]
    assert ("sending", "queued", "timeout") in gateway.repo.events(message_id)
    assert len(provider.calls) == 2
    assert gateway.queue_depth() == 0


def _queued_copies(gateway: Gateway) -> list[dict[str, Any]]:
    """Every message on the SendQueue (made visible again), without consuming them."""
    messages = gateway.sqs.receive_message(
        QueueUrl=gateway.send_queue_url,
        MaxNumberOfMessages=10,
        VisibilityTimeout=0,
        MessageAttributeNames=["All"],
    ).get("Messages", [])
    return list(messages)


def test_database_outage_keeps_every_message_and_spends_no_receives(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [
        post(gateway, "tenant-3", f"outage-{i}", {"to": "+14155550100", "body": f"m{i}"})
        for i in range(3)
    ]
    # nothing listens on port 1 of the loopback: connections are refused at once
    monkeypatch.setenv("SMS_GATEWAY_MESSAGE_DSN", "postgresql+pg8000://postgres@127.0.0.1:1/test")
    monkeypatch.setenv("SMS_GATEWAY_OUTAGE_REQUEUE_LIMIT", "2")
    wiring.reset()
    for round_ in (1, 2):
        outcome = gateway.poller("sender").poll_once()
        assert len(outcome.received) == 3 and outcome.retained == []
        copies = _queued_copies(gateway)
        assert len(copies) == 3
        # fresh copies (receive count starts again), each counting the outage requeues
        assert {c["MessageAttributes"]["outage_requeues"]["StringValue"] for c in copies} == {
            str(round_)
        }
        assert {json.loads(c["Body"])["message_id"] for c in copies} == set(ids)
    # past the limit the records stay on the queue and spend receives as usual
    outcome = gateway.poller("sender").poll_once()
    assert sorted(outcome.retained) == sorted(outcome.received) and len(outcome.received) == 3
    assert sum(len(p.calls) for p in gateway.providers.values()) == 0
    for message_id in ids:
        assert gateway.repo.get(message_id) is None

    status = gateway.get_message("tenant-3", ids[0])
    assert status.status == 503
    assert status.headers["content-type"] == "application/problem+json"

    monkeypatch.setenv("SMS_GATEWAY_MESSAGE_DSN", gateway.dsn)
    wiring.reset()
    gateway.run_until_idle()  # the records come back after the (0 s) retry backoff
    for message_id in ids:
        assert gateway.get_message("tenant-3", message_id).body["status"] == "sent"
        assert len(gateway.sends(message_id)) == 1
    assert gateway.queue_depth("send") == gateway.queue_depth("dlq") == 0


def test_validity_period_elapsed_expires_without_sending(gateway: Gateway) -> None:
    message_id = post(
        gateway, "tenant-3", "exp", {"to": "+14155550100", "body": "hi", "validity_period": 60}
    )
    gateway.clock.advance(61)
    gateway.run_until_idle()
    assert gateway.get_message("tenant-3", message_id).body["status"] == "expired"
    assert gateway.sends(message_id) == []


def test_tenant_without_policy_is_redriven_with_the_reason(gateway: Gateway) -> None:
    message_id = post(gateway, "tenant-unrouted", "nr", {"to": "+14155550100", "body": "hi"})
    gateway.run_until_idle()
    view = gateway.get_message("tenant-unrouted", message_id).body
    assert view["status"] == "failed"
    assert view["reason_code"] == "dead_letter"
    assert view["reason_detail"] == "tenant 'tenant-unrouted' has no route policy"
    assert view["attempts"] == 0
    assert gateway.sends(message_id) == []


def test_sender_event_sample_replays(gateway: Gateway) -> None:
    answer = gateway.handlers["sender"].lambda_handler(
        sample("sender-batch.json"), FakeLambdaContext("sender")
    )
    malformed_id = sample("sender-batch.json")["Records"][1]["messageId"]
    assert answer == {"batchItemFailures": [{"itemIdentifier": malformed_id}]}
