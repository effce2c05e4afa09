"""Every sample in ``events/`` replayed through its function's handler (the ``sam local invoke``
inputs stay in step with the handlers). A file's prefix names its function directory."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest

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
}


@pytest.mark.parametrize("name", ALL_SAMPLES)
def test_sample_replays(gateway: Gateway, name: str) -> None:
    function = name.split("-", 1)[0]
    if function == "migrate":
        replay_custom_resource(gateway, name)
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
    assert put["body"]["Data"] == {"Revision": "0002"}  # the suite's database is migrated
