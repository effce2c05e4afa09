"""Every sample in ``events/`` replayed through its function's handler (the ``sam local invoke``
inputs stay in step with the handlers). A file's prefix names its function directory."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest

from tests.conftest import SharedAws
from tests.support import EVENTS, Gateway, ResponseCatcher, sample

ALL_SAMPLES = sorted(p.name for p in EVENTS.glob("*.json"))


def test_every_sample_is_covered() -> None:
    assert sorted(EXPECTED) == ALL_SAMPLES


EXPECTED = {
    "sender-batch.json": None,
    "dlq-batch.json": None,
    "ingest-post-message.json": 202,
    "ingest-post-message-failing-tenant.json": 202,
    "ingest-post-message-invalid.json": 422,
    "ingest-post-messages-batch.json": 202,
    "status-get-message.json": 200,
    "status-post-receipt.json": 200,
    "migrate-create.json": "SUCCESS",  # a CloudFormation custom resource request
    "status-cancel-message.json": 200,
    "admin-replay.json": "replayed",
    "admin-stuck.json": "listed",
    "admin-tenant-list.json": "tenants",
    "retention-schedule.json": "retention",
    "eum_events-delivered.json": {"applied": 1},  # counts by outcome
}


@pytest.mark.parametrize("name", ALL_SAMPLES)
def test_sample_replays(
    gateway: Gateway, name: str, moto_resources: SharedAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    function = name.split("-", 1)[0]
    if function == "migrate":
        replay_custom_resource(gateway, name)
        return
    if name == "status-cancel-message.json":
        _replay_cancel(gateway)
        return
    if name == "admin-tenant-list.json":
        _replay_tenant_list(gateway, moto_resources, monkeypatch)
        return
    if function == "admin":
        _replay_admin(gateway, name)
        return
    if function == "retention":
        _replay_retention(gateway)
        return
    if function == "eum_events":
        _replay_eum_event(gateway, name)
        return
    if name.startswith("status-"):
        # the status samples name the message the sender sample sends
        gateway.invoke("sender", sample("sender-batch.json"))
    answer = gateway.invoke(function, sample(name))
    if EXPECTED[name] is None:
        records = sample(name)["Records"]
        malformed = [r["messageId"] for r in records if not r["body"].endswith("}")]
        expected = [] if function == "dlq" else [{"itemIdentifier": m} for m in malformed]
        assert answer == {"batchItemFailures": expected}
        return
    assert answer["statusCode"] == EXPECTED[name], answer["body"]
    body = json.loads(answer["body"])
    if name == "ingest-post-message-invalid.json":
        assert {e["field"] for e in body["errors"]} == {"to", "body"}
    if name == "ingest-post-messages-batch.json":
        assert (body["accepted"], body["rejected"]) == (2, 1)
        assert [m["status"] for m in body["messages"]] == ["queued", "queued", "rejected"]
        assert body["messages"][1]["encoding"] == "GSM-7"  # ü and ß are GSM 03.38, € an escape
        assert {e["field"] for e in body["messages"][2]["errors"]} == {"to"}
    if name == "status-get-message.json":
        assert body["status"] == "sent"
    if name == "status-post-receipt.json":
        assert body["status"] == "delivered"


def _replay_eum_event(gateway: Gateway, name: str) -> None:
    """The End User Messaging event names (in its Context) the message the sender sample
    sends: delivered at the event's timestamp; SNS delivering it again changes nothing."""
    gateway.invoke("sender", sample("sender-batch.json"))
    assert gateway.invoke("eum_events", sample(name)) == EXPECTED[name]
    document = json.loads(sample(name)["Records"][0]["Sns"]["Message"])
    context = document["context"]
    view = gateway.get_message(context["tenant_id"], context["message_id"]).body
    assert (view["status"], view["delivered_at"]) == ("delivered", "2026-11-30T12:00:05Z")
    assert gateway.invoke("eum_events", sample(name)) == {"stale": 1}


def replay_custom_resource(gateway: Gateway, name: str) -> None:
    """The sample's pre-signed ResponseURL, its host swapped for a server on loopback: the
    response PUT arrives at the sample's path and query and echoes the request's ids."""
    event = sample(name)
    url = urlsplit(event["ResponseURL"])
    with ResponseCatcher().serving() as catcher:
        event["ResponseURL"] = f"{catcher.url}{url.path}?{url.query}"
        answer = gateway.invoke("migrate", event)
    assert answer["Status"] == EXPECTED[name]
    [put] = catcher.requests
    assert put["path"] == f"{url.path}?{url.query}"
    assert put["body"]["Status"] == EXPECTED[name]
    for key in ("StackId", "RequestId", "LogicalResourceId"):
        assert put["body"][key] == sample(name)[key]
    assert put["body"]["Data"] == {"Revision": "0004"}  # the suite's database is migrated


