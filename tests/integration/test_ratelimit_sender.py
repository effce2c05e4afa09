"""The sender with a provider rate through the real handler path: SenderFunction in-process
under moto (SQS + the RateLimitTable in DynamoDB), on each SQL dialect (PostgreSQL plans its
claims twice: the limiter is still asked once per provider)."""

from __future__ import annotations

import json
import time

import pytest

from sms_gateway import wiring
from tests.conftest import SharedAws
from tests.support import Gateway


def test_messages_over_the_rate_wait_without_an_attempt_then_go(
    gateway: Gateway, moto_resources: SharedAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = gateway
    table = moto_resources.resources.table_names["RateLimitTable"]
    monkeypatch.setenv("SMS_GATEWAY_RATE_LIMIT_TABLE", table)
    monkeypatch.setenv(
        "SMS_GATEWAY_PROVIDER_RATES", json.dumps({"provider-b": {"rate": 5, "burst": 10}})
    )
    wiring.reset()
    ids = []
    for i in range(12):
        answer = gw.post_message("tenant-3", f"rl-{i}", {"to": "+12025550143", "body": "hi"})
        assert answer.status == 202, answer.body
        ids.append(str(answer.body["message_id"]))

    gw.pump("sender")  # 10 go (the burst), 2 are put back delayed by ceil(0.2 s), ceil(0.4 s)
    rows = {i: gw.repo.get(i) for i in ids}
    waiting = [i for i, row in rows.items() if row is not None and row.status.value == "queued"]
    assert len(waiting) == 2
    assert sum(1 for row in rows.values() if row and row.status.value == "sent") == 10
    for message_id in waiting:
        assert gw.repo.attempts(message_id) == [] and gw.sends(message_id) == []
    delayed = gw.sqs.get_queue_attributes(
        QueueUrl=gw.send_queue_url, AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )["Attributes"]["ApproximateNumberOfMessagesDelayed"]
    assert (int(delayed), gw.queue_depth("send")) == (2, 0)  # fresh copies, originals deleted

    gw.clock.advance(1)
    time.sleep(1.2)  # moto's DelaySeconds runs on the wall clock
    gw.run_until_idle()
    for message_id in ids:
        view = gw.get_message("tenant-3", message_id).body
        assert (view["status"], view["attempts"]) == ("sent", 1)
        assert len(gw.sends(message_id)) == 1
    assert gw.queue_depth("send") == gw.queue_depth("dlq") == 0
    (bucket,) = moto_resources.dynamodb.scan(TableName=table)["Items"]  # one shared bucket
    assert bucket["provider"]["S"] == "provider-b"
