"""Bulk send end to end over HTTP against ``sms-gateway local``: 100 SMS in one request for
the instant-provider demo tenant (tenant-3 -> provider-b), all 100 sent, each exactly once."""

from __future__ import annotations

import uuid

import pytest

from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e


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