def _replay_cancel(gateway: Gateway) -> None:
    """The cancel sample names the sender sample's third message: recorded ``queued`` (as
    the sender records it before its claim), canceled by the sample, then the sender sample
    arrives and sends the first message only."""
    from sms_gateway.domain.message import QueuedMessage

    records = sample("sender-batch.json")["Records"]
    third = QueuedMessage.model_validate_json(records[2]["body"])
    gateway.repo.record_queued(third, gateway.clock())
    answer = gateway.api("status", sample("status-cancel-message.json"))
    assert answer.status == 200, answer.body
    assert (answer.body["message_id"], answer.body["status"]) == (third.message_id, "canceled")
    malformed = records[1]["messageId"]
    assert gateway.invoke("sender", sample("sender-batch.json")) == {
        "batchItemFailures": [{"itemIdentifier": malformed}]
    }
    assert gateway.sends(third.message_id) == []
    assert len(gateway.sends(json.loads(records[0]["body"])["message_id"])) == 1
    assert gateway.repo.get(third.message_id).status.value == "canceled"  # type: ignore[union-attr]


def _replay_admin(gateway: Gateway, name: str) -> None:
    """The replay sample replays tenant-2's dead letters: the DLQ sample's message, whose
    dead letter the DLQ sample records. The stuck sample lists a message queued 20 min ago."""
    from datetime import timedelta

    from sms_gateway.domain.message import QueuedMessage

    if name == "admin-replay.json":
        gateway.invoke("dlq", sample("dlq-batch.json"))
        letter = QueuedMessage.model_validate_json(sample("dlq-batch.json")["Records"][0]["body"])
        answer = gateway.invoke("admin", sample(name))
        assert (answer["replayed"], answer["message_ids"]) == (1, [letter.message_id])
        assert gateway.queue_depth("send") == 1
        return
    records = sample("sender-batch.json")["Records"]
    old = QueuedMessage.model_validate_json(records[0]["body"])
    assert gateway.repo.record_queued(old, gateway.clock() - timedelta(minutes=20))
    answer = gateway.invoke("admin", sample(name))
    (listed,) = answer["messages"]
    assert (listed["message_id"], listed["age_seconds"]) == (old.message_id, 20 * 60)


def _replay_tenant_list(gateway: Gateway, aws: SharedAws, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tenant list sample lists the tenant records in the template's TenantsTable."""
    from datetime import UTC, datetime

    from sms_gateway import wiring
    from sms_gateway.adapters.dynamodb_tenants import DynamoDbTenantStore
    from sms_gateway.domain.tenants import Tenant, TenantLimits

    table = aws.resources.table_names["TenantsTable"]
    monkeypatch.setenv("SMS_GATEWAY_TENANTS_TABLE", table)
    monkeypatch.setenv("SMS_GATEWAY_API_ID", "api1")
    monkeypatch.setenv("SMS_GATEWAY_API_STAGE", "dev")
    wiring.reset()
    created = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    DynamoDbTenantStore(aws.dynamodb, table).create_tenant(
        Tenant("acme", "Acme", "plan1", TenantLimits(10.0, 20, 10_000), created)
    )
    answer = gateway.invoke("admin", sample("admin-tenant-list.json"))
    assert answer == {
        "tenants": [
            {
                "tenant_id": "acme",
                "name": "Acme",
                "usage_plan_id": "plan1",
                "shared_plan": False,
                "rate_limit": 10.0,
                "burst_limit": 20,
                "daily_quota": 10_000,
                "created_at": "2026-11-30T12:00:00+00:00",
                "keys": [],
            }
        ]
    }


def _replay_retention(gateway: Gateway) -> None:
    """The schedule's event: the sender sample's first message, sent 401 days ago, is deleted
    (the default DeleteAfterDays is 400); the second, sent 31 days ago, is redacted."""
    from datetime import timedelta

    from sms_gateway.domain.message import QueuedMessage
    from sms_gateway.domain.states import MessageStatus

    records = sample("sender-batch.json")["Records"]
    now = gateway.clock()
    for record, days in ((records[0], 401), (records[2], 31)):
        msg = QueuedMessage.model_validate_json(record["body"])
        msg = msg.model_copy(update={"created_at": now - timedelta(days=days)})
        assert gateway.repo.record_queued(msg, msg.created_at)
        assert gateway.repo.transition(
            msg.message_id, MessageStatus.QUEUED, MessageStatus.EXPIRED, msg.created_at
        )
    answer = gateway.invoke("retention", sample("retention-schedule.json"))
    assert answer == {
        "deleted": 1,
        "redacted": 1,
        "other_rows": 0,
        "audit_deleted": 0,
        "more": False,
    }
    first = json.loads(records[0]["body"])["message_id"]
    third = gateway.repo.get(json.loads(records[2]["body"])["message_id"])
    assert gateway.repo.get(first) is None
    assert third is not None and (third.body, third.to_number) == ("", "")
